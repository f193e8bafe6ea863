"""Live takeover, end to end: a visitor's socket and staff sockets on the same app, the
LLM stand-in on loopback, the real database.

Anna and Ben are chat staff (the "Chat staff" group); Vic is a logged-in user without staff
status. Visitors have sessions
of the chat page only.
"""

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.test import Client

from agent import dbgate, metrics
from agent.models import ClassifierCall, Handoff, Message
from agent.staff import handoffs
from realestate.asgi import application
from tests.rows import chat_staff

pytestmark = pytest.mark.django_db(transaction=True)

NOBODY_ASKS = "Hello, I have something to ask"  # no classifier says yes: a handoff is queued


def session_of(user) -> str:
    """The session key of ``user`` logged in through the admin's session machinery."""
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


@pytest.fixture
def anna(db):
    return make_staff("anna")


@pytest.fixture
def ben(db):
    return make_staff("ben")


@pytest.fixture
def sessions(anna, ben):
    """Session keys: Anna's and Ben's staff sessions, Vic's non-staff one, inactive Ida's."""
    vic = get_user_model().objects.create_user("vic", first_name="Vic")
    ida = make_staff("ida")  # the permissions of chat staff; inactive below
    keys = {"anna": session_of(anna), "ben": session_of(ben), "vic": session_of(vic)}
    keys["ida"] = session_of(ida)
    ida.is_active = False
    ida.save()
    return keys


@pytest.fixture
def staff_socket(chat_client):
    """Open /ws/staff/ with a session key; returns (communicator, first frame or None)."""

    async def open_staff(session_key, origin=b"http://localhost"):
        headers = [(b"origin", origin)]
        if session_key:
            headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={session_key}".encode()))
        communicator = WebsocketCommunicator(application, "/ws/staff/", headers=headers)
        connected, _ = await communicator.connect()
        if not connected:
            return communicator, None
        return communicator, await communicator.receive_json_from(timeout=5)

    return open_staff


@pytest.fixture
def second_visitor(db):
    """Another visitor's chat-page session."""
    session = SessionStore()
    session["chat"] = True
    session.save()
    return session.session_key


async def frames_until(communicator, done, timeout=5):
    """Receive frames until ``done(frame)`` is true; return them all, that one last."""
    frames = []
    while not frames or not done(frames[-1]):
        frames.append(await communicator.receive_json_from(timeout=timeout))
    return frames


def is_queue(waiting):
    """A ``queue_change`` frame (README, "Staff socket") leaving ``waiting`` handoffs queued."""
    return lambda frame: frame["type"] == "queue_change" and frame["waiting"] == waiting


def turn_over(frame):
    return frame == {"type": "typing", "active": False}


async def say(communicator, text):
    await communicator.send_json_to({"type": "message", "text": text})
    return await frames_until(communicator, turn_over)


async def queue_a_handoff(visitor, staff):
    """The visitor says something no classifier matches; return the queued handoff's id."""
    await say(visitor, NOBODY_ASKS)
    queue = (await frames_until(staff, is_queue(1)))[-1]
    return queue["handoff"]["id"]


async def test_while_staff_hold_the_chat_the_bot_is_silent_and_messages_flow_both_ways(
    connect, staff_socket, sessions, standin, listings
):
    visitor, history = await connect()
    anna, queue = await staff_socket(sessions["anna"])
    assert queue == {
        "type": "queue", "waiting": 0, "open": 0, "counted": queue["counted"], "limit": 50,
        "handoffs": [],
    }
    handoff_id = await queue_a_handoff(visitor, anna)

    await anna.send_json_to({"type": "watch", "conversation": history["conversation"]})
    watched = await anna.receive_json_from(timeout=5)
    assert watched["type"] == "history"
    assert [m["role"] for m in watched["messages"]] == ["user", "assistant"]

    await anna.send_json_to({"type": "claim", "handoff": handoff_id})
    joined = {
        "type": "notice", "event": "joined", "name": "Anna", "text": "Anna has joined the chat",
    }
    assert await visitor.receive_json_from(timeout=5) == joined
    frames = await frames_until(anna, is_queue(0))
    assert joined in frames
    assert frames[-1]["handoff"]["status"] == "claimed"
    assert frames[-1]["handoff"]["claimed_by"] == "Anna"

    calls_before = await ClassifierCall.objects.acount()
    await visitor.send_json_to({"type": "message", "text": "How much is listing 123456?"})
    mine = await visitor.receive_json_from(timeout=5)
    assert mine["role"] == "user" and mine["seq"] == 3
    assert await visitor.receive_nothing(timeout=0.5)  # no typing, no reply: the bot is silent
    assert await anna.receive_json_from(timeout=5) == mine
    assert await ClassifierCall.objects.acount() == calls_before
    stored = await Message.objects.aget(seq=3)
    assert (stored.role, stored.route) == ("user", "staff")

    await anna.send_json_to(
        {"type": "message", "handoff": handoff_id, "text": "  It is $350,000. Anything else?  "}
    )
    reply = {
        "type": "message", "role": "staff", "text": "It is $350,000. Anything else?",
        "seq": 4, "name": "Anna",
    }
    assert await visitor.receive_json_from(timeout=5) == reply
    assert await anna.receive_json_from(timeout=5) == reply
    stored = await Message.objects.select_related("author").aget(seq=4)
    assert (stored.role, stored.author.username, stored.author_name) == ("staff", "anna", "Anna")

    await visitor.disconnect()
    visitor, again = await connect()  # a reload keeps Anna's name on her message
    assert again["messages"][-1] == reply
    await visitor.disconnect()
    await anna.disconnect()


async def test_a_second_claim_is_refused_and_says_who_has_the_handoff(
    connect, staff_socket, sessions, standin
):
    visitor, _ = await connect()
    anna, _ = await staff_socket(sessions["anna"])
    ben, _ = await staff_socket(sessions["ben"])
    handoff_id = await queue_a_handoff(visitor, anna)
    await frames_until(ben, is_queue(1))

    await anna.send_json_to({"type": "claim", "handoff": handoff_id})
    await frames_until(ben, is_queue(0))
    await ben.send_json_to({"type": "claim", "handoff": handoff_id})
    assert await ben.receive_json_from(timeout=5) == {
        "type": "error", "code": "already_claimed", "message": "Anna has this conversation.",
    }
    await ben.send_json_to({"type": "message", "handoff": handoff_id, "text": "Hi, Ben here"})
    assert (await ben.receive_json_from(timeout=5))["code"] == "already_claimed"
    await ben.send_json_to({"type": "release", "handoff": handoff_id})
    assert (await ben.receive_json_from(timeout=5))["code"] == "already_claimed"

    handoff = await Handoff.objects.select_related("claimed_by").aget(pk=handoff_id)
    assert (handoff.status, handoff.claimed_by.username) == ("claimed", "anna")
    assert not await Message.objects.filter(role="staff").aexists()
    for communicator in (visitor, anna, ben):
        await communicator.disconnect()


def test_of_two_simultaneous_claims_exactly_one_wins(anna, ben, conversation):
    handoff = Handoff.objects.create(conversation=conversation, reason="listing question")
    start = threading.Barrier(2)
    results = {}

    def take(user):
        start.wait()
        try:
            handoffs.claim(handoff.pk, user)
            results[user.username] = "claimed"
        except handoffs.HandoffRefused as exc:
            results[user.username] = str(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=take, args=(user,)) for user in (anna, ben)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    handoff.refresh_from_db()
    winner = handoff.claimed_by.username
    loser = "ben" if winner == "anna" else "anna"
    assert results == {
        winner: "claimed",
        loser: f"{winner.capitalize()} has this conversation.",
    }


async def test_a_release_gives_the_chat_back_to_the_bot_and_queues_the_handoff_again(
    connect, staff_socket, sessions, standin, listings
):
    visitor, _ = await connect()
    anna, _ = await staff_socket(sessions["anna"])
    handoff_id = await queue_a_handoff(visitor, anna)
    await anna.send_json_to({"type": "claim", "handoff": handoff_id})
    assert (await visitor.receive_json_from(timeout=5))["event"] == "joined"
    await frames_until(anna, is_queue(0))

    await anna.send_json_to({"type": "release", "handoff": handoff_id})
    assert await visitor.receive_json_from(timeout=5) == {
        "type": "notice", "event": "left", "name": "Anna", "text": "Anna has left the chat",
    }
    queue = (await frames_until(anna, is_queue(1)))[-1]
    assert queue["handoff"]["status"] == "queued"
    assert queue["handoff"]["claimed_by"] is None

    frames = await say(visitor, "How much is listing 123456?")
    (reply,) = [f for f in frames if f.get("role") == "assistant"]
    assert reply["route"] == "price" and "$350,000" in reply["text"]
    handoff = await Handoff.objects.aget(pk=handoff_id)
    assert handoff.status == "queued" and handoff.claimed_by_id is None
    assert handoff.claimed_at is not None  # the first claim is remembered
    await visitor.disconnect()
    await anna.disconnect()


async def test_resolving_a_claimed_handoff_tells_the_visitor_and_the_bot_answers_again(
    connect, staff_socket, sessions, standin, listings
):
    visitor, _ = await connect()
    anna, _ = await staff_socket(sessions["anna"])
    handoff_id = await queue_a_handoff(visitor, anna)
    await anna.send_json_to({"type": "claim", "handoff": handoff_id})
    await visitor.receive_json_from(timeout=5)
    await anna.send_json_to({"type": "resolve", "handoff": handoff_id})
    assert (await visitor.receive_json_from(timeout=5))["text"] == "Anna has left the chat"
    queue = (await frames_until(anna, lambda f: f["type"] == "queue_change" and not f["open"]))[-1]
    assert queue["waiting"] == 0

    frames = await say(visitor, "How much is listing 654321?")
    assert [f["route"] for f in frames if f.get("role") == "assistant"] == ["price"]
    handoff = await Handoff.objects.aget(pk=handoff_id)
    assert handoff.status == "resolved" and handoff.resolved_at is not None
    await anna.send_json_to({"type": "claim", "handoff": handoff_id})
    assert (await anna.receive_json_from(timeout=5))["code"] == "resolved"
    await visitor.disconnect()
    await anna.disconnect()


@pytest.mark.parametrize("who", [None, "visitor", "vic", "ida"])
async def test_the_staff_socket_refuses_anyone_but_active_staff(
    staff_socket, sessions, visitor_session, who
):
    key = {None: None, "visitor": visitor_session.session_key}.get(who, sessions.get(who))
    communicator, frame = await staff_socket(key)
    assert frame is None


async def test_the_staff_socket_refuses_a_foreign_origin(staff_socket, sessions):
    communicator, frame = await staff_socket(sessions["anna"], origin=b"https://evil.example")
    assert frame is None


async def test_a_visitor_never_receives_another_conversations_frames(
    connect, staff_socket, sessions, standin, second_visitor
):
    visitor, history = await connect()
    other, other_history = await connect(session_key=second_visitor)
    assert other_history["messages"] == []
    anna, _ = await staff_socket(sessions["anna"])
    handoff_id = await queue_a_handoff(visitor, anna)
    await anna.send_json_to({"type": "claim", "handoff": handoff_id})
    await anna.send_json_to({"type": "message", "handoff": handoff_id, "text": "Anna here"})
    frames = await frames_until(visitor, lambda f: f.get("text") == "Anna here")
    await visitor.send_json_to({"type": "message", "text": "Thanks Anna"})
    frames += await frames_until(visitor, lambda f: f.get("text") == "Thanks Anna")
    assert [f["type"] for f in frames] == ["notice", "message", "message"]

    # The staff socket's frames are no visitor's to send: the chat socket refuses them.
    await other.send_json_to({"type": "watch", "conversation": history["conversation"]})
    assert (await other.receive_json_from(timeout=5))["code"] == "unknown_type"
    assert await other.receive_nothing(timeout=0.5)
    await other.disconnect()
    other, history = await connect(session_key=second_visitor)
    assert history["messages"] == []  # nothing of the first conversation in the history either
    for communicator in (visitor, other, anna):
        await communicator.disconnect()


async def test_every_staff_socket_sees_the_waiting_count_change(
    connect, staff_socket, sessions, standin
):
    anna, first = await staff_socket(sessions["anna"])
    ben, _ = await staff_socket(sessions["ben"])
    assert first["waiting"] == 0
    visitor, _ = await connect()
    handoff_id = await queue_a_handoff(visitor, anna)
    queue = (await frames_until(ben, is_queue(1)))[-1]
    item = queue["handoff"]
    assert (item["id"], item["status"], item["reason"]) == (
        handoff_id, "queued", "no classifier matched",
    )
    assert item["text"] == NOBODY_ASKS and item["queued_at"]
    assert item["url"] == f"/admin/handoffs/{handoff_id}/"

    await say(visitor, "One more thing")  # the conversation already waits: no second handoff
    assert await ben.receive_nothing(timeout=0.3)

    await ben.send_json_to({"type": "claim", "handoff": handoff_id})
    await frames_until(anna, is_queue(0))
    await frames_until(ben, is_queue(0))
    carl, later = await staff_socket(await sync_to_async(lambda: session_of(make_staff("carl")))())
    assert later["waiting"] == 0 and later["handoffs"][0]["claimed_by"] == "Ben"
    for communicator in (visitor, anna, ben, carl):
        await communicator.disconnect()


def make_staff(username):
    """A staff user in the "Chat staff" group."""
    return chat_staff(
        get_user_model().objects.create_user(
            username, first_name=username.capitalize(), is_staff=True
        )
    )


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "claim"}', "bad_handoff"),
        ('{"type": "claim", "handoff": "1"}', "bad_handoff"),
        ('{"type": "claim", "handoff": 999999}', "not_found"),
        ('{"type": "release", "handoff": 999999}', "not_found"),
        ('{"type": "watch", "conversation": "nope"}', "bad_conversation"),
        ('{"type": "watch", "conversation": "00000000-0000-0000-0000-000000000000"}',
         "bad_conversation"),
        ('{"type": "message", "handoff": 1, "text": "  "}', "empty_text"),
        ('{"type": "message", "handoff": 1, "text": "' + "x" * 2001 + '"}', "text_too_long"),
    ],
)
async def test_a_bad_staff_frame_gets_an_error_and_the_socket_stays_open(
    staff_socket, sessions, frame, code
):
    anna, _ = await staff_socket(sessions["anna"])
    await anna.send_to(text_data=frame)
    error = await anna.receive_json_from(timeout=5)
    assert error["type"] == "error" and error["code"] == code and error["message"]
    await anna.send_to(text_data='{"type": "dance"}')
    assert (await anna.receive_json_from(timeout=5))["code"] == "unknown_type"
    await anna.disconnect()


@pytest.mark.parametrize(
    "frame",
    [b"\x00binary", '["claim", 1]', "[" * 5000 + "]" * 5000],
    ids=["binary", "array", "nested too deep"],
)
async def test_a_staff_frame_that_is_not_a_json_object_gets_bad_json(staff_socket, sessions, frame):
    anna, _ = await staff_socket(sessions["anna"])
    if isinstance(frame, bytes):
        await anna.send_to(bytes_data=frame)
    else:
        await anna.send_to(text_data=frame)
    error = await anna.receive_json_from(timeout=5)
    assert error == {
        "type": "error", "code": "bad_json", "message": "Send JSON objects as text frames."
    }
    await anna.send_to(text_data='{"type": "dance"}')
    assert (await anna.receive_json_from(timeout=5))["code"] == "unknown_type"
    await anna.disconnect()


async def test_while_the_database_is_unreachable_a_staff_action_fails_at_once(
    staff_socket, sessions, monkeypatch
):
    anna, _ = await staff_socket(sessions["anna"])
    # As after a trip that found PostgreSQL gone, with no probe due yet (agent.dbgate).
    monkeypatch.setattr(dbgate, "_unreachable", True)
    monkeypatch.setattr(dbgate, "_last_failure", dbgate.time.monotonic() + 3600)
    refused = metrics.REGISTRY.get_sample_value("chat_db_trips_refused_total") or 0
    await anna.send_to(text_data='{"type": "claim", "handoff": 1}')
    assert (await anna.receive_json_from(timeout=5))["code"] == "failed"
    assert metrics.REGISTRY.get_sample_value("chat_db_trips_refused_total") == refused + 1
    await anna.disconnect()


async def test_a_reply_before_claiming_is_refused_and_stores_nothing(
    connect, staff_socket, sessions, standin
):
    visitor, _ = await connect()
    anna, _ = await staff_socket(sessions["anna"])
    handoff_id = await queue_a_handoff(visitor, anna)
    await anna.send_json_to({"type": "message", "handoff": handoff_id, "text": "Hello"})
    assert (await anna.receive_json_from(timeout=5))["code"] == "not_claimed"
    assert await visitor.receive_nothing(timeout=0.3)
    assert not await Message.objects.filter(role="staff").aexists()
    await visitor.disconnect()
    await anna.disconnect()


async def test_every_message_after_a_claim_goes_to_staff_however_fast_they_come(
    connect, staff_socket, sessions, standin
):
    visitor, history = await connect()
    anna, _ = await staff_socket(sessions["anna"])
    handoff_id = await queue_a_handoff(visitor, anna)
    await anna.send_json_to({"type": "claim", "handoff": handoff_id})
    await anna.send_json_to({"type": "watch", "conversation": history["conversation"]})
    await frames_until(anna, lambda f: f["type"] == "history")
    await visitor.receive_json_from(timeout=5)
    for text in ("one", "two", "three"):
        await visitor.send_json_to({"type": "message", "text": text})
    seen = await frames_until(anna, lambda f: f.get("text") == "three")
    assert [f["text"] for f in seen if f["type"] == "message"] == ["one", "two", "three"]
    for _ in range(50):  # each is marked for staff by its own task: up to 2.5 s
        routes = [m.route async for m in Message.objects.filter(seq__gt=2)]
        if routes == ["staff"] * 3:
            break
        await asyncio.sleep(0.05)
    assert routes == ["staff"] * 3
    echoed = await frames_until(visitor, lambda f: f.get("text") == "three")
    assert [f["type"] for f in echoed] == ["message"] * 3
    assert await visitor.receive_nothing(timeout=0.3)
    await visitor.disconnect()
    await anna.disconnect()


async def test_a_claim_while_a_turn_runs_keeps_the_bot_from_answering(
    connect, staff_socket, sessions, standin, listings, anna
):
    visitor, _ = await connect()
    staff, _ = await staff_socket(sessions["anna"])
    handoff_id = await queue_a_handoff(visitor, staff)

    standin.latency_ms = 500  # the classifiers are still thinking when Anna claims
    await visitor.send_json_to({"type": "message", "text": "How much is listing 123456?"})
    assert (await visitor.receive_json_from(timeout=5))["seq"] == 3
    assert await visitor.receive_json_from(timeout=5) == {"type": "typing", "active": True}
    await sync_to_async(handoffs.claim)(handoff_id, anna)

    frames = await frames_until(visitor, turn_over)
    assert [f["type"] for f in frames] == ["notice", "typing"]  # joined, then no bot reply
    stored = await Message.objects.aget(seq=3)
    assert stored.route == "staff"
    assert not await Message.objects.filter(seq=4).aexists()
    await visitor.disconnect()
    await staff.disconnect()
