"""``manage.py replay_eval FILE [--url URL]``: replay eval conversations, pass/fail per turn."""

import asyncio
import json
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from agent.llm.client import close_clients
from agent.ops import evalset


class CommunicatorChat:
    """A chat through the ASGI app in this process (channels' WebsocketCommunicator)."""

    def __init__(self, communicator):
        self.communicator = communicator

    async def send(self, frame: dict) -> None:
        await self.communicator.send_json_to(frame)

    async def receive(self) -> dict:
        return await self.communicator.receive_json_from(timeout=evalset.REPLY_TIMEOUT)


class SocketChat:
    """A chat over a real websocket to a running server."""

    def __init__(self, socket):
        self.socket = socket

    async def send(self, frame: dict) -> None:
        await self.socket.send(json.dumps(frame))

    async def receive(self) -> dict:
        return json.loads(await asyncio.wait_for(self.socket.recv(), evalset.REPLY_TIMEOUT))


@asynccontextmanager
async def in_process_chat():
    """Open a chat as a new visitor against ``realestate.asgi.application`` in this process."""
    from channels.testing import WebsocketCommunicator

    from realestate.asgi import application

    session = SessionStore()
    session["chat"] = True
    await database_sync_to_async(session.save)()
    headers = [
        (b"cookie", f"{settings.SESSION_COOKIE_NAME}={session.session_key}".encode()),
        (b"origin", b"http://localhost"),
    ]
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await communicator.connect()
    if not connected:
        raise CommandError("the chat consumer refused the connection")
    try:
        yield CommunicatorChat(communicator)
    finally:
        await communicator.disconnect()


def server_chat(base_url: str):
    """A factory of chats as new visitors of the server at ``base_url`` (e.g. http://127.0.0.1:8000)."""
    import websockets

    @asynccontextmanager
    async def connect():
        async with httpx.AsyncClient(base_url=base_url) as http:
            page = await http.get("/")
            page.raise_for_status()
            session_key = page.cookies[settings.SESSION_COOKIE_NAME]
        ws_url = base_url.replace("http", "ws", 1).rstrip("/") + "/ws/chat/"
        headers = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={session_key}", "Origin": base_url}
        async with websockets.connect(ws_url, additional_headers=headers) as socket:
            yield SocketChat(socket)

    return connect


async def run_replay(
    conversations: list[dict], connect, write, keep_appointments: bool = False
) -> tuple[int, int, int, int]:
    """Replay and write one line per turn; return (turns passed, turns, labels right, labels)."""
    passed = turns = labels_right = labels = 0
    async for result in evalset.replay(conversations, connect, keep_appointments=keep_appointments):
        turns += 1
        passed += result.passed
        labels += result.labels_checked
        labels_right += result.labels_checked - len(result.label_misses)
        verdict = "PASS" if result.passed else "FAIL"
        write(f"{verdict} {result.conversation} turn {result.turn}: {result.route}")
        for problem in result.problems:
            write(f"    {problem}")
        for miss in result.label_misses:
            write(f"    label {miss}")
    return passed, turns, labels_right, labels


class Command(BaseCommand):
    help = (
        "Replay eval conversations (the ../shared/eval format) through the chat websocket and "
        "print pass/fail per turn. Without --url the app runs in this process; the LLM server "
        "is LLM_BASE_URL either way. Exits 1 if a turn fails."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="a conversations.jsonl file")
        parser.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8000")
        parser.add_argument(
            "--keep-appointments",
            action="store_true",
            help="keep the appointments the replay booked (default: cancel them afterwards)",
        )

    def handle(self, *args, file: Path, url: str | None, keep_appointments: bool, **options):
        if not file.exists():
            raise CommandError(f"{file} does not exist")
        try:
            conversations = evalset.load(file, timezone.localdate())
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        connect = server_chat(url) if url else in_process_chat

        async def main():
            try:
                return await run_replay(
                    conversations, connect, self.stdout.write, keep_appointments
                )
            finally:
                await close_clients()

        passed, turns, labels_right, labels = asyncio.run(main())
        self.stdout.write(
            f"turns: {passed}/{turns} passed; classifier labels: {labels_right}/{labels} right"
        )
        if passed < turns:
            raise SystemExit(1)
