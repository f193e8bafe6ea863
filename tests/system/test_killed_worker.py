"""A visitor message whose worker was killed mid-turn is answered once the worker is back
(agent.chat.orphans), with daphne as a real process on the test database."""

import asyncio
import json
import os

import pytest
import websockets

from agent.models import Message
from tests.chat.test_orphans import PRICE_QUESTION, replies
from tests.servers import AppServer, free_port, shared_database_url

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_turn_whose_worker_was_killed_is_answered_after_the_restart(
    standin, listings, visitor_session, chat_client, tmp_path
):
    """daphne in a subprocess on the test database: SIGKILL while the classifiers think,
    start it again, and the visitor's reconnecting socket gets the answer, once."""
    env = {
        **{k: v for k, v in os.environ.items() if k != "REDIS_URL"},
        "DATABASE_URL": shared_database_url(),
        "LLM_BASE_URL": standin.base_url,
        "TURN_BUDGET": "2",
        "DB_POOL_TIMEOUT": "1",  # the turn is due 3 s after the message was stored
        "DEBUG": "false",
        "LOG_LEVEL": "ERROR",
    }
    app = AppServer(free_port(), env, tmp_path / "daphne.log")
    headers = {"Cookie": f"sessionid={visitor_session.session_key}", "Origin": app.url}
    url = f"ws://127.0.0.1:{app.port}/ws/chat/"
    await asyncio.to_thread(app.start)
    try:
        standin.latency_ms = 1500
        async with websockets.connect(url, additional_headers=headers) as socket_:
            json.loads(await socket_.recv())  # the history
            await socket_.send(json.dumps({"type": "message", "text": PRICE_QUESTION}))
            while json.loads(await asyncio.wait_for(socket_.recv(), 5))["type"] != "typing":
                pass  # the echo, then typing: the turn is with the classifiers
            app.stop(kill=True)
        standin.latency_ms = 0
        await asyncio.to_thread(app.start)
        async with websockets.connect(url, additional_headers=headers) as socket_:
            history = json.loads(await socket_.recv())
            assert [m["role"] for m in history["messages"]] == ["user"]
            frames = []
            while frames[-1:] != [{"type": "typing", "active": False}]:
                frames.append(json.loads(await asyncio.wait_for(socket_.recv(), 10)))
    finally:
        app.stop()
    assert [(r["seq"], r["route"]) for r in replies(frames)] == [(2, "price")]
    assert [(m.seq, m.role) async for m in Message.objects.all()] == [(1, "user"), (2, "assistant")]
