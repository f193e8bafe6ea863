"""A turn through the websocket with classifiers as rows: the deadline, the early exit, one
endpoint per classifier, and the version each call records."""

import time

import pytest
from asgiref.sync import sync_to_async

from agent.llm.standin.server import StandinServer
from agent.models import ClassifierCall, ClassifierConfig, Endpoint, Handoff

pytestmark = pytest.mark.django_db(transaction=True)


async def say(communicator, text):
    """Send a visitor message; return (the assistant's reply frame, seconds it took)."""
    started = time.monotonic()
    await communicator.send_json_to({"type": "message", "text": text})
    while True:
        frame = await communicator.receive_json_from(timeout=10)
        if frame["type"] == "message" and frame["role"] == "assistant":
            return frame, time.monotonic() - started


async def calls_of(conversation_id) -> dict[str, ClassifierCall]:
    calls = ClassifierCall.objects.filter(message__conversation_id=conversation_id)
    return {call.classifier: call async for call in calls}


async def test_a_hanging_server_gets_an_apology_and_a_handoff_within_the_budget(
    connect, standin, settings
):
    settings.TURN_BUDGET = 0.5
    standin.fault = "hang"
    communicator, history = await connect()
    reply, took = await say(communicator, "How much is listing 123456?")
    await communicator.disconnect()

    assert took < 0.5 + 0.5  # the budget, plus a margin for the database and the test loop
    assert reply["route"] == "fallback" and reply["text"].startswith("Sorry")
    handoff = await Handoff.objects.aget(conversation_id=history["conversation"])
    assert handoff.status == Handoff.Status.QUEUED
    assert handoff.reason.startswith("every classifier failed: pricing: no answer within")
    calls = await calls_of(history["conversation"])
    assert {c.status for c in calls.values()} == {"timeout"}
    assert await sync_to_async(standin.wait_for_abandoned)(3)


async def test_a_price_question_does_not_wait_for_the_slow_classifiers(
    connect, standin, listings, classifier_rows
):
    standin.latency_ms = {"pricing": 50, "*": 1500}
    communicator, history = await connect()
    reply, took = await say(communicator, "How much is listing 123456?")
    await communicator.disconnect()

    assert reply["route"] == "price"
    assert took < 1.0
    calls = await calls_of(history["conversation"])
    assert {name: c.status for name, c in calls.items()} == {
        "pricing": "ok",
        "appointment_change": "cancelled",
        "scheduling": "cancelled",
        "listing_facts": "cancelled",
        "listing_search": "cancelled",
        "listing_question": "cancelled",
    }
    assert calls["scheduling"].error == "" and calls["scheduling"].output is None
    assert await sync_to_async(standin.wait_for_abandoned)(5)
    assert standin.abandoned == {"appointment_change": 1, "scheduling": 1, "listing_facts": 1,
                                 "listing_search": 1, "listing_question": 1}


async def test_each_classifier_calls_the_endpoint_of_its_row(connect, standin, classifier_rows):
    with StandinServer() as pricing_server:
        endpoint = await Endpoint.objects.acreate(name="prices", base_url=pricing_server.base_url)
        await ClassifierConfig.objects.filter(name="pricing").aupdate(endpoint=endpoint)
        communicator, _ = await connect()
        await say(communicator, "hello")
        await say(communicator, "Can I call an agent?")
        await communicator.disconnect()
    assert pricing_server.requests == {"pricing": 2}
    assert standin.requests == {"appointment_change": 2, "scheduling": 2, "listing_facts": 2,
                                "listing_search": 2, "listing_question": 2}


async def test_a_disabled_classifier_is_not_asked(connect, standin, classifier_rows):
    await ClassifierConfig.objects.filter(name="listing_question").aupdate(enabled=False)
    communicator, history = await connect()
    reply, _ = await say(communicator, "Is the garden big?")
    await communicator.disconnect()
    assert reply["route"] == "fallback"
    assert set(await calls_of(history["conversation"])) == {
        "pricing", "appointment_change", "scheduling", "listing_facts", "listing_search"
    }
    assert "listing_question" not in standin.requests


async def test_each_call_records_the_version_of_the_prompt_it_ran(
    connect, standin, classifier_rows
):
    communicator, history = await connect()
    await say(communicator, "hello")
    pricing = classifier_rows["pricing"]
    pricing.system_prompt += " Be careful."
    await sync_to_async(pricing.save)()
    await say(communicator, "hello again")
    await communicator.disconnect()

    calls = ClassifierCall.objects.filter(
        message__conversation_id=history["conversation"], classifier="pricing"
    ).order_by("message__seq")
    assert [c.classifier_version async for c in calls] == [1, 2]
