"""Overload: turns past TURN_MAX_OPEN wait for a slot, the visitor hears "busy" past
TURN_QUEUE_TIMEOUT and then gets the answer, and our own overload queues no handoff."""

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from agent import metrics
from agent.chat import capacity
from agent.chat.router import route_turn
from agent.llm.classifiers import ListingQuestion, Scheduling
from agent.llm.fanout import Outcome
from agent.models import Handoff, Message, Route

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("America/New_York"))


def sample(name):
    return metrics.REGISTRY.get_sample_value(name) or 0


async def test_a_turn_past_the_cap_hears_busy_then_runs_when_a_slot_frees(settings):
    settings.TURN_MAX_OPEN = 1
    settings.TURN_QUEUE_TIMEOUT = 0.1  # the holder below keeps its slot until "busy" is heard
    shed = sample("chat_turns_shed_total")
    busy_heard, events = asyncio.Event(), []

    async def holder():
        async with capacity.turn_slot():
            events.append("first runs")
            await busy_heard.wait()  # not a timing margin: released only once busy was said
        events.append("first done")

    async def on_busy():
        events.append("busy")
        busy_heard.set()

    async def waiter():
        async with capacity.turn_slot(on_busy) as waited:
            events.append("second runs")
            return waited

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)  # let it take the slot
    waited = await waiter()
    await first
    assert events == ["first runs", "busy", "first done", "second runs"]
    assert waited >= 0.1
    assert sample("chat_turns_shed_total") == shed + 1
    assert sample("chat_turns_waiting") == 0


async def test_a_cancelled_waiter_gives_back_nothing_it_did_not_get(settings):
    settings.TURN_MAX_OPEN = 1
    async with capacity.turn_slot():
        waiting = asyncio.create_task(capacity.turn_slot().__aenter__())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    async with capacity.turn_slot():  # the one slot is free again, not leaked or doubled
        assert capacity._gate(1).locked()


@pytest.mark.django_db
def test_calls_that_never_got_an_llm_slot_make_busy_without_a_handoff(conversation):
    message = Message.objects.store(conversation.id, Message.Role.USER, "hello")
    said = [Outcome(name, "m", None, "", 2500, "no answer within the turn budget",
                    status="timeout", sent=False)
            for name in ("pricing", "scheduling", "listing_question")]
    reply = route_turn(conversation, message, said, NOW)
    assert reply.route == Route.BUSY
    assert not Handoff.objects.exists()


@pytest.mark.django_db
def test_an_llm_that_failed_still_queues_a_handoff(conversation):
    message = Message.objects.store(conversation.id, Message.Role.USER, "hello")
    said = [Outcome("pricing", "m", None, "", 5, "HTTP 503", status="error"),
            Outcome("scheduling", "m", Scheduling(False, None, None), "{}", 5),
            Outcome("listing_question", "m", ListingQuestion(False), "{}", 5)]
    reply = route_turn(conversation, message, said, NOW)
    assert reply.route == Route.FALLBACK
    assert Handoff.objects.count() == 1
