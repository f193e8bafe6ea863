"""Several workers: two daphne processes behind nginx, sharing a Redis channel layer and the
test database, with the LLM stand-in on loopback (``realestate.dev.scaled.Cluster``).

Needs nginx (``apt-get install nginx``): without it these tests are skipped, and with
``REQUIRE_NGINX=1`` (CI) they fail instead. Redis is a private ``redis-server`` on a free port.
"""

import asyncio
import json
import os
import subprocess
from dataclasses import dataclass

import pytest
import websockets
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client

from agent.models import Message
from bench.visitors import Visitor, VisitorGaveUp, check_delivery, source_address
from realestate.dev import scaled
from realestate.dev.devserver import free_port
from realestate.dev.localredis import RedisProcess
from tests.rows import chat_staff, seed_classifier_rows
from tests.servers import require_nginx, shared_database_url

pytestmark = pytest.mark.django_db(transaction=True)

TURN_BUDGET = 2  # seconds
# Seconds a turn may wait for a database connection; a turn whose worker died is resumed when
# it is older than TURN_BUDGET + DB_POOL_TIMEOUT (agent.chat.orphans), so the kill test waits that.
DB_POOL_TIMEOUT = 3
NOBODY_ASKS = "Hello, I have something to ask"  # no classifier says yes: a handoff is queued
PRICE_QUESTION = "How much is listing 123456?"


@pytest.fixture(autouse=True)
def needs_nginx(chat_client):
    """``require_nginx`` for every test; ``chat_client`` closes the database connection the
    async tests' ORM calls open."""
    require_nginx()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisProcess(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(django_db_setup, redis_server, llm, tmp_path_factory):
    """Two workers behind nginx on free loopback ports, against the test database."""
    require_nginx()  # module fixtures start before the autouse one: it must not just skip
    env = {
        **os.environ,
        "DATABASE_URL": shared_database_url(),
        "REDIS_URL": redis_server.url,
        "LLM_BASE_URL": llm.base_url,
        "TURN_BUDGET": str(TURN_BUDGET),
        "DB_POOL_TIMEOUT": str(DB_POOL_TIMEOUT),
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        # Every test client comes from 127.0.0.1 (tests/chat/test_abuse.py tests the limits).
        "CHAT_RATE_LIMIT_CONNECTION": "off",
        "CHAT_RATE_LIMIT_IP": "off",
        "CHAT_MAX_SOCKETS_PER_IP": "0",
    }
    group = scaled.Cluster(free_port(), [free_port(), free_port()], env,
                           tmp_path_factory.mktemp("cluster"))
    group.start()
    yield group
    group.stop()


@pytest.fixture
def visitor_key(db, classifier_rows, listings):
    session = SessionStore()
    session["chat"] = True
    session.save()
    return session.session_key


@pytest.fixture
def anna_key(db):
    anna = chat_staff(
        get_user_model().objects.create_user("anna", first_name="Anna", is_staff=True)
    )
    client = Client()
    client.force_login(anna)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def open_socket(port: int, path: str, session_key: str):
    """A websocket to 127.0.0.1:port with the session cookie, as the chat page's script opens it."""
    return websockets.connect(
        f"ws://127.0.0.1:{port}{path}",
        origin="http://127.0.0.1",
        additional_headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={session_key}"},
        open_timeout=10,
    )


async def frames_until(socket, done, timeout=10) -> list[dict]:
    """Receive frames until ``done(frame)``; return them all, that one last."""
    frames = []
    while not frames or not done(frames[-1]):
        frames.append(json.loads(await asyncio.wait_for(socket.recv(), timeout)))
    return frames


def turn_over(frame: dict) -> bool:
    return frame == {"type": "typing", "active": False}


def test_the_rendered_nginx_config_is_valid(tmp_path):
    conf = scaled.render_nginx_conf(tmp_path, 8000, [8101, 8102])
    check = subprocess.run(
        [scaled.nginx_binary(), "-t", "-p", str(tmp_path), "-c", str(conf), "-e", "stderr"],
        capture_output=True, text=True, timeout=30,
    )
    assert check.returncode == 0, check.stderr
    assert "server 127.0.0.1:8102 max_fails=1" in conf.read_text()


async def test_staff_on_one_worker_take_over_a_visitor_on_the_other(cluster, visitor_key, anna_key):
    visitor_port, staff_port = cluster.worker_ports
    async with open_socket(visitor_port, "/ws/chat/", visitor_key) as visitor, \
            open_socket(staff_port, "/ws/staff/", anna_key) as staff:
        await frames_until(visitor, lambda f: f["type"] == "history")
        await frames_until(staff, lambda f: f["type"] == "queue")
        await visitor.send(json.dumps({"type": "message", "text": NOBODY_ASKS}))
        await frames_until(visitor, turn_over)
        # The handoff queued on the visitor's worker reaches the staff screen on the other.
        change = (await frames_until(staff, lambda f: f["type"] == "queue_change"))[-1]
        handoff = change["handoff"]["id"]
        await staff.send(json.dumps({"type": "claim", "handoff": handoff}))
        notice = (await frames_until(visitor, lambda f: f["type"] == "notice"))[-1]
        assert notice["text"] == "Anna has joined the chat"
        text = "Hi, Anna here"
        await staff.send(json.dumps({"type": "message", "handoff": handoff, "text": text}))
        reply = (await frames_until(visitor, lambda f: f["type"] == "message"))[-1]
        assert (reply["role"], reply["text"], reply["name"]) == ("staff", "Hi, Anna here", "Anna")


async def test_chats_through_nginx_are_spread_over_both_workers_and_answered(
    cluster, visitor_key
):
    before = [worker_connects(cluster, port) for port in cluster.worker_ports]
    async with asyncio.TaskGroup() as group:
        chats = [group.create_task(ask_price(cluster.port, visitor_key)) for _ in range(8)]
    assert [chat.result() for chat in chats] == ["price"] * 8
    after = [worker_connects(cluster, port) for port in cluster.worker_ports]
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)


async def ask_price(port: int, session_key: str) -> str:
    async with open_socket(port, "/ws/chat/", session_key) as socket:
        await frames_until(socket, lambda f: f["type"] == "history")
        await socket.send(json.dumps({"type": "message", "text": PRICE_QUESTION}))
        frames = await frames_until(socket, lambda f: f.get("role") == "assistant")
        return frames[-1]["route"]


def worker_connects(cluster, port: int) -> int:
    """How many websockets worker ``port`` has accepted, from daphne's access log."""
    return worker_log(cluster, port).count("WSCONNECT /ws/chat/")


# A worker killed during a run. They leave worker 0 started again but left out by nginx for a
# few seconds (max_fails=1 fail_timeout=5s): later tests reach the workers without nginx.

KILL_CHATS, KILL_TURNS = 20, 3
# A visitor waits this long for each answer: an orphaned turn is due for resumption after
# TURN_BUDGET + DB_POOL_TIMEOUT, and then takes a turn's time.
ANSWER_WAIT = TURN_BUDGET + DB_POOL_TIMEOUT + 5


@dataclass
class KillRun:
    visitors: list
    delivery: object  # bench.visitors.Delivery
    killed_after: int  # answers the visitors had when worker 0 was killed
    gave_up: list


@pytest.fixture(scope="module")
def worker_killed_mid_run(cluster, llm, django_db_blocker):
    """KILL_CHATS visitors through nginx, KILL_TURNS turns each, the stand-in at 600 ms a call;
    worker 0 gets SIGKILL in the second round of turns, when half the visitors' messages are
    stored and their turns run: those on worker 0 die with it. The visitors do what the widget
    does (bench.visitors). Then the database is read; worker 0 is started again."""
    with django_db_blocker.unblock():
        seed_classifier_rows()
    llm.latency_ms = 600
    try:
        run = asyncio.run(kill_worker_during_chats(cluster))
    finally:
        llm.latency_ms = 0
        if cluster.workers[0] is None:
            cluster.start_worker(0)
    with django_db_blocker.unblock():
        run.delivery = check_delivery(run.visitors)
    return run


async def kill_worker_during_chats(cluster) -> KillRun:
    visitors = [Visitor(cluster.url, source=source_address(i)) for i in range(KILL_CHATS)]
    try:
        await asyncio.gather(*(v.start() for v in visitors))
        return await kill_worker_during_turns(cluster, visitors)
    finally:
        await asyncio.gather(*(v.close() for v in visitors))


async def kill_worker_during_turns(cluster, visitors: list[Visitor]) -> KillRun:
    gave_up = []

    async def chat(index: int, visitor: Visitor) -> None:
        for number in range(KILL_TURNS):
            text = (PRICE_QUESTION, NOBODY_ASKS)[(index + number) % 2]
            try:
                await visitor.say(text, ANSWER_WAIT)
            except VisitorGaveUp as exc:
                gave_up.append(exc)
                return

    def answers() -> int:
        return sum(said.done for v in visitors for said in v.said)

    def mid_turn() -> bool:
        """In the second round or later, half the visitors' messages are stored and their turns
        still run (3 in 4 was never seen at once in 2 runs of 3 on a loaded machine, where the
        turns drift apart: the kill then came after the last answer)."""
        running = sum(v.said[-1].seq is not None and not v.said[-1].done
                      for v in visitors if v.said)
        return answers() >= KILL_CHATS and running >= KILL_CHATS // 2

    async with asyncio.TaskGroup() as group:
        chats = [group.create_task(chat(i, v)) for i, v in enumerate(visitors)]
        while not mid_turn() and not all(c.done() for c in chats):
            await asyncio.sleep(0.01)
        killed_after = answers()
        cluster.kill_worker(0)
    return KillRun(visitors, None, killed_after, gave_up)


def test_a_worker_killed_mid_run_loses_no_message_and_stores_none_twice(worker_killed_mid_run):
    run = worker_killed_mid_run
    closed = [v for v in run.visitors if v.closes]
    # The kill came mid-run, hit the chats on worker 0, and each reconnected through nginx.
    assert run.killed_after < KILL_CHATS * KILL_TURNS
    assert 0 < len(closed) < KILL_CHATS
    assert run.gave_up == []
    assert all(v.reconnects == v.closes for v in closed)
    delivery = run.delivery
    # Every message was sent, after the kill too, and stored exactly once by its client id.
    assert delivery.sent == KILL_CHATS * KILL_TURNS
    assert (delivery.stored_once, delivery.duplicates, delivery.lost, delivery.unknown) == (
        delivery.sent, 0, 0, 0)
    # The chats carried on: at most the turn in flight on the dead worker lacks an answer.
    assert len(delivery.unanswered) <= len(closed)
    assert delivery.answered + delivery.error_answered + len(delivery.unanswered) == delivery.sent


def test_a_worker_killed_mid_run_leaves_no_turn_unanswered(worker_killed_mid_run):
    assert worker_killed_mid_run.delivery.unanswered == []


async def test_after_a_redis_restart_every_socket_reconnects_and_chats_carry_on(
    cluster, redis_server, visitor_key
):
    """Redis keeps nothing, so a restart forgets every group: a socket that stayed open would
    silently miss its conversation's frames. Instead channels_redis's receive fails and every
    socket is closed (1011); the client reconnects, which joins the groups again."""
    port = cluster.worker_ports[0]
    sockets = [await open_socket(port, "/ws/chat/", visitor_key) for _ in range(3)]
    for socket in sockets:
        await frames_until(socket, lambda f: f["type"] == "history")
    redis_server.stop()
    redis_server.start()
    for socket in sockets:
        with pytest.raises(websockets.ConnectionClosedError) as closed:
            await asyncio.wait_for(socket.recv(), 10)
        assert closed.value.rcvd.code == 1011
    assert cluster.workers[0].poll() is None  # the worker lives on
    async with open_socket(port, "/ws/chat/", visitor_key) as socket:
        await frames_until(socket, lambda f: f["type"] == "history")
        await socket.send(json.dumps({"type": "message", "text": PRICE_QUESTION, "id": "m1"}))
        frames = await frames_until(socket, lambda f: f.get("role") == "assistant")
    assert frames[-1]["route"] == "price"
    assert await Message.objects.filter(text=PRICE_QUESTION).acount() == 1
    # The other worker had no socket open, so it learns of the restart only when a chat uses
    # a pooled connection: that socket may be closed once (1011); the client's reconnect works.
    for attempt in range(2):
        try:
            assert await ask_price(cluster.worker_ports[1], visitor_key) == "price"
            break
        except websockets.ConnectionClosedError as closed:
            assert attempt == 0 and closed.rcvd.code == 1011


async def test_slow_loris_connections_are_cut_by_nginx_and_never_reach_a_worker(
    cluster, visitor_key
):
    """200 clients trickle request headers: nginx holds them (client_header_timeout, 10 s)
    without passing one to a worker, a real chat meanwhile gets its answer, and then nginx
    closes them all."""
    before = [worker_log(cluster, port).count('"GET /') for port in cluster.worker_ports]
    trickles = []
    for _ in range(200):
        reader, writer = await asyncio.open_connection("127.0.0.1", cluster.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
        trickles.append((reader, writer))
    assert await ask_price(cluster.port, visitor_key) == "price"
    started = asyncio.get_running_loop().time()
    for reader, writer in trickles:  # each trickle gets its answer: 408 or a closed socket
        await asyncio.wait_for(reader.read(), 20)
        writer.close()
    assert asyncio.get_running_loop().time() - started < 15
    after = [worker_log(cluster, port).count('"GET /') for port in cluster.worker_ports]
    assert after == before


def worker_log(cluster, port: int) -> str:
    """Worker ``port``'s output: daphne's access log and errors."""
    return (cluster.folder / f"worker-{port}.log").read_text()


async def test_an_oversized_frame_through_nginx_drops_only_its_own_socket(cluster, visitor_key):
    """The workers get the settings' frame limit on their command line: a frame announcing
    1 MiB is refused from its header, and the worker serves the next chat."""
    port = cluster.worker_ports[0]
    async with open_socket(port, "/ws/chat/", visitor_key) as socket:
        await frames_until(socket, lambda f: f["type"] == "history")
        await socket.send("x" * (settings.DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE + 1))
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(socket.recv(), 10)
    assert await ask_price(port, visitor_key) == "price"
