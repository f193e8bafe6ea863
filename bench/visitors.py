"""Simulated visitors: a chat client that does what the widget does, for ``bench/load.py`` and
the several-worker fault tests (``tests/system/test_scaled.py``).

Like ``static/chat/widget.js``, a ``Visitor``:

- asks ``POST /chat/session`` (with an ``Origin`` header) for a token naming a new
  conversation, then opens ``/ws/chat/?token=...&after=N``;
- gives every message a client id and keeps it queued until the server echoes it, stored;
- on a closed socket, reconnects after a backoff (0.5 s doubling to 10 s, equal jitter) with
  ``after`` = the last seq it holds with none missing before it, and resends its queue in
  order with the same ids (the server stores a message once per client id).

It sends one message at a time and waits for its answer: an assistant or staff message after
it, or an error frame. It can speak from its own loopback address (``source``), so that a
crowd of visitors is not one client address to nginx's per-address limits.

``check_delivery`` then reads the database: every message the visitors sent is stored once,
and every visitor message has an answer or an error frame.
"""

import asyncio
import functools
import json
import random
import ssl
import time
import uuid
from dataclasses import dataclass, field

import httpx
import websockets

BACKOFF_MIN = 0.5  # seconds, as the widget
BACKOFF_MAX = 10.0
RECONNECT_FOR = 60.0  # seconds of failed reconnects before a visitor gives up


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every visitor: httpx builds a new one per client otherwise, which
    loads the CA bundle each time (37 ms of CPU here, more than the rest of opening a chat)."""
    return ssl.create_default_context()


class VisitorGaveUp(Exception):
    """The visitor could not reconnect within ``RECONNECT_FOR`` seconds."""


def source_address(index: int, per_address: int = 8) -> str:
    """A loopback address for visitor ``index``: 127.1.x.y, shared by ``per_address`` visitors.

    Linux routes all of 127.0.0.0/8 to the loopback interface, so each is a distinct client
    address to nginx (``limit_conn`` and ``limit_req`` count per address) at no cost.
    """
    block = index // per_address
    return f"127.1.{block // 250}.{block % 250 + 1}"


@dataclass
class Said:
    """One message a visitor sent, and what became of it.

    ``latency_ms`` runs from the first send to the answer (reconnects included); ``route`` is
    the answer's route (``"staff"`` for a staff member's message); ``error`` the code of an
    error frame that came instead. Neither: no answer within the wait (``missing``). A "busy,
    one moment" reply (route ``busy``) is not the answer: ``busy`` counts it, and the wait
    goes on for the answer that follows it.
    """

    client_id: str
    text: str
    sent_at: float  # time.perf_counter()
    seq: int | None = None  # the seq the server stored it under, once echoed
    sends: int = 0  # 1, plus one per resend after a reconnect
    latency_ms: float | None = None
    route: str | None = None
    error: str | None = None
    busy: int = 0

    @property
    def done(self) -> bool:
        return self.route is not None or self.error is not None


@dataclass
class Visitor:
    """One visitor of the chat at ``base_url`` (the app or nginx, ``http://host:port``).

    Args:
        base_url: where the chat is served.
        source: the local address to connect from (``source_address``); None: any.
        timeout: seconds for the HTTP request, the websocket handshake and the history frame.

    Counters: ``closes`` (sockets that closed under it), ``reconnects`` (successful ones),
    ``resends`` (queued messages sent again after a reconnect), ``stray_errors`` (error frames
    when no message was waiting for an answer).
    """

    base_url: str
    source: str | None = None
    timeout: float = 30.0
    conversation: str | None = None
    said: list[Said] = field(default_factory=list)
    closes: int = 0
    reconnects: int = 0
    resends: int = 0
    stray_errors: int = 0
    _token: str = ""
    _socket: object = None
    _queue: dict = field(default_factory=dict)  # client id -> Said, not yet echoed, in order
    _seqs: set = field(default_factory=set)
    _held: int = 0  # the highest seq held with every seq before it
    _waiting: Said | None = None

    async def start(self) -> None:
        """Get a token for a new conversation and open the socket (history read).

        Raises:
            httpx.HTTPError, OSError, websockets.InvalidHandshake, TimeoutError: it failed.
        """
        transport = httpx.AsyncHTTPTransport(local_address=self.source, verify=tls_context())
        async with httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout,
                                     transport=transport) as http:
            response = await http.post("/chat/session", json={"token": None},
                                       headers={"Origin": self.base_url})
            response.raise_for_status()
        body = response.json()
        self._token, self.conversation = body["token"], body["conversation"]
        await self._connect()

    async def say(self, text: str, wait: float) -> Said:
        """Send ``text`` and wait up to ``wait`` seconds for its answer, reconnecting as the
        widget does when the socket closes; returns what became of it.

        Raises:
            VisitorGaveUp: the socket closed and reconnecting failed for ``RECONNECT_FOR`` s.
        """
        said = Said(uuid.uuid4().hex, text, time.perf_counter())
        self.said.append(said)
        self._queue[said.client_id] = said
        self._waiting = said
        try:
            await self._transmit(said)
            deadline = time.monotonic() + wait
            while not said.done and time.monotonic() < deadline:
                try:
                    raw = await asyncio.wait_for(self._socket.recv(),
                                                 deadline - time.monotonic())
                except TimeoutError:
                    break
                except websockets.ConnectionClosed:
                    self.closes += 1
                    await self._reconnect()
                    continue
                self._take(json.loads(raw))
        finally:
            self._waiting = None
        return said

    async def close(self) -> None:
        """Close the socket (no reconnect)."""
        if self._socket is not None:
            await self._socket.close()

    async def _connect(self) -> None:
        url = (self.base_url.replace("http", "ws", 1)
               + f"/ws/chat/?token={self._token}&after={self._held}")
        local = {"local_addr": (self.source, 0)} if self.source else {}
        self._socket = await websockets.connect(url, origin=self.base_url,
                                                open_timeout=self.timeout, ping_interval=None,
                                                **local)
        history = json.loads(await asyncio.wait_for(self._socket.recv(), self.timeout))
        if history.get("type") != "history":
            raise RuntimeError(f"expected the history frame, got {history}")
        self._take(history)
        for queued in list(self._queue.values()):  # what the history did not acknowledge
            await self._transmit(queued)

    async def _reconnect(self) -> None:
        given_up_at = time.monotonic() + RECONNECT_FOR
        attempt = 0
        while True:
            ceiling = min(BACKOFF_MAX, BACKOFF_MIN * 2 ** attempt)
            await asyncio.sleep(ceiling / 2 + random.random() * ceiling / 2)
            attempt += 1
            try:
                await self._connect()
            except (OSError, TimeoutError, websockets.InvalidHandshake,
                    websockets.ConnectionClosed) as exc:
                if time.monotonic() > given_up_at:
                    raise VisitorGaveUp(f"no reconnect in {RECONNECT_FOR:g} s: {exc!r}") from exc
                continue
            self.reconnects += 1
            return

    async def _transmit(self, said: Said) -> None:
        said.sends += 1
        if said.sends > 1:
            self.resends += 1
        try:
            await self._socket.send(json.dumps({"type": "message", "text": said.text,
                                                "id": said.client_id}))
        except websockets.ConnectionClosed:
            pass  # the next recv() sees it closed and reconnects, which resends it

    def _take(self, frame: dict) -> None:
        kind = frame.get("type")
        if kind == "history":
            for message in frame["messages"]:
                self._message(message)
        elif kind == "message":
            self._message(frame)
        elif kind == "error":
            said = self._waiting
            if said is not None and not said.done:
                said.error = frame.get("code", "?")
                said.latency_ms = (time.perf_counter() - said.sent_at) * 1000
            else:
                self.stray_errors += 1

    def _message(self, message: dict) -> None:
        seq = message["seq"]
        if seq in self._seqs:
            return  # held already (a frame that came both live and in a history)
        self._seqs.add(seq)
        while self._held + 1 in self._seqs:
            self._held += 1
        said = self._waiting
        if message["role"] == "user":
            echoed = self._queue.pop(message.get("id"), None)
            if echoed is not None:
                echoed.seq = seq
        elif said is not None and said.seq is not None and seq > said.seq and not said.done:
            if message.get("route") == "busy":
                said.busy += 1
                return
            said.route = message.get("route") or message["role"]
            said.latency_ms = (time.perf_counter() - said.sent_at) * 1000


@dataclass
class Delivery:
    """What the database holds of the visitors' messages (``check_delivery``).

    ``sent``: client ids the visitors sent; ``stored_once``: of them, stored exactly once;
    ``duplicates``: stored more than once; ``lost``: not stored; ``unknown``: visitor messages
    in their conversations under an id they never sent (or none). ``answered``: visitor
    messages with an assistant or staff message after them, before the next visitor message;
    ``error_answered``: the others whose visitor got an error frame for them; ``unanswered``:
    the rest, as ``(conversation, seq, text)``.
    """

    sent: int = 0
    stored_once: int = 0
    duplicates: int = 0
    lost: int = 0
    unknown: int = 0
    answered: int = 0
    error_answered: int = 0
    unanswered: list = field(default_factory=list)


def check_delivery(visitors: list[Visitor]) -> Delivery:
    """Compare what ``visitors`` sent with their conversations' rows in the database.

    Uses the Django ORM (synchronous: call it off the event loop, with settings configured).
    """
    from agent.models import Message

    by_conversation = {v.conversation: v for v in visitors if v.conversation}
    rows = Message.objects.filter(conversation_id__in=list(by_conversation)).order_by(
        "conversation_id", "seq"
    ).values_list("conversation_id", "seq", "role", "client_id", "text")
    threads: dict[str, list] = {}
    for conversation_id, *rest in rows:
        threads.setdefault(str(conversation_id), []).append(rest)
    delivery = Delivery()
    for conversation, visitor in by_conversation.items():
        sent = {said.client_id: said for said in visitor.said}
        stored: dict[str, int] = {}
        waiting = None  # the visitor message not answered so far: (seq, client id, text)
        for seq, role, client_id, text in [*threads.get(conversation, []), (0, "end", "", "")]:
            if role in (Message.Role.ASSISTANT, Message.Role.STAFF):
                if waiting is not None:
                    delivery.answered += 1
                waiting = None
                continue
            if waiting is not None:  # another visitor message, or the end, came first
                if waiting[1] in sent and sent[waiting[1]].error is not None:
                    delivery.error_answered += 1
                else:
                    delivery.unanswered.append((conversation, waiting[0], waiting[2]))
            if role == "end":
                break
            waiting = (seq, client_id, text)
            if client_id in sent:
                stored[client_id] = stored.get(client_id, 0) + 1
            else:
                delivery.unknown += 1
        delivery.sent += len(sent)
        delivery.stored_once += sum(1 for c in sent if stored.get(c) == 1)
        delivery.duplicates += sum(1 for c in sent if stored.get(c, 0) > 1)
        delivery.lost += sum(1 for c in sent if c not in stored)
    return delivery
