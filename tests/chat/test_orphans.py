"""Orphaned turns: a visitor message stored whose turn never ended (its worker died) is
answered once, by whichever socket of the conversation connects when it is due, and only if
it is the latest, unanswered and recent (agent.chat.orphans)."""

import asyncio
import threading
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.utils import timezone

from agent.chat import orphans, turn
from agent.metrics import REGISTRY
from agent.models import ClassifierCall, Message

pytestmark = pytest.mark.django_db(transaction=True)

PRICE_QUESTION = "How much is listing 123456?"
PRICE_REPLY = "The price for listing 123456 is $350,000."


def orphan(session, text=PRICE_QUESTION, age=timedelta(seconds=60), client_id=None):
    """Store a visitor message in the conversation of ``session`` as a worker that died right
    after storing it leaves it: stored ``age`` ago, no turn, no reply."""
    conversation = turn.open_conversation(session)
    message, _ = Message.objects.store_visitor(conversation.id, text, client_id)
    Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - age)
    message.refresh_from_db()
    return message


async def frames_until_turn_over(communicator, timeout=5):
    frames = []
    while not frames or frames[-1] != {"type": "typing", "active": False}:
        frames.append(await communicator.receive_json_from(timeout=timeout))
    return frames


def replies(frames):
    return [f for f in frames if f["type"] == "message" and f["role"] == "assistant"]


def resumed_count() -> float:
    return REGISTRY.get_sample_value("chat_turns_resumed_total") or 0.0


async def test_a_new_connection_answers_a_message_whose_turn_died_once(
    connect, standin, listings, visitor_session
):
    message = await sync_to_async(orphan)(visitor_session)
    before = resumed_count()

    communicator, history = await connect()
    assert [m["seq"] for m in history["messages"]] == [1]  # the question, no answer yet
    frames = await frames_until_turn_over(communicator)
    assert frames[0] == {"type": "typing", "active": True}
    assert [(r["seq"], r["route"], r["text"]) for r in replies(frames)] == [
        (2, "price", PRICE_REPLY)
    ]
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()

    # A later connection finds it answered: nothing runs again.
    requests = sum(standin.requests.values())
    communicator, history = await connect()
    assert [m["seq"] for m in history["messages"]] == [1, 2]
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()
    assert sum(standin.requests.values()) == requests

    await message.arefresh_from_db()
    assert message.answered_at is not None and message.resumed_at is not None
    assert [(m.seq, m.role) async for m in Message.objects.all()] == [(1, "user"), (2, "assistant")]
    assert resumed_count() == before + 1


async def test_of_two_sockets_connecting_at_once_one_resumes_and_both_see_one_reply(
    connect, standin, listings, visitor_session
):
    standin.latency_ms = 200
    await sync_to_async(orphan)(visitor_session)

    (first, _), (second, _) = await asyncio.gather(connect(), connect())
    seen = await asyncio.gather(frames_until_turn_over(first), frames_until_turn_over(second))
    assert [[r["seq"] for r in replies(frames)] for frames in seen] == [[2], [2]]
    for communicator in (first, second):
        assert await communicator.receive_nothing(timeout=0.5)
        await communicator.disconnect()
    assert await Message.objects.filter(role="assistant").acount() == 1
    assert standin.requests["pricing"] == 1


def test_of_two_workers_claiming_at_once_exactly_one_gets_the_message(visitor_session):
    message = orphan(visitor_session)
    start, results = threading.Barrier(2), []
    now = timezone.now()  # one clock for both: the loser's wait is then exactly the grace

    def take():
        start.wait()
        try:
            results.append(orphans.take_orphan(message.conversation_id, now))
        finally:
            connection.close()

    threads = [threading.Thread(target=take) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    claimed = [m for m, _ in results if m is not None]
    assert [m.pk for m in claimed] == [message.pk]
    assert [wait for m, wait in results if m is None] == [orphans.resume_after()]  # look again


async def test_an_answered_message_is_not_answered_again(connect, standin, listings):
    communicator, _ = await connect()
    await communicator.send_json_to({"type": "message", "text": PRICE_QUESTION})
    await frames_until_turn_over(communicator)
    await communicator.disconnect()
    await Message.objects.aupdate(created_at=timezone.now() - timedelta(seconds=60))
    # Not the stand-in's count of requests: a call the first turn cancelled may reach it
    # after the turn is over.
    resumed = resumed_count()

    communicator, history = await connect()
    assert len(history["messages"]) == 2
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()
    assert resumed_count() == resumed
    assert await Message.objects.acount() == 2


async def test_a_message_older_than_the_resume_window_gets_no_surprise_reply(
    connect, standin, visitor_session
):
    await sync_to_async(orphan)(
        visitor_session, age=orphans.RESUME_MAX_AGE + timedelta(minutes=1)
    )
    communicator, history = await connect()
    assert len(history["messages"]) == 1
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()
    assert sum(standin.requests.values()) == 0
    assert await Message.objects.acount() == 1


async def test_a_message_for_staff_is_not_answered_by_the_bot(connect, standin, visitor_session):
    message = await sync_to_async(orphan)(visitor_session)
    await Message.objects.filter(pk=message.pk).aupdate(route="staff")
    communicator, _ = await connect()
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()
    assert sum(standin.requests.values()) == 0


async def test_only_the_latest_unanswered_message_is_answered(
    connect, standin, listings, visitor_session
):
    await sync_to_async(orphan)(visitor_session, text="Hello there!")
    await sync_to_async(orphan)(visitor_session)
    communicator, _ = await connect()
    frames = await frames_until_turn_over(communicator)
    assert [(r["seq"], r["route"]) for r in replies(frames)] == [(3, "price")]
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()
    calls = ClassifierCall.objects.select_related("message")
    assert {c.message.seq async for c in calls} == {2}


async def test_a_socket_that_connects_before_the_message_is_due_answers_it_when_it_is(
    connect, standin, listings, visitor_session, settings
):
    settings.TURN_BUDGET, settings.DB_POOL_TIMEOUT = 1, 1  # due 2 s after it was stored
    await sync_to_async(orphan)(visitor_session, age=timedelta(0))

    communicator, _ = await connect()
    assert await communicator.receive_nothing(timeout=0.5)  # its turn may still be running
    assert sum(standin.requests.values()) == 0
    frames = await frames_until_turn_over(communicator)
    assert [r["route"] for r in replies(frames)] == ["price"]
    await communicator.disconnect()


async def test_a_socket_that_leaves_before_the_message_is_due_does_not_answer_it(
    connect, standin, visitor_session, settings
):
    settings.TURN_BUDGET, settings.DB_POOL_TIMEOUT = 1, 1
    await sync_to_async(orphan)(visitor_session, age=timedelta(0))
    communicator, _ = await connect()
    await communicator.disconnect()
    await asyncio.sleep(2.5)
    assert sum(standin.requests.values()) == 0
    assert await Message.objects.filter(resumed_at__isnull=False).acount() == 0


def test_a_turn_taken_over_is_taken_again_when_its_resumer_died_too(visitor_session):
    message = orphan(visitor_session, age=timedelta(minutes=2))
    now = timezone.now()
    assert orphans.take_orphan(message.conversation_id, now)[0] == message
    # Another socket, a moment later: the first resumer may still be running the turn.
    assert orphans.take_orphan(message.conversation_id, now + timedelta(seconds=1)) == (
        None, pytest.approx(orphans.resume_after() - 1)
    )
    # Past the grace without an answer: that resumer died as well.
    later = now + timedelta(seconds=orphans.resume_after() + 1)
    assert orphans.take_orphan(message.conversation_id, later)[0] == message


async def test_of_two_turns_of_one_message_only_one_stores_a_reply(
    standin, listings, conversation, chat_client
):
    standin.latency_ms = 100
    message, _ = await sync_to_async(Message.objects.store_visitor)(conversation.id, PRICE_QUESTION)
    first, second = await asyncio.gather(turn.run_turn(message), turn.run_turn(message))
    assert [r is None for r in (first, second)].count(True) == 1
    assert await Message.objects.filter(role="assistant").acount() == 1
