"""The visitor's chat websocket at ``/ws/chat/``: a thin shell around ``agent.chat.turn``.

The protocol (frames, error codes, close codes) is specified in README.md, section "Websocket
protocol". Frames are decoded and encoded by channels' ``AsyncJsonWebsocketConsumer``
(``json.dumps`` with its default separators); ``parse_frame`` checks a decoded client frame.
Beyond the README: a message's ``id`` is optional, 1 to 64 characters; the limit of
``CHAT_MAX_SOCKETS_PER_IP`` sockets per address counts the sockets of this process
(``agent.chat.abuse``); a bad ``after`` gets an error frame ``bad_after`` and the whole history;
while a connection is rate limited, a resend of a message already stored is refused too (sent
again later, it is acknowledged), so a burst keeps its order.

Every socket of a conversation joins its group (``agent.live``): the visitor's other tabs see
the same frames. A turn runs as a task of its own, so frames for the conversation keep flowing
while it runs, and it finishes, stored, even when the visitor has gone; the reply then arrives
with the history of the next connection. The visitor's turns run one at a time, in order.
A visitor message whose turn died with its worker is answered when a socket of the
conversation connects (``agent.chat.orphans``): at once if it is due, else when it is.
While staff hold the conversation (a claimed handoff, ``agent.staff.handoffs``), a visitor message
makes no turn: it is marked for staff and the bot stays silent.
"""

import asyncio
import json
import logging
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils import timezone

from agent import metrics
from agent.chat import abuse, capacity, orphans, shedding, turn
from agent.chat.widget import read_token
from agent.dbgate import TripsOnly, db_trip
from agent.live import conversation_group, publish, send_frames
from agent.models import Conversation, Message

logger = logging.getLogger(__name__)

MAX_TEXT = 2000  # characters, after trimming
MAX_ID = 64  # characters of a client's message id

# Running turns, kept referenced so the event loop does not drop them before they finish.
_turns: set[asyncio.Task] = set()


class BadFrame(Exception):
    """A client frame the protocol does not allow; ``code`` is sent back in the error frame."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def decode_frame(text_data: str) -> object:
    """The JSON value of a client's text frame (any JSON value; ``parse_frame`` checks it).

    Raises:
        BadFrame: ``bad_json``, not JSON (or nested past the parser's recursion limit).
    """
    try:
        return json.loads(text_data)
    except (ValueError, RecursionError):  # nesting deeper than ~1,000 raises RecursionError
        raise BadFrame("bad_json", "That frame is not valid JSON.") from None


def parse_frame(frame: object) -> tuple[str, str | None]:
    """Return ``(text, client_id)`` of a decoded client frame (``decode_frame``): the trimmed
    visitor text and the client's message id, or None when the frame has none.

    Raises:
        BadFrame: not an object, unknown type, missing, empty or over-long text, or an id
            that is not a string of 1 to 64 characters.
    """
    if not isinstance(frame, dict) or frame.get("type") != "message":
        raise BadFrame("unknown_type", 'Frames need "type": "message".')
    text = frame.get("text")
    if not isinstance(text, str):
        raise BadFrame("missing_text", 'A message needs a "text" string.')
    text = text.strip()
    if not text:
        raise BadFrame("empty_text", "The message is empty.")
    if len(text) > MAX_TEXT:
        raise BadFrame("text_too_long", f"Messages are limited to {MAX_TEXT} characters.")
    client_id = frame.get("id")
    if client_id is not None and not (isinstance(client_id, str) and 0 < len(client_id) <= MAX_ID):
        raise BadFrame("bad_id", f'A message "id" is a string of 1 to {MAX_ID} characters.')
    return text, client_id


def parse_page_listing(frame: dict) -> str:
    """The listing on the visitor's screen that a message frame names (``"listing"``, the
    widget's ``data-listing``): a 6-digit listing ID, or "" when the frame has none.

    Raises:
        BadFrame: ``bad_listing``, a ``listing`` that is not a string of exactly 6 digits.
    """
    listing = frame.get("listing")
    if listing is None or listing == "":
        return ""
    if not (isinstance(listing, str) and len(listing) == 6 and listing.isascii()
            and listing.isdigit()):
        raise BadFrame("bad_listing", 'A message "listing" is a 6-digit listing ID.')
    return listing


def conversation_of_token(token: str) -> Conversation | None:
    """The conversation a token (``agent.chat.widget``) names, or None when the token is forged,
    expired or names a conversation that no longer exists."""
    conversation_id = read_token(token)
    if conversation_id is None:
        return None
    return Conversation.objects.filter(id=conversation_id).first()


def parse_after(query_string: bytes) -> int:
    """The ``after`` seq of the connect URL's query string; 0 when absent.

    Raises:
        BadFrame: ``after`` is not a whole number of at least 0.
    """
    values = parse_qs(query_string.decode("latin-1")).get("after")
    if not values:
        return 0
    if not (values[0].isascii() and values[0].isdigit()):  # "²" and "٣" pass isdigit() alone
        raise BadFrame("bad_after", '"after" is the last seq the client holds: 0, 1, 2, ...')
    return int(values[0])


def history_and_orphan(conversation_id, after: int) -> tuple[list, tuple]:
    """What a connecting socket needs, in one trip to the database thread: the messages after
    seq ``after``, and ``agent.chat.orphans.take_orphan``'s answer about a visitor message whose
    turn died."""
    return Message.objects.after(conversation_id, after), orphans.take_orphan(
        conversation_id, timezone.now()
    )


def store_only(conversation_id, text: str, client_id: str | None, page_listing: str):
    """``Message.objects.store_visitor`` with ``agent.chat.turn.store_and_prepare``'s answer
    shape: the turn reads what it asks when it runs."""
    message, created = Message.objects.store_visitor(conversation_id, text, client_id, page_listing)
    return message, created, turn.LATER


TYPING = {"type": "typing", "active": True}


class ChatConsumer(TripsOnly, AsyncJsonWebsocketConsumer):
    """One visitor's connection, to the conversation its token names or else to the latest
    conversation of its Django session."""

    conversation = group = gate = orphan_watch = None
    pending = 0  # turns this socket started that have not ended
    address = None  # the client address while its socket is counted (agent.chat.abuse)

    async def __call__(self, scope, receive, send):
        # However the connection ends (a close, a dropped network, an error in a handler, a
        # cancellation by daphne), its socket stops counting against its address.
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.address is not None:
                abuse.close_socket(self.address)
                self.address = None

    async def connect(self):
        if capacity.saturated():  # HTTP 503: nginx opens the chat on another worker
            metrics.CONNECTIONS_SHED.inc()
            await shedding.refuse(self.base_send)
            return
        address = abuse.client_address(self.scope)
        if not abuse.open_socket(address):
            # Accepted, so the client can read why (a refused handshake only shows as 1006).
            await self.accept()
            await self.send_error(
                "too_many_connections",
                "Too many chats are open from your network. Please try again shortly.",
            )
            await self.close(code=4429)
            return
        self.address = address
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        token = query.get("token", [None])[0]
        if token is not None:
            self.conversation = await db_trip(conversation_of_token, token)
            if self.conversation is None:
                # Accepted, so the client can read why, and learn to fetch a new token.
                await self.accept()
                await self.send_error("bad_token", "This chat link is not valid any more.")
                await self.close(code=4403)
                return
        else:
            session = self.scope.get("session")
            if session is not None and session.session_key:
                self.conversation = await db_trip(turn.open_conversation, session, new_key=False)
            if self.conversation is None:
                # No session the store knows: load the chat page first, it sets one.
                await self.close(code=4401)
                return
        self.group = conversation_group(self.conversation.id)
        # Join before reading the history: a message stored in between then comes twice (the
        # client drops a seq it holds), never not at all.
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.turns = asyncio.Lock()
        self.gate = abuse.TurnGate(self.channel_name, address)
        await self.accept()
        try:
            after = parse_after(self.scope.get("query_string", b""))
        except BadFrame as exc:
            await self.send_error(exc.code, str(exc))
            after = 0
        messages, orphan = await db_trip(history_and_orphan, self.conversation.id, after)
        await self.send_json(
            {
                "type": "history",
                "conversation": str(self.conversation.id),
                "messages": [m.as_frame() for m in messages],
            }
        )
        self.resume(*orphan)

    async def disconnect(self, code):
        if self.orphan_watch is not None:
            self.orphan_watch.cancel()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    @classmethod
    async def decode_json(cls, text_data):
        """``decode_frame``: raises ``BadFrame`` (``bad_json``) instead of ``ValueError``."""
        return decode_frame(text_data)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """Decode a client frame and hand it to ``receive_json``; a binary frame or one that is
        not JSON gets an error frame instead (channels' own ``receive`` raises on both)."""
        if self.conversation is None:
            return  # refused at connect, closing
        try:
            if text_data is None:
                raise BadFrame("binary_frame", "Send JSON text frames, not binary ones.")
            frame = await self.decode_json(text_data)
        except BadFrame as exc:
            await self.send_error(exc.code, str(exc))
            return
        await self.receive_json(frame, **kwargs)

    async def receive_json(self, content, **kwargs):
        """A decoded client frame: store the visitor's message and start its turn."""
        try:
            text, client_id = parse_frame(content)
            page_listing = parse_page_listing(content)
        except BadFrame as exc:
            await self.send_error(exc.code, str(exc))
            return
        refusal = await self.gate.refusal()
        if refusal is not None:
            await self.send_error(
                "rate_limited",
                "You are sending messages faster than we can answer, so this one was not sent. "
                f"Please send it again in {refusal.retry_after} s.",
                retry_after=refusal.retry_after,
                **({"id": client_id} if client_id is not None else {}),
            )
            return
        # With no turn of this socket before it, the turn's first read rides on the same trip;
        # else the turn reads when the turns before it have answered.
        store = turn.store_and_prepare if not self.pending else store_only
        try:
            message, created, prepared = await db_trip(
                store, self.conversation.id, text, client_id, page_listing
            )
        except Exception:
            logger.exception("could not store a message of conversation %s", self.conversation.id)
            await self.send_error("not_stored", "Your message could not be saved. Please retry.")
            return
        if not created:
            await self.send_json(message.as_frame())  # a resend: acknowledge, no second turn
            return
        # A turn read already, and not for staff, starts at once: its typing indicator goes
        # with the message, in one layer message (issue 16).
        typing = prepared is not None and prepared is not turn.LATER
        await self.publish(message.as_frame(), *([TYPING] if typing else []))
        self.start_turn(message, prepared, typing)

    def start_turn(self, message, prepared=turn.LATER, typing: bool = False) -> None:
        """Answer a stored visitor message in a task of its own, which outlives the socket;
        ``prepared`` as ``agent.chat.turn.run_turn`` takes it; ``typing``: the typing
        indicator is published already."""
        self.pending += 1
        task = asyncio.create_task(self.answer(message, prepared, typing))
        _turns.add(task)
        task.add_done_callback(self._turn_ended)

    def _turn_ended(self, task: asyncio.Task) -> None:
        _turns.discard(task)
        self.pending -= 1

    def resume(self, message, wait: float | None) -> None:
        """Act on ``agent.chat.orphans.take_orphan``'s answer: run the turn of the orphaned visitor
        message this socket claimed, or look again in ``wait`` seconds."""
        if message is not None:
            logger.warning("resuming the turn of message %s of conversation %s, stored at %s",
                           message.seq, self.conversation.id, message.created_at)
            metrics.TURNS_RESUMED.inc()
            self.start_turn(message)
        elif wait is not None:
            self.orphan_watch = asyncio.create_task(self.look_again(wait))

    async def look_again(self, wait: float) -> None:
        """After ``wait`` seconds, look for the orphaned visitor message again; a disconnect
        cancels this."""
        await asyncio.sleep(wait)
        try:
            found = await db_trip(orphans.take_orphan, self.conversation.id, timezone.now())
        except Exception:
            logger.exception("could not look for an unanswered message in conversation %s",
                             self.conversation.id)
            return
        self.resume(*found)

    async def answer(self, message, prepared=turn.LATER, typing: bool = False) -> None:
        """Run the turn of a stored visitor message and publish its reply, after the turns
        this socket started before it; unless staff hold the conversation, who see the message
        and answer it themselves (no typing frames then). Failures are logged and published
        as ``turn_failed``. ``typing``: the typing indicator is published already (with the
        message, ``receive_json``)."""
        conversation_id = message.conversation_id
        started = False

        async def start_typing():
            nonlocal started
            started = True
            if not typing:
                await self.publish(TYPING)

        async def busy():
            reply = await db_trip(turn.store_busy, message, self.conversation.language)
            await self.publish(reply.as_frame(), TYPING)  # the answer is coming

        async with self.turns:
            for_staff = False
            frames = []  # published together: the reply, then the indicator's end
            try:
                # The staff check rides on the turn's first trip (agent.chat.turn.prepare_turn).
                reply = await turn.run_turn(
                    message, staff_check=True, on_start=start_typing, on_busy=busy,
                    prepared=prepared,
                )
            except Exception:
                logger.exception("turn failed in conversation %s", conversation_id)
                frames.append(
                    {
                        "type": "error",
                        "code": "turn_failed",
                        "message": "Sorry, something went wrong on our side. Your message is "
                        "saved; please try again in a moment.",
                    }
                )
            else:
                for_staff = reply is None and not started
                if reply is not None:  # None: staff claimed the chat while the turn ran
                    frames.append(reply.as_frame())
            finally:
                if not for_staff:
                    frames.append({"type": "typing", "active": False})
                if frames:
                    await self.publish(*frames)

    async def publish(self, frame: dict, *more: dict) -> None:
        """Publish ``frame``, then ``more``, to the conversation's sockets in one layer message
        (``agent.live.publish``). When the channel layer fails (Redis down), log it and go on:
        the turn still runs and stores its reply, the layer closes the sockets, and their
        clients fetch what they missed when they reconnect."""
        try:
            await publish(self.conversation.id, frame, *more)
        except Exception:
            logger.exception("could not publish to conversation %s", self.conversation.id)

    async def chat_frame(self, event):
        """Frames published to the conversation's group (``agent.live.publish``)."""
        await send_frames(self, event)

    async def send_error(self, code: str, message: str, **fields) -> None:
        """Send an error frame to this socket only, with ``fields`` added to it; the
        connection stays open."""
        await self.send_json({"type": "error", "code": code, "message": message, **fields})
