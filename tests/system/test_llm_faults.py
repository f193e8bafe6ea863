"""The LLM server fails for a while, then comes back: down (port closed), hanging, answering
503 or 429, or sending garbage. During the outage every turn is answered within the turn
budget with an apology and a handoff queued; after it, turns get their normal routes again.

The default endpoint is capped at one call in flight, so a slot that an outage left taken
would starve every later call and the turn after the outage could not be answered.
bench/faults.py runs the same outages for 30 s under load and prints figures.
"""

import time

import pytest

from agent.models import ClassifierCall, Endpoint, Handoff

pytestmark = pytest.mark.django_db(transaction=True)

BUDGET = 1.0  # seconds: TURN_BUDGET for these tests
MARGIN = 1.0  # seconds on top: the turn's database trips and this test's event loop
PRICE_QUESTION = "How much is listing 123456?"


async def say(communicator, text):
    """Send a visitor message; return (the assistant's reply frame, seconds it took)."""
    started = time.monotonic()
    await communicator.send_json_to({"type": "message", "text": text})
    while True:
        frame = await communicator.receive_json_from(timeout=10)
        if frame["type"] == "message" and frame["role"] == "assistant":
            reply, took = frame, time.monotonic() - started
        if frame == {"type": "typing", "active": False}:
            return reply, took


@pytest.mark.parametrize("mode", ["down", "hang", "503", "429", "garbage"])
async def test_during_an_llm_outage_turns_get_handoffs_in_time_and_after_it_normal_answers(
    connect, standin, listings, classifier_rows, settings, mode
):
    settings.TURN_BUDGET = BUDGET
    await Endpoint.objects.aupdate(max_in_flight=1)
    communicator, history = await connect()
    conversation = history["conversation"]

    standin.outage(mode)
    try:
        during = [await say(communicator, PRICE_QUESTION) for _ in range(2)]
    finally:
        standin.outage(None)
    reply, _ = await say(communicator, PRICE_QUESTION)
    await communicator.disconnect()

    for outage_reply, outage_took in during:
        assert outage_reply["route"] == "fallback"
        assert outage_reply["text"].startswith("Sorry")  # the apology of a failed turn
        assert outage_took < BUDGET + MARGIN
    handoff = await Handoff.objects.aget(conversation_id=conversation)  # one per conversation
    assert handoff.status == Handoff.Status.QUEUED
    assert handoff.reason.startswith("every classifier failed")
    failed = ClassifierCall.objects.filter(message__conversation_id=conversation, message__seq=1)
    statuses = {call.status async for call in failed}
    assert statuses and statuses <= {"error", "timeout"}

    assert reply["route"] == "price" and "$350,000" in reply["text"]
