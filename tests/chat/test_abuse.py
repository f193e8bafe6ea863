"""Abuse limits of the chat socket: turns rate-limited in LLM calls per connection and per
client address (in memory, or in Redis shared by processes, failing open), open sockets capped
per address, and the largest valid frame within daphne's size limit."""

import asyncio
import json
import logging
import math
import random
import socket

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.contrib.sessions.backends.db import SessionStore
from limits.aio.storage import MemoryStorage

from agent.chat import abuse, consumer, turn
from agent.chat.abuse import TurnLimiter, client_address, redis_storage, seconds_until_room
from agent.metrics import REGISTRY
from agent.models import ClassifierConfig, Conversation, Message

pytestmark = pytest.mark.django_db(transaction=True)

PRICE = "How much is listing 123456?"


def sample(name: str, **labels) -> float:
    """A counter's value now (0 before its first increment)."""
    return REGISTRY.get_sample_value(name, labels) or 0


async def say(communicator, text, client_id=None):
    """Send a visitor message and return the frames up to ``typing: false``."""
    frame = {"type": "message", "text": text}
    if client_id is not None:
        frame["id"] = client_id
    await communicator.send_json_to(frame)
    frames = []
    while not frames or frames[-1] != {"type": "typing", "active": False}:
        frames.append(await communicator.receive_json_from(timeout=5))
    return frames


async def another_visitor() -> str:
    """The session key of a new visitor (their own conversation)."""
    session = SessionStore()
    session["chat"] = True
    await database_sync_to_async(session.save)()
    return session.session_key


async def stored_texts() -> list[str]:
    return [m.text async for m in Message.objects.filter(role="user").order_by("created_at")]


@pytest.fixture
def four_classifiers(standin, monkeypatch):
    """The stand-in with four of the seeded classifiers (the two listing ones disabled): a
    turn costs 4 LLM calls, counted from the database at this test's first message."""
    ClassifierConfig.objects.filter(name__in=["listing_search", "listing_facts"]).update(
        enabled=False
    )
    monkeypatch.setattr(abuse, "_classifiers_seen", None)
    return standin


# ---- rate limits through the socket


async def test_a_message_over_the_connection_limit_is_refused_not_stored_and_the_socket_stays_open(
    connect, four_classifiers, listings, settings
):
    settings.CHAT_RATE_LIMIT_CONNECTION = "8/minute"  # two turns of four calls
    settings.CHAT_RATE_LIMIT_IP = "off"
    before = sample("chat_turns_rate_limited_total", limit="connection")
    communicator, _ = await connect(client="203.0.113.1")
    await say(communicator, PRICE)
    await say(communicator, "And listing 654321?")

    await communicator.send_json_to({"type": "message", "text": "And 112233?", "id": "m-3"})
    refused = await communicator.receive_json_from(timeout=5)
    assert refused["type"] == "error" and refused["code"] == "rate_limited"
    assert refused["id"] == "m-3" and "not sent" in refused["message"]
    assert isinstance(refused["retry_after"], int) and 1 <= refused["retry_after"] <= 120
    assert await communicator.receive_nothing()  # no echo, no typing, no turn

    # Until the wait is over, the connection's next messages are refused the same way.
    await communicator.send_json_to({"type": "message", "text": "Hello?"})
    again = await communicator.receive_json_from(timeout=5)
    assert again["code"] == "rate_limited" and "id" not in again
    assert 1 <= again["retry_after"] <= refused["retry_after"]
    # A bad frame still gets its own error: the socket is open and parsing comes first.
    await communicator.send_to(text_data="not json")
    assert (await communicator.receive_json_from(timeout=5))["code"] == "bad_json"
    await communicator.disconnect()

    assert await stored_texts() == [PRICE, "And listing 654321?"]
    assert sample("chat_turns_rate_limited_total", limit="connection") - before == 2


async def test_after_retry_after_seconds_the_refused_message_goes_through(
    connect, four_classifiers, listings, settings
):
    settings.CHAT_RATE_LIMIT_CONNECTION = "4/2 seconds"  # one turn every 2 s
    settings.CHAT_RATE_LIMIT_IP = "off"
    communicator, _ = await connect(client="203.0.113.1")
    await say(communicator, PRICE, client_id="m-1")
    await communicator.send_json_to({"type": "message", "text": "And 654321?", "id": "m-2"})
    refused = await communicator.receive_json_from(timeout=5)
    assert refused["code"] == "rate_limited" and refused["retry_after"] <= 4

    await asyncio.sleep(refused["retry_after"])
    frames = await say(communicator, "And 654321?", client_id="m-2")
    assert frames[0]["role"] == "user" and frames[0]["id"] == "m-2"
    assert [f["role"] for f in frames if f["type"] == "message"] == ["user", "assistant"]
    await communicator.disconnect()
    assert await stored_texts() == [PRICE, "And 654321?"]


async def test_connections_from_one_address_share_its_budget_and_other_addresses_do_not(
    connect, four_classifiers, listings, settings
):
    settings.CHAT_RATE_LIMIT_CONNECTION = "off"
    settings.CHAT_RATE_LIMIT_IP = "8/minute"
    before = sample("chat_turns_rate_limited_total", limit="ip")
    sockets = []
    for client in ("203.0.113.7", "203.0.113.7", "203.0.113.7", "203.0.113.8"):
        communicator, _ = await connect(session_key=await another_visitor(), client=client)
        sockets.append(communicator)
    first, second, third, elsewhere = sockets

    await say(first, PRICE)
    await say(second, PRICE)
    await third.send_json_to({"type": "message", "text": PRICE})
    refused = await third.receive_json_from(timeout=5)
    assert refused["code"] == "rate_limited"
    frames = await say(elsewhere, PRICE)  # another address has its own budget
    assert frames[0]["role"] == "user"
    for communicator in sockets:
        await communicator.disconnect()
    assert await stored_texts() == [PRICE] * 3
    assert sample("chat_turns_rate_limited_total", limit="ip") - before == 1


async def test_the_limits_count_llm_calls_so_more_classifiers_mean_fewer_turns(
    connect, four_classifiers, listings, settings
):
    settings.CHAT_RATE_LIMIT_CONNECTION = "12/minute"  # three turns of four, or six of two
    settings.CHAT_RATE_LIMIT_IP = "off"
    await ClassifierConfig.objects.filter(name__in=["scheduling", "appointment_change"]).aupdate(
        enabled=False
    )
    communicator, _ = await connect(client="203.0.113.1")
    for n in range(6):
        frames = await say(communicator, f"Question {n}")
        assert frames[0]["role"] == "user"
    await communicator.send_json_to({"type": "message", "text": "One more"})
    assert (await communicator.receive_json_from(timeout=5))["code"] == "rate_limited"
    await communicator.disconnect()


async def test_a_stopped_redis_lets_turns_through(
    connect, four_classifiers, listings, settings, redis_process, caplog
):
    settings.REDIS_URL = redis_process.url  # the per-address counts go there
    settings.CHAT_RATE_LIMIT_IP = "4/minute"  # one turn
    redis_process.stop()
    communicator, _ = await connect(client="203.0.113.1")
    for text in (PRICE, "And 654321?"):  # the second would be over the limit
        frames = await say(communicator, text)
        assert [f["role"] for f in frames if f["type"] == "message"] == ["user", "assistant"]
    await communicator.disconnect()
    assert await stored_texts() == [PRICE, "And 654321?"]
    assert "rate-limit storage failed" in caplog.text


# ---- the limiter, and Redis shared by processes


async def test_two_processes_spend_one_per_address_budget_in_redis(redis_process):
    first = TurnLimiter("", "8/minute", *redis_storage(redis_process.url))
    second = TurnLimiter("", "8/minute", *redis_storage(redis_process.url))
    try:
        assert await first.charge("a", "198.51.100.7", 4) is None
        assert await second.charge("b", "198.51.100.7", 4) is None
        refusal = await first.charge("c", "198.51.100.7", 4)
        assert refusal is not None and refusal.limit == "ip"
        assert 1 <= refusal.retry_after <= 120
        assert await second.charge("d", "198.51.100.8", 4) is None  # another address
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_redis_outage_fails_open_with_one_warning_and_the_limit_is_back_after_it(
    redis_process, caplog
):
    caplog.set_level(logging.WARNING, logger="agent.chat.abuse")
    limiter = TurnLimiter("", "8/minute", *redis_storage(redis_process.url))
    address = "198.51.100.9"
    try:
        assert await limiter.charge("a", address, 8) is None
        assert (await limiter.charge("a", address, 4)).limit == "ip"

        redis_process.stop()
        errors = sample("chat_rate_limit_storage_errors_total")
        for _ in range(3):
            assert await limiter.charge("a", address, 4) is None
        # Asked once: for STORAGE_RETRY_SECONDS after a failure turns are allowed unasked.
        assert sample("chat_rate_limit_storage_errors_total") - errors == 1
        limiter.STORAGE_RETRY_SECONDS = limiter.storage_down_until = 0  # ask at every turn
        for _ in range(3):
            assert await limiter.charge("a", address, 4) is None
        assert sample("chat_rate_limit_storage_errors_total") - errors == 4
        warnings = [r.getMessage() for r in caplog.records if r.name == "agent.chat.abuse"]
        assert len(warnings) == 1 and "rate-limit storage failed" in warnings[0]

        redis_process.start()  # a restart: Redis kept nothing
        assert await limiter.charge("a", address, 8) is None
        assert (await limiter.charge("a", address, 4)).limit == "ip"
        assert "answers again" in caplog.records[-1].getMessage()
    finally:
        await limiter.aclose()


async def test_a_redis_that_never_answers_fails_open_after_its_timeout():
    """A server that takes the connection and says nothing (a hung Redis, a black hole): the
    check gives up after REDIS_TIMEOUT instead of redis-py's default 5 s, and allows."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never answers
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        limiter = TurnLimiter("", "8/minute", *redis_storage(url))
        errors = sample("chat_rate_limit_storage_errors_total")
        try:
            refusal = await asyncio.wait_for(
                limiter.charge("a", "198.51.100.10", 4), timeout=6 * abuse.REDIS_TIMEOUT
            )
        finally:
            await limiter.aclose()
    assert refusal is None
    assert sample("chat_rate_limit_storage_errors_total") - errors == 1


async def test_the_connection_budget_is_not_charged_when_the_address_refuses():
    limiter = TurnLimiter("8/minute", "4/minute", MemoryStorage())
    assert await limiter.charge("a", "192.0.2.1", 4) is None
    assert (await limiter.charge("a", "192.0.2.1", 4)).limit == "ip"
    assert await limiter.charge("a", "192.0.2.2", 4) is None  # the connection had 4 left
    assert (await limiter.charge("a", "192.0.2.3", 4)).limit == "connection"


async def test_a_turn_dearer_than_a_whole_limit_costs_the_whole_limit():
    limiter = TurnLimiter("3/minute", "", MemoryStorage())
    assert await limiter.charge("a", "192.0.2.1", 4) is None
    refusal = await limiter.charge("a", "192.0.2.1", 1)
    assert refusal.limit == "connection" and 1 <= refusal.retry_after <= 120


def weighted_count(window, expiry: int, after: float) -> float:
    """limits' sliding window counter, ``after`` seconds on with nothing spent meanwhile."""
    previous, previous_ttl, current, current_ttl = window
    window_left = max(0.0, current_ttl - expiry)
    if after < window_left:
        return previous * (window_left - after) / expiry + current
    if after < window_left + expiry:
        return current * (window_left + expiry - after) / expiry
    return 0.0


def has_room(window, expiry: int, amount: int, cost: int, after: float) -> bool:
    """limits' rule for a hit of ``cost``, ``after`` seconds on."""
    return math.floor(weighted_count(window, expiry, after)) + cost <= amount


def test_retry_after_is_the_first_whole_second_with_room():
    rng = random.Random(7)
    checked = 0
    while checked < 2000:
        expiry, amount = rng.choice([(1, 8), (60, 60), (60, 600), (3600, 1000)])
        cost = rng.randint(1, min(amount, 12))
        left = rng.uniform(0, expiry)
        previous = rng.randint(0, amount)
        current = rng.randint(0, amount)
        window = (previous, left if previous else 0.0, current, left + expiry)
        case = (window, expiry, amount, cost)
        if has_room(*case, after=0):
            continue  # not a refusal
        wait = seconds_until_room(amount, expiry, cost, window)
        assert wait >= 1 and has_room(*case, after=wait), (case, wait)
        assert wait == 1 or not has_room(*case, after=wait - 1.001), (case, wait)
        checked += 1


# ---- cost of a turn


async def test_a_turn_costs_the_enabled_classifiers_counted_once_then_as_each_turn_sees_them(
    classifier_rows, monkeypatch, django_assert_num_queries
):
    monkeypatch.setattr(abuse, "_classifiers_seen", None)
    assert await abuse.turn_cost() == 6
    await ClassifierConfig.objects.filter(name="pricing").aupdate(enabled=False)
    assert await abuse.turn_cost() == 6  # no query per message
    conversation = await Conversation.objects.acreate()
    await database_sync_to_async(turn.prepare_turn)(conversation.id)  # a turn reads them
    assert await abuse.turn_cost() == 5
    await ClassifierConfig.objects.aupdate(enabled=False)
    await database_sync_to_async(turn.prepare_turn)(conversation.id)
    assert await abuse.turn_cost() == 1  # no LLM call, but a turn all the same


# ---- open sockets per address


async def close_code(communicator) -> int:
    output = await communicator.receive_output(timeout=5)
    assert output["type"] == "websocket.close"
    return output["code"]


async def test_sockets_over_the_cap_get_an_error_frame_and_close_4429(connect, settings):
    settings.CHAT_MAX_SOCKETS_PER_IP = 2
    before = sample("chat_sockets_refused_total")
    first, _ = await connect(client="203.0.113.20")
    second, _ = await connect(client="203.0.113.20")
    third, frame = await connect(client="203.0.113.20")
    assert frame["type"] == "error" and frame["code"] == "too_many_connections"
    assert await close_code(third) == 4429
    await third.disconnect()
    assert sample("chat_sockets_refused_total") - before == 1

    elsewhere, history = await connect(client="203.0.113.21")
    assert history["type"] == "history"
    await first.disconnect()
    fourth, history = await connect(client="203.0.113.20")  # a place is free again
    assert history["type"] == "history"
    for communicator in (second, elsewhere, fourth):
        await communicator.disconnect()
    assert abuse.open_sockets("203.0.113.20") == abuse.open_sockets("203.0.113.21") == 0


async def test_a_socket_stops_counting_however_it_ends(connect, settings, monkeypatch):
    settings.CHAT_MAX_SOCKETS_PER_IP = 3
    address = "203.0.113.30"
    dropped, _ = await connect(client=address)
    crashed, _ = await connect(client=address)
    cancelled, _ = await connect(client=address)
    assert abuse.open_sockets(address) == 3

    await dropped.disconnect(code=1006)  # the network went away
    assert abuse.open_sockets(address) == 2

    async def broken(self):
        raise RuntimeError("a bug in a handler")

    monkeypatch.setattr(abuse.TurnGate, "refusal", broken)
    await crashed.send_json_to({"type": "message", "text": "hi"})
    with pytest.raises(RuntimeError):
        await crashed.wait(timeout=5)
    assert abuse.open_sockets(address) == 1

    cancelled.future.cancel()  # daphne kills an application that outlives its connection
    with pytest.raises(asyncio.CancelledError):
        await cancelled.future
    assert abuse.open_sockets(address) == 0


async def test_a_cap_of_0_lets_every_socket_in(connect, settings):
    settings.CHAT_MAX_SOCKETS_PER_IP = 0
    sockets = [(await connect(client="203.0.113.40"))[0] for _ in range(25)]
    assert abuse.open_sockets("203.0.113.40") == 25
    for communicator in sockets:
        await communicator.disconnect()


@pytest.mark.parametrize(
    ("client", "address"),
    [
        (["203.0.113.9", 5000], "203.0.113.9"),
        (["2001:db8:1:2:aaaa::1", 5000], "2001:db8:1:2::/64"),
        (["2001:db8:1:2:bbbb::7", 5000], "2001:db8:1:2::/64"),
        (["::ffff:203.0.113.9", 5000], "203.0.113.9"),
        (None, "unknown"),
        (["proxy-sent-garbage" * 10, 0], ("proxy-sent-garbage" * 10)[:64]),
    ],
)
def test_the_client_address_groups_an_ipv6_64(client, address):
    assert client_address({"client": client}) == address


# ---- frame size


def test_the_largest_valid_frame_fits_in_daphnes_message_size():
    """2,000 emoji as a json.dumps that escapes non-ASCII writes them: 12 bytes each."""
    text = "\U0001f600" * consumer.MAX_TEXT
    client_id = "\U0001f600" * consumer.MAX_ID
    frame = json.dumps({"type": "message", "text": text, "id": client_id})
    assert consumer.parse_frame(consumer.decode_frame(frame)) == (text, client_id)
    assert len(frame.encode()) <= django_settings.DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE
    assert django_settings.DAPHNE_WEBSOCKET_MAX_FRAME_SIZE == (
        django_settings.DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE
    )
