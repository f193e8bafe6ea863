"""The visitor's chat websocket at ``/ws/chat/``: a thin shell around ``agent.turn``.

Protocol (JSON text frames):
    client → server  {"type": "message", "text": "..."}   1 to 2,000 characters after trimming
    server → client  {"type": "history", "conversation": "<uuid>", "messages": [...]}  on connect
                     {"type": "message", "role": ..., "text": ..., "seq": n[, "route": ...]}
                     {"type": "typing", "active": true|false}   around each turn
                     {"type": "error", "code": ..., "message": ...}   the connection stays open
"""

import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from agent import turn
from agent.models import Message

logger = logging.getLogger(__name__)

MAX_TEXT = 2000  # characters, after trimming


class BadFrame(Exception):
    """A client frame the protocol does not allow; ``code`` is sent back in the error frame."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def parse_frame(text_data: str | None, bytes_data: bytes | None) -> str:
    """Return the trimmed visitor text of a client frame.

    Raises:
        BadFrame: binary frame, not JSON, not an object, unknown type, or missing, empty or
            over-long text.
    """
    if text_data is None:
        raise BadFrame("binary_frame", "Send JSON text frames, not binary ones.")
    try:
        frame = json.loads(text_data)
    except ValueError:
        raise BadFrame("bad_json", "That frame is not valid JSON.") from None
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
    return text


class ChatConsumer(AsyncWebsocketConsumer):
    """One visitor's connection; the conversation is the latest of their Django session."""

    async def connect(self):
        session = self.scope.get("session")
        session_key = session.session_key if session is not None else None
        if not session_key:
            await self.close(code=4401)  # load the chat page first: it sets the session
            return
        self.conversation, messages = await database_sync_to_async(turn.open_conversation)(
            session_key
        )
        await self.accept()
        await self.send_frame(
            {
                "type": "history",
                "conversation": str(self.conversation.id),
                "messages": [m.as_frame() for m in messages],
            }
        )

    async def receive(self, text_data=None, bytes_data=None):
        try:
            text = parse_frame(text_data, bytes_data)
        except BadFrame as exc:
            await self.send_error(exc.code, str(exc))
            return
        try:
            message = await database_sync_to_async(turn.store_message)(
                self.conversation.id, Message.Role.USER, text
            )
        except Exception:
            logger.exception("could not store a message of conversation %s", self.conversation.id)
            await self.send_error("not_stored", "Your message could not be saved. Please retry.")
            return
        await self.send_frame(message.as_frame())
        await self.send_frame({"type": "typing", "active": True})
        try:
            reply = await turn.run_turn(message)
        except Exception:
            logger.exception("turn failed in conversation %s", self.conversation.id)
            await self.send_error(
                "turn_failed",
                "Sorry, something went wrong on our side. Your message is saved; "
                "please try again in a moment.",
            )
        else:
            await self.send_frame(reply.as_frame())
        finally:
            await self.send_frame({"type": "typing", "active": False})

    async def send_frame(self, frame: dict) -> None:
        """Send one JSON text frame."""
        await self.send(text_data=json.dumps(frame))

    async def send_error(self, code: str, message: str) -> None:
        """Send an error frame; the connection stays open."""
        await self.send_frame({"type": "error", "code": code, "message": message})
