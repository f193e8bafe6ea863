"""PostgreSQL goes away while visitors chat, and comes back: turns fail cleanly with an error
frame, the worker lives on, and chats carry on once the database is back, with every message
sent while it was up stored once and answered.

A real daphne subprocess runs against a PostgreSQL of this module's own (``SparePostgres``),
which the test stops and starts; the suite's own database server is never touched. Once with
psycopg's pool (the default) and once without it, with persistent connections.
"""

import asyncio
import json
import os
import subprocess
import time

import httpx
import psycopg
import pytest
import websockets

from realestate.dev.devdb import SparePostgres
from realestate.dev.devserver import manage
from tests.servers import ROOT, AppServer, free_port

RECOVERY_TIMEOUT = 30  # seconds for the app to reach the database again once it is back
PRICE_QUESTION = "How much is listing 123456?"


@pytest.fixture(scope="module")
def database():
    """The module's own PostgreSQL, migrated, with the demo listings."""
    spare = SparePostgres()
    env = {**os.environ, "DATABASE_URL": spare.url}
    for command in (manage("migrate", "--noinput", "-v", "0"), manage("seed_demo")):
        subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    yield spare
    spare.close()


@pytest.fixture(scope="module", params=["pool", "no-pool"])
def app(request, database, llm, tmp_path_factory):
    """The app under daphne against ``database``: with psycopg's pool (2 s to wait for a
    connection), or without it and with connections kept 60 s between requests."""
    env = {
        **{k: v for k, v in os.environ.items() if k != "REDIS_URL"},
        "DATABASE_URL": database.url,
        "LLM_BASE_URL": llm.base_url,
        "TURN_BUDGET": "3",
        "DB_POOL_TIMEOUT": "2",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
    }
    if request.param == "no-pool":
        env |= {"DB_POOL_MAX_SIZE": "0", "CONN_MAX_AGE": "60"}
    server = AppServer(free_port(), env, tmp_path_factory.mktemp("app") / "daphne.log")
    server.start()
    yield server
    server.stop()


async def open_chat(app, session_key=None, after=0):
    """Open the chat websocket as a browser does; returns (socket, history frame, session
    key). Without a session key, ``GET /`` first gives one."""
    if session_key is None:
        async with httpx.AsyncClient(base_url=app.url) as http:
            session_key = (await http.get("/")).cookies["sessionid"]
    socket_ = await websockets.connect(
        f"ws://127.0.0.1:{app.port}/ws/chat/?after={after}",
        additional_headers={"Cookie": f"sessionid={session_key}", "Origin": app.url},
        open_timeout=10,
    )
    history = json.loads(await asyncio.wait_for(socket_.recv(), 10))
    assert history["type"] == "history", history
    return socket_, history, session_key


async def send(socket_, text, client_id):
    await socket_.send(json.dumps({"type": "message", "text": text, "id": client_id}))


async def frames_until(socket_, done, timeout=15):
    """Frames received until ``done(frame)``, that one last."""
    frames = []
    while not frames or not done(frames[-1]):
        frames.append(json.loads(await asyncio.wait_for(socket_.recv(), timeout)))
    return frames


def turn_over(frame):
    return frame == {"type": "typing", "active": False}


def is_error(frame):
    return frame["type"] == "error"


def replies(frames):
    return [f for f in frames if f["type"] == "message" and f["role"] == "assistant"]


async def reconnect(app, session_key, after):
    """Open the chat again, retrying while the app cannot reach the database yet; returns
    (socket, history, seconds it took)."""
    started = time.monotonic()
    while True:
        try:
            socket_, history, _ = await open_chat(app, session_key, after)
            return socket_, history, time.monotonic() - started
        except (OSError, websockets.WebSocketException, AssertionError, TimeoutError):
            if time.monotonic() - started > RECOVERY_TIMEOUT:
                raise
            await asyncio.sleep(0.5)


async def test_after_a_restart_while_idle_the_next_message_is_answered(app, database):
    socket_, _, _ = await open_chat(app)
    await send(socket_, PRICE_QUESTION, "before")
    await frames_until(socket_, turn_over)

    database.restart()  # every connection the app holds is dead now
    await send(socket_, PRICE_QUESTION, "after")
    frames = await frames_until(socket_, turn_over)
    assert not [f for f in frames if is_error(f)]
    assert [r["route"] for r in replies(frames)] == ["price"]
    await socket_.close()


async def test_an_outage_fails_turns_cleanly_and_chats_carry_on_once_it_is_over(
    app, database, llm
):
    socket_, history, session_key = await open_chat(app)
    conversation = history["conversation"]
    await send(socket_, PRICE_QUESTION, "before")
    assert [r["route"] for r in replies(await frames_until(socket_, turn_over))] == ["price"]

    # A turn is with the LLM when the database goes away: it cannot store its reply.
    llm.latency_ms = 1500
    await send(socket_, PRICE_QUESTION, "mid-turn")
    (echo,) = await frames_until(socket_, lambda f: f["type"] == "message")
    assert echo["id"] == "mid-turn"
    database.stop()
    frames = await frames_until(socket_, turn_over)
    assert [f["code"] for f in frames if is_error(f)] == ["turn_failed"]
    llm.latency_ms = 0

    # While it is down, a message cannot be stored and the visitor is told so.
    for client_id in ("down-1", "down-2"):
        await send(socket_, PRICE_QUESTION, client_id)
        error = (await frames_until(socket_, is_error))[-1]
        assert error["code"] == "not_stored"
    assert app.running  # the worker did not crash
    await socket_.close()

    database.start()
    # The visitor comes back: the message whose turn failed is answered now, once.
    socket_, history, took = await reconnect(app, session_key, after=echo["seq"])
    assert history["messages"] == []
    frames = await frames_until(socket_, turn_over, timeout=RECOVERY_TIMEOUT)
    assert [r["route"] for r in replies(frames)] == ["price"]

    await send(socket_, PRICE_QUESTION, "after")
    assert [r["route"] for r in replies(await frames_until(socket_, turn_over))] == ["price"]
    await socket_.close()
    assert app.running

    with psycopg.connect(database.url, autocommit=True) as db:
        stored = db.execute(
            "SELECT role, client_id, answered_at IS NOT NULL FROM agent_message "
            "WHERE conversation_id = %s ORDER BY seq",
            [conversation],
        ).fetchall()
        stuck = db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%%'"
        ).fetchone()[0]
        waiting = db.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0]
    assert stored == [
        ("user", "before", True),
        ("assistant", None, False),
        ("user", "mid-turn", True),
        ("assistant", None, False),
        ("user", "after", True),
        ("assistant", None, False),
    ]
    assert (stuck, waiting) == (0, 0)
    print(f"{app.env.get('DB_POOL_MAX_SIZE', 'pool')}: the app reached the database "
          f"{took:.1f} s after it was back")
