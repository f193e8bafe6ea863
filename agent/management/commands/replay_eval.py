"""``manage.py replay_eval FILE [--url URL] [--json PATH]``: replay eval conversations, print
pass/fail per turn and the report (``agent.ops.evalreport``)."""

import asyncio
import json
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from django.utils import timezone

from agent.chat.abuse import close_limiters
from agent.llm.client import close_clients
from agent.ops import evalreport, evalset


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
    conversations: list[dict],
    connect,
    write,
    keep_appointments: bool = False,
    results: list[evalset.TurnResult] | None = None,
) -> tuple[int, int, int, int]:
    """Replay and write one line per turn; return (turns passed, turns, labels right, labels).
    Each turn's ``TurnResult`` is appended to ``results`` when given."""
    passed = turns = labels_right = labels = 0
    async for result in evalset.replay(conversations, connect, keep_appointments=keep_appointments):
        if results is not None:
            results.append(result)
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


def report_payload(file: Path, results: list[evalset.TurnResult]) -> dict:
    """The ``--json`` document: ``file``, ``turns`` ``{"passed", "total"}``, the report
    (``evalreport.build``: ``classifiers``, ``routes``, ``turn_latency_ms``) and ``results``, a
    row per turn (conversation, turn, expected and got route, passed, latency in ms)."""
    observed = [r.observed for r in results if r.observed is not None]
    return {
        "file": str(file),
        "turns": {"passed": sum(r.passed for r in results), "total": len(results)},
        **evalreport.build(observed),
        "results": [
            {
                "conversation": r.conversation,
                "turn": r.turn,
                "expected_route": r.observed.expected_route if r.observed else None,
                "route": r.route,
                "passed": r.passed,
                "latency_ms": round(r.observed.latency_ms, 1) if r.observed else None,
            }
            for r in results
        ],
    }


class Command(BaseCommand):
    help = (
        "Replay eval conversations (the ../shared/eval format) through the chat websocket and "
        "print pass/fail per turn, then a report: per classifier precision, recall and F1 of its "
        "yes/no decision and the exact-match rate of its extracted fields, the route confusion "
        "matrix and turn latency p50/p90/p99 (README, Evaluation). Without --url the app runs "
        "in this process; the LLM server is LLM_BASE_URL either way. Exits 1 if a turn fails."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="a conversations.jsonl file")
        parser.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8000")
        parser.add_argument(
            "--keep-appointments",
            action="store_true",
            help="keep the appointments the replay booked (default: cancel them afterwards)",
        )
        parser.add_argument(
            "--json", type=Path, dest="json_path", metavar="PATH",
            help="also write the report as JSON to PATH",
        )

    def handle(
        self,
        *args,
        file: Path,
        url: str | None,
        keep_appointments: bool,
        json_path: Path | None = None,
        **options,
    ):
        if not file.exists():
            raise CommandError(f"{file} does not exist")
        try:
            conversations = evalset.load(file, timezone.localdate())
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        connect = server_chat(url) if url else in_process_chat
        results: list[evalset.TurnResult] = []

        async def main():
            try:
                return await run_replay(
                    conversations, connect, self.stdout.write, keep_appointments, results
                )
            finally:
                await close_clients()
                await close_limiters()
                # The ORM ran in asgiref's thread for sync code: close its connection there.
                await database_sync_to_async(connections.close_all)()

        passed, turns, labels_right, labels = asyncio.run(main())
        payload = report_payload(file, results)
        self.stdout.write("")
        for line in evalreport.render(payload):
            self.stdout.write(line)
        self.stdout.write("")
        if json_path is not None:
            json_path.write_text(json.dumps(payload, indent=2) + "\n")
        self.stdout.write(
            f"turns: {passed}/{turns} passed; classifier labels: {labels_right}/{labels} right"
        )
        if passed < turns:
            raise SystemExit(1)
