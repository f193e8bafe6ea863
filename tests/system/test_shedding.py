"""Shedding through nginx: two daphne workers behind ``deploy/nginx.conf``, one of them
saturated for real (one turn slot, held by a turn whose LLM call hangs, and a second turn
waiting for it). New chats through nginx all open, on the other worker: the saturated one
answers their handshake 503 and nginx tries the next (issue 16). Its open chats go on.

Needs nginx (``apt-get install nginx``): skipped without it, failed with ``REQUIRE_NGINX=1``.
"""

import asyncio
import json
import os

import httpx
import pytest
import websockets
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore

from agent.llm.standin.server import StandinServer
from realestate.dev import scaled
from realestate.dev.devserver import free_port
from realestate.dev.localredis import RedisProcess
from tests.servers import require_nginx, shared_database_url

pytestmark = pytest.mark.django_db(transaction=True)

NEW_CHATS = 4  # through nginx; of its (up to two) processes, one gets two and tries both workers
PRICE_QUESTION = "How much is listing 123456?"


@pytest.fixture(autouse=True)
def needs_nginx(chat_client):
    require_nginx()


@pytest.fixture(scope="module")
def cluster(django_db_setup, llm, tmp_path_factory):
    """Worker 0 has one turn slot, sheds at one turn waiting, and an LLM server that never
    answers; worker 1 is as usual."""
    require_nginx()
    redis = RedisProcess(free_port(), tmp_path_factory.mktemp("redis"))
    redis.start()
    hanging = StandinServer(fault="hang").start()
    env = {
        **os.environ,
        "DATABASE_URL": shared_database_url(),
        "REDIS_URL": redis.url,
        "LLM_BASE_URL": llm.base_url,
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "METRICS_ALLOWED_IPS": "127.0.0.1",
        "CHAT_RATE_LIMIT_CONNECTION": "off",
        "CHAT_RATE_LIMIT_IP": "off",
        "CHAT_MAX_SOCKETS_PER_IP": "0",
    }
    saturable = {
        "LLM_BASE_URL": hanging.base_url,
        "TURN_MAX_OPEN": "1",
        "CHAT_SHED_WAITING": "1",
        "TURN_BUDGET": "60",  # the turn holding the slot keeps it for the whole test
        "TURN_QUEUE_TIMEOUT": "60",
    }
    group = scaled.Cluster(
        free_port(),
        [free_port(), free_port()],
        env,
        tmp_path_factory.mktemp("cluster"),
        worker_env=[saturable, {}],
    )
    group.start()
    yield group
    group.stop()
    hanging.stop()
    redis.stop()


def visitor_key() -> str:
    session = SessionStore()
    session["chat"] = True
    session.save()
    return session.session_key


def open_socket(port: int, session_key: str):
    return websockets.connect(
        f"ws://127.0.0.1:{port}/ws/chat/",
        origin="http://127.0.0.1",
        additional_headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={session_key}"},
        open_timeout=10,
    )


async def next_frame(socket, kind: str) -> dict:
    while True:
        frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
        if frame["type"] == kind:
            return frame


async def metric(port: int, name: str) -> float:
    """A sample of worker ``port``'s /metrics (0 when absent)."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def test_new_chats_go_to_the_other_worker_while_one_is_saturated(
    cluster, classifier_rows, listings
):
    busy, calm = cluster.worker_ports
    keys = [await sync_to_async(visitor_key)() for _ in range(2 + NEW_CHATS)]
    async with open_socket(busy, keys[0]) as first, open_socket(busy, keys[1]) as second:
        for socket in (first, second):
            await next_frame(socket, "history")
            await socket.send(json.dumps({"type": "message", "text": PRICE_QUESTION}))
        for _ in range(200):  # until worker 0's second turn waits (its /metrics says so)
            if await metric(busy, "chat_turns_waiting") >= 1:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("worker 0 never had a turn waiting")

        # Straight to the saturated worker: HTTP 503 at the handshake.
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with open_socket(busy, keys[2]):
                pass
        assert refused.value.response.status_code == 503
        assert await metric(busy, "chat_connections_shed_total") == 1

        # Through nginx: every new chat opens, on the calm worker.
        opened = [await open_socket(cluster.port, key).__aenter__() for key in keys[2:]]
        try:
            for socket in opened:
                await next_frame(socket, "history")
            assert await metric(busy, "chat_connections_shed_total") >= 2  # nginx tried it
            calm_log = (cluster.folder / f"worker-{calm}.log").read_text()
            assert calm_log.count("WSCONNECT /ws/chat/") == NEW_CHATS
        finally:
            for socket in opened:
                await socket.close()

        # The saturated worker's open chats are still served.
        await first.send(json.dumps({"type": "dance"}))
        assert (await next_frame(first, "error"))["code"] == "unknown_type"


def test_nginx_retries_a_chat_handshake_on_503_only(tmp_path):
    conf = scaled.render_nginx_conf(tmp_path, 8000, [8101, 8102]).read_text()
    websockets_location = conf.split("location /ws/ {", 1)[1].split("}", 1)[0]
    assert "proxy_next_upstream error timeout http_503;" in websockets_location
    assert "http_403" not in conf  # a bad origin or session is refused alike on every worker
