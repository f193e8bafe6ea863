"""A worker with CHAT_SHED_WAITING turns waiting for a slot refuses new chat sockets with HTTP
503 at the handshake (nginx then opens them on another worker, tests/system/test_shedding.py)
and counts them; the chats it has open go on (issue 16)."""

import asyncio

import pytest
from channels.testing import WebsocketCommunicator

from agent import metrics
from agent.chat import capacity
from realestate.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

PRICE_QUESTION = "How much is listing 123456?"


def shed_count() -> float:
    return metrics.REGISTRY.get_sample_value("chat_connections_shed_total") or 0


async def hold_the_gate(release: asyncio.Event) -> list[asyncio.Task]:
    """With TURN_MAX_OPEN 1: one turn holds the slot until ``release``, one waits for it."""

    async def turn():
        async with capacity.turn_slot():
            await release.wait()

    tasks = [asyncio.create_task(turn()), asyncio.create_task(turn())]
    while capacity._waiting < 1:
        await asyncio.sleep(0)
    return tasks


async def handshake(origin=b"http://localhost") -> tuple[WebsocketCommunicator, list[dict]]:
    """Start a chat handshake; return the communicator and what the app answered first."""
    socket = WebsocketCommunicator(application, "/ws/chat/", headers=[(b"origin", origin)])
    await socket.send_input({"type": "websocket.connect"})
    answer = [await socket.receive_output(timeout=5)]
    if answer[0]["type"] == "websocket.http.response.start":
        answer.append(await socket.receive_output(timeout=5))
    return socket, answer


async def test_a_saturated_worker_refuses_new_chats_with_503_and_serves_the_open_ones(
    settings, connect, standin, listings
):
    settings.TURN_MAX_OPEN = 1
    settings.CHAT_SHED_WAITING = 1
    settings.TURN_QUEUE_TIMEOUT = 60  # no "busy" message in between
    open_chat, _ = await connect()
    release = asyncio.Event()
    holders = await hold_the_gate(release)
    assert capacity.saturated()
    before = shed_count()

    refused, answer = await handshake()
    assert answer == [
        {"type": "websocket.http.response.start", "status": 503, "headers": []},
        {"type": "websocket.http.response.body", "body": b""},
    ]
    assert shed_count() == before + 1
    # A page of a site that may not embed the chat is still refused as before (daphne: 403),
    # not shed: nginx tries another worker for a 503 only.
    foreign, answer = await handshake(origin=b"https://evil.example")
    assert answer[0]["type"] == "websocket.close" and shed_count() == before + 1

    # The chat open before goes on: its message is stored and answered once a slot frees.
    await open_chat.send_json_to({"type": "message", "text": PRICE_QUESTION})
    mine = await open_chat.receive_json_from(timeout=5)
    assert mine["role"] == "user"
    release.set()
    await asyncio.gather(*holders)
    frames = []
    while not frames or frames[-1].get("role") != "assistant":
        frames.append(await open_chat.receive_json_from(timeout=5))
    assert "$350,000" in frames[-1]["text"]

    assert not capacity.saturated()
    accepted, history = await connect()
    assert history["type"] == "history" and shed_count() == before + 1
    for socket in (open_chat, accepted):
        await socket.disconnect()
    for socket in (refused, foreign):
        await socket.send_input({"type": "websocket.disconnect", "code": 1006})
        await socket.wait()


async def test_no_chat_is_shed_when_shedding_is_off(settings, connect):
    settings.TURN_MAX_OPEN = 1
    settings.CHAT_SHED_WAITING = 0
    release = asyncio.Event()
    holders = await hold_the_gate(release)
    assert not capacity.saturated()
    socket, history = await connect()
    assert history["type"] == "history"
    await socket.disconnect()
    release.set()
    await asyncio.gather(*holders)
