"""The chat websocket, end to end: consumer, fan-out to the stand-in over loopback, router, DB."""

import asyncio

import pytest

from agent.llm.classifiers import CLASSIFIERS
from agent.models import ClassifierCall, Conversation, Handoff, Message

pytestmark = pytest.mark.django_db(transaction=True)


async def say(communicator, text):
    """Send a visitor message; return the frames up to and including typing: false."""
    await communicator.send_json_to({"type": "message", "text": text})
    frames = []
    while not frames or frames[-1] != {"type": "typing", "active": False}:
        frames.append(await communicator.receive_json_from(timeout=5))
    return frames


def reply_of(frames):
    (reply,) = [f for f in frames if f["type"] == "message" and f["role"] == "assistant"]
    return reply


async def test_the_tutorial_conversation_asks_for_the_listing_then_gives_the_price(
    connect, standin, listings
):
    communicator, history = await connect()
    assert history["type"] == "history" and history["messages"] == []

    frames = await say(communicator, "Hi, can you tell me the price of one of your listings?")
    assert frames[0] == {
        "type": "message",
        "role": "user",
        "seq": 1,
        "text": "Hi, can you tell me the price of one of your listings?",
    }
    assert frames[1] == {"type": "typing", "active": True}
    assert reply_of(frames)["route"] == "price_needs_listing"
    assert reply_of(frames)["seq"] == 2

    frames = await say(communicator, "Yes, the listing ID is 123456")
    reply = reply_of(frames)
    assert reply["route"] == "price"
    assert reply["text"] == "The price for listing 123456 is $350,000."
    await communicator.disconnect()

    conversation = await Conversation.objects.aget(id=history["conversation"])
    stored = [(m.seq, m.role, m.route) async for m in conversation.messages.all()]
    assert stored == [
        (1, "user", ""),
        (2, "assistant", "price_needs_listing"),
        (3, "user", ""),
        (4, "assistant", "price"),
    ]
    calls = [
        c
        async for c in ClassifierCall.objects.filter(
            message__seq=3, message__conversation=conversation
        )
    ]
    assert {c.classifier: c.output for c in calls}["pricing"] == {
        "asks_price": True,
        "listing_id": "123456",
    }
    # Pricing decided the route; the others answered or were cancelled, none failed.
    assert {c.classifier: c.status for c in calls}["pricing"] == "ok"
    assert all(c.error == "" and c.status in ("ok", "cancelled") for c in calls)
    assert all(c.raw_output for c in calls if c.status == "ok")
    assert (await conversation.messages.aget(seq=4)).latency_ms is not None


async def test_the_tutorial_conversation_with_the_id_at_once_gives_the_price(
    connect, standin, listings
):
    communicator, _ = await connect()
    reply = reply_of(await say(communicator, "How much is listing 654321?"))
    assert reply["route"] == "price" and "$450,000" in reply["text"]
    await communicator.disconnect()


async def test_a_reload_shows_the_history(connect, standin, listings):
    communicator, first = await connect()
    await say(communicator, "How much is listing 654321?")
    await communicator.disconnect()

    communicator, history = await connect()
    assert history["conversation"] == first["conversation"]
    assert [(m["seq"], m["role"]) for m in history["messages"]] == [(1, "user"), (2, "assistant")]
    assert history["messages"][1]["route"] == "price"
    await communicator.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ("[" * 5000 + "]" * 5000, "bad_json"),  # nesting past the parser's recursion limit
        ('["message", "hi"]', "unknown_type"),
        ('{"type": "ping"}', "unknown_type"),
        ('{"text": "hi"}', "unknown_type"),
        ('{"type": "message"}', "missing_text"),
        ('{"type": "message", "text": 42}', "missing_text"),
        ('{"type": "message", "text": "   \\n "}', "empty_text"),
        ('{"type": "message", "text": "' + "x" * 2001 + '"}', "text_too_long"),
        ('{"type": "message", "text": "hi", "id": 7}', "bad_id"),
        ('{"type": "message", "text": "hi", "id": ""}', "bad_id"),
        ('{"type": "message", "text": "hi", "id": "' + "i" * 65 + '"}', "bad_id"),
        (b"\x00binary", "binary_frame"),
    ],
)
async def test_a_bad_frame_gets_an_error_frame_stores_nothing_and_keeps_the_socket_open(
    connect, standin, listings, frame, code
):
    communicator, _ = await connect()
    if isinstance(frame, bytes):
        await communicator.send_to(bytes_data=frame)
    else:
        await communicator.send_to(text_data=frame)
    error = await communicator.receive_json_from()
    assert error["type"] == "error" and error["code"] == code and error["message"]
    assert await communicator.receive_nothing()
    assert not await Message.objects.aexists()

    reply = reply_of(await say(communicator, "How much is listing 123456?"))
    assert reply["route"] == "price"
    await communicator.disconnect()


async def test_a_message_of_2000_characters_after_trimming_is_accepted(connect, standin):
    communicator, _ = await connect()
    frames = await say(communicator, "  " + "a" * 2000 + "  ")
    assert frames[0]["text"] == "a" * 2000
    await communicator.disconnect()


async def test_the_visitor_message_is_stored_even_when_the_llm_server_fails(connect, standin):
    standin.fault = "503"
    communicator, history = await connect()
    frames = await say(communicator, "How much is listing 123456?")
    reply = reply_of(frames)
    assert reply["route"] == "fallback"
    await communicator.disconnect()

    user = await Message.objects.aget(conversation_id=history["conversation"], role="user")
    assert user.text == "How much is listing 123456?"
    errors = [c.error async for c in ClassifierCall.objects.filter(message=user)]
    assert errors == ["HTTP 503"] * len(CLASSIFIERS)
    handoff = await Handoff.objects.aget(conversation_id=history["conversation"])
    assert handoff.reason.startswith("every classifier failed")


async def test_the_visitor_message_is_stored_and_typing_ends_when_the_turn_crashes(
    connect, standin, monkeypatch
):
    def broken_router(*args):
        raise RuntimeError("router bug")

    monkeypatch.setattr("agent.chat.turn.route_turn", broken_router)
    communicator, history = await connect()
    await communicator.send_json_to({"type": "message", "text": "hello!"})
    assert (await communicator.receive_json_from(timeout=5))["role"] == "user"
    assert await communicator.receive_json_from(timeout=5) == {"type": "typing", "active": True}
    error = await communicator.receive_json_from(timeout=5)
    assert error["type"] == "error" and error["code"] == "turn_failed"
    assert await communicator.receive_json_from(timeout=5) == {"type": "typing", "active": False}
    await communicator.disconnect()
    assert await Message.objects.filter(text="hello!", role="user").aexists()


async def test_a_socket_without_a_session_is_refused(connect):
    communicator, history = await connect(session_key=None)
    assert history is None


async def test_a_socket_from_a_foreign_origin_is_refused(connect):
    communicator, history = await connect(origin=b"https://evil.example")
    assert history is None


async def test_every_tab_of_the_visitor_sees_the_turn(connect, standin, listings):
    first, _ = await connect()
    second, _ = await connect()
    frames = await say(first, "How much is listing 654321?")
    seen = []
    while not seen or seen[-1] != {"type": "typing", "active": False}:
        seen.append(await second.receive_json_from(timeout=5))
    assert seen == frames
    await first.disconnect()
    await second.disconnect()


async def test_a_resent_message_id_is_acknowledged_without_a_second_turn(
    connect, standin, listings
):
    communicator, history = await connect()
    frame = {"type": "message", "text": "How much is listing 654321?", "id": "c-1"}
    await communicator.send_json_to(frame)
    ack = await communicator.receive_json_from(timeout=5)
    assert ack == {"type": "message", "role": "user", "text": frame["text"], "seq": 1, "id": "c-1"}
    while await communicator.receive_json_from(timeout=5) != {"type": "typing", "active": False}:
        pass

    await communicator.send_json_to(frame)
    assert await communicator.receive_json_from(timeout=5) == ack
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()
    stored = [(m.seq, m.role) async for m in Message.objects.all()]
    assert stored == [(1, "user"), (2, "assistant")]
    assert await ClassifierCall.objects.acount() == len(CLASSIFIERS)  # one turn's calls


async def test_a_reply_stored_while_the_visitor_was_away_comes_on_reconnect_once(
    connect, standin, listings
):
    standin.latency_ms = 300
    communicator, _ = await connect()
    await communicator.send_json_to({"type": "message", "text": "How much is listing 654321?"})
    assert (await communicator.receive_json_from(timeout=5))["seq"] == 1
    await communicator.disconnect()  # gone before the reply

    for _ in range(100):  # the turn goes on without the socket: up to 5 s
        if await Message.objects.filter(seq=2).aexists():
            break
        await asyncio.sleep(0.05)
    communicator, history = await connect(path="/ws/chat/?after=1")
    assert [(m["seq"], m["role"]) for m in history["messages"]] == [(2, "assistant")]
    assert history["messages"][0]["route"] == "price"
    await communicator.disconnect()


# "%C2%B2" is "²" and "%D9%A3" Arabic-Indic three: both pass str.isdigit() but not int() (#13).
@pytest.mark.parametrize("after", ["-1", "%C2%B2", "%D9%A3", "1.5"])
async def test_a_bad_after_gets_an_error_and_the_whole_history(connect, standin, listings, after):
    communicator, _ = await connect()
    await say(communicator, "How much is listing 654321?")
    await communicator.disconnect()

    communicator, error = await connect(path=f"/ws/chat/?after={after}")
    assert error["type"] == "error" and error["code"] == "bad_after"
    history = await communicator.receive_json_from()
    assert [m["seq"] for m in history["messages"]] == [1, 2]
    await communicator.disconnect()


async def test_a_turn_with_none_before_it_takes_two_database_trips(
    connect, standin, listings, monkeypatch
):
    """Storing the message and the turn's first read share one trip; the router's is the
    other (three before: bench/queries.py)."""
    from agent.chat import consumer, turn

    trips = []

    async def counted(func, *args, **kwargs):
        trips.append(func.__name__)
        return await db_trip(func, *args, **kwargs)

    from agent.dbgate import db_trip

    communicator, _ = await connect()
    monkeypatch.setattr(consumer, "db_trip", counted)
    monkeypatch.setattr(turn, "db_trip", counted)
    assert reply_of(await say(communicator, "How much is listing 123456?"))["route"] == "price"
    assert trips == ["store_and_prepare", "finish_turn"]
    await communicator.disconnect()


async def test_a_message_sent_during_a_turn_reads_the_history_with_its_reply(
    connect, standin, listings, monkeypatch
):
    """The second of two messages sent at once is read for its turn when the first is
    answered, so its classifiers see that answer (by seq: after the second message)."""
    from agent.chat import turn

    histories = []
    prepared = turn._prepared  # what both reads, with the store and after it, end in

    def recorded(message, history, *found):
        histories.append([m["role"] for m in history])
        return prepared(message, history, *found)

    monkeypatch.setattr(turn, "_prepared", recorded)
    communicator, _ = await connect()
    await communicator.send_json_to({"type": "message", "text": "How much is listing 123456?"})
    await communicator.send_json_to({"type": "message", "text": "How much is 654321?"})
    routes = []
    while len(routes) < 2:
        frame = await communicator.receive_json_from(timeout=5)
        if frame["type"] == "message" and frame["role"] == "assistant":
            routes.append(frame["route"])
    assert routes == ["price", "price"]
    assert histories == [["user"], ["user", "user", "assistant"]]
    await communicator.disconnect()


def test_the_history_read_with_the_store_is_the_turns_own_read(conversation):
    """store_and_prepare reads the history in the statement that stores the message: the same
    history as prepare_turn's own read after it (the latest 10, our "busy" apologies left out,
    the page's listing noted), and the stored message is numbered and kept."""
    from agent.chat import turn
    from agent.llm.classifiers import HISTORY_MESSAGES
    from agent.models import Route

    for n in range(HISTORY_MESSAGES):
        Message.objects.store(conversation.id, Message.Role.USER, f"question {n}")
        Message.objects.store(conversation.id, Message.Role.ASSISTANT, f"answer {n}", route="price")
    Message.objects.store(conversation.id, Message.Role.ASSISTANT, "wait", route=Route.BUSY)
    message, created, (history, _classifiers) = turn.store_and_prepare(
        conversation.id, "And 654321?", "c-1", "654321"
    )
    assert created and message.seq == 2 * HISTORY_MESSAGES + 2
    assert Message.objects.get(pk=message.pk).text == "And 654321?"
    assert history == turn.prepare_turn(conversation.id)[0]
    assert [m["content"] for m in history][-3:] == [
        f"answer {HISTORY_MESSAGES - 1}", "And 654321?", turn.page_note("654321")
    ]
    assert len(history) == HISTORY_MESSAGES + 1
    resent, created, prepared = turn.store_and_prepare(conversation.id, "And 654321?", "c-1")
    assert (resent.pk, created, prepared) == (message.pk, False, turn.LATER)


def test_a_message_whose_turn_read_fails_stays_stored(conversation, monkeypatch):
    """store_and_prepare: the message is stored, and the turn is left to read for itself."""
    from agent.chat import turn

    def broken(message, *found):
        raise RuntimeError("the read failed")

    monkeypatch.setattr(turn, "_prepared", broken)
    message, created, prepared = turn.store_and_prepare(conversation.id, "Hello there!")
    assert created and prepared is turn.LATER
    assert Message.objects.get(pk=message.pk).text == "Hello there!"


async def test_a_nul_character_in_a_message_is_stored_and_echoed_as_a_replacement(
    connect, standin, listings
):
    """PostgreSQL's text holds no NUL: the message is kept, with U+FFFD for it, and the echo
    says what was stored (it got not_stored before)."""
    communicator, _ = await connect()
    frames = await say(communicator, "How much is\x00 listing 123456?")
    assert frames[0]["text"] == "How much is\ufffd listing 123456?"
    assert reply_of(frames)["route"] == "price"
    stored = await Message.objects.aget(seq=frames[0]["seq"], role="user")
    assert stored.text == "How much is\ufffd listing 123456?"
    await communicator.disconnect()
