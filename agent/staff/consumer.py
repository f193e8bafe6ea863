"""The staff websocket at ``/ws/staff/``: the live queue, transcripts, and taking over a chat.

Only a page of the app's own origins (``ALLOWED_HOSTS``, never the widget's
``CHAT_ALLOWED_ORIGINS``) with the session of an active staff user who may see the handoff queue
(``agent.view_handoff``) gets in; any other socket is closed with code 4403 before it opens.
Every frame's user is reloaded from the database (``agent.staff.access``): ``watch`` needs
``agent.view_conversation``, the actions and replies ``agent.handle_handoff``; a user who is no
longer active staff gets ``forbidden`` and the socket is closed with 4403, one who lacks the
permission gets ``forbidden`` only. A logout, deactivation or lost permission closes the
user's sockets (4403) too. Every admin page of a user with the queue permission opens one, for
the waiting-handoffs badge; the handoff screens use it for the queue, the transcript and the
staff actions.

The protocol (frames, error codes, close codes, how a screen orders the queue frames) is
specified in README.md, section "Staff socket".

Frames are decoded and encoded by channels' ``AsyncJsonWebsocketConsumer`` (``json.dumps`` with
its default separators), as on the visitor's socket. Database trips go through
``agent.dbgate.db_trip``: while PostgreSQL is unreachable an action fails at once (``failed``).
"""

import json
import logging
import uuid

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from agent.chat.consumer import MAX_TEXT
from agent.chat.widget import own_origin
from agent.dbgate import db_trip
from agent.live import conversation_group, send_frames
from agent.models import Conversation, Message
from agent.staff import access, handoffs

logger = logging.getLogger(__name__)

ACTIONS = {"claim": handoffs.claim, "release": handoffs.release, "resolve": handoffs.resolve}
# The permission each frame type needs besides the queue's (access.VIEW_QUEUE), which any
# frame, even an unknown one, needs.
NEEDS = {"watch": access.VIEW_TRANSCRIPTS, "message": access.HANDLE} | dict.fromkeys(
    ACTIONS, access.HANDLE
)
BAD_JSON = "Send JSON objects as text frames."


class StaffConsumer(AsyncJsonWebsocketConsumer):
    """One staff member's admin tab."""

    watching = None  # the group of the conversation on screen
    joined = False
    user_id = None

    async def connect(self):
        user = self.scope.get("user")  # loaded by AuthMiddlewareStack; its perms are not
        origin = dict(self.scope.get("headers", [])).get(b"origin", b"").decode("latin-1")
        if not own_origin(origin) or user is None or not user.is_authenticated:
            await self.close(code=4403)
            return
        self.user = await db_trip(access.staff_user, user.pk, access.VIEW_QUEUE)
        if self.user is None:
            await self.close(code=4403)
            return
        self.user_id = self.user.pk
        await self.channel_layer.group_add(access.user_group(self.user_id), self.channel_name)
        await self.channel_layer.group_add(handoffs.STAFF_GROUP, self.channel_name)
        self.joined = True
        await self.accept()
        await self.send_json(await db_trip(handoffs.queue_frame))

    async def disconnect(self, code):
        if self.joined:
            await self.channel_layer.group_discard(handoffs.STAFF_GROUP, self.channel_name)
            await self.channel_layer.group_discard(
                access.user_group(self.user_id), self.channel_name
            )
        if self.watching is not None:
            await self.channel_layer.group_discard(self.watching, self.channel_name)

    @classmethod
    async def decode_json(cls, text_data):
        """The JSON object of a text frame.

        Raises:
            HandoffRefused: ``bad_json``, not JSON or not an object.
        """
        try:
            frame = json.loads(text_data)
        except (ValueError, RecursionError):  # nesting deeper than ~1,000 raises RecursionError
            frame = None
        if not isinstance(frame, dict):
            raise handoffs.HandoffRefused("bad_json", BAD_JSON)
        return frame

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """Decode a frame and hand it to ``receive_json``; a binary frame or one that is not a
        JSON object gets a ``bad_json`` error frame (channels' own ``receive`` raises)."""
        try:
            if text_data is None:
                raise handoffs.HandoffRefused("bad_json", BAD_JSON)
            frame = await self.decode_json(text_data)
        except handoffs.HandoffRefused as exc:
            await self.send_error(exc.code, str(exc))
            return
        await self.receive_json(frame, **kwargs)

    async def receive_json(self, content, **kwargs):
        """A decoded frame: resend the queue, watch a conversation, act on a handoff, or reply
        to a visitor."""
        frame = content
        kind = frame.get("type")
        try:
            if not await self.allowed(NEEDS.get(kind, access.VIEW_QUEUE)):
                return
            if kind == "watch":
                await self.watch(frame)
            elif kind == "queue":
                await self.send_json(await db_trip(handoffs.queue_frame))
            elif kind in ACTIONS:
                await db_trip(ACTIONS[kind], handoff_id(frame), self.user)
            elif kind == "message":
                text = reply_text(frame)
                await db_trip(handoffs.post_staff_message, handoff_id(frame), self.user, text)
            else:
                await self.send_error(
                    "unknown_type", "Frames are queue, watch, claim, release, resolve or message."
                )
        except handoffs.HandoffRefused as exc:
            await self.send_error(exc.code, str(exc))
        except Exception:
            logger.exception("staff frame %r of user %s failed", kind, self.user_id)
            await self.send_error(
                "failed", "That did not work. Reload the page to see what was saved."
            )

    async def allowed(self, perm: str) -> bool:
        """Reload the user and check them for ``perm``; on refusal send ``forbidden`` and, when
        they are no longer active staff with the queue permission, close the socket (4403).
        Sets ``self.user`` to the reloaded user when allowed."""
        user, allowed = await db_trip(access.recheck, self.user_id, perm)
        if allowed:
            self.user = user
            return True
        await self.send_error("forbidden", "You may not do that. Ask an admin for access.")
        if user is None:
            logger.info("staff socket of user %s closed: no longer staff", self.user_id)
            await self.close(code=4403)
        return False

    async def staff_close(self, event):
        """The user logged out or lost staff status (``agent.staff.access.close_sockets_of``)."""
        await self.close(code=4403)

    async def watch(self, frame: dict) -> None:
        """Follow one conversation: join its group, then send its history."""
        try:
            conversation_id = uuid.UUID(str(frame.get("conversation")))
        except ValueError:
            raise handoffs.HandoffRefused("bad_conversation", "Unknown conversation.") from None
        after = frame.get("after", 0)
        if not isinstance(after, int) or after < 0:
            after = 0
        if not await db_trip(Conversation.objects.filter(pk=conversation_id).exists):
            raise handoffs.HandoffRefused("bad_conversation", "Unknown conversation.")
        group = conversation_group(conversation_id)
        if self.watching is not None and self.watching != group:
            await self.channel_layer.group_discard(self.watching, self.channel_name)
        # Join before reading the history, as the visitor's socket does (agent.chat.consumer).
        await self.channel_layer.group_add(group, self.channel_name)
        self.watching = group
        messages = await db_trip(Message.objects.after, conversation_id, after)
        await self.send_json(
            {
                "type": "history",
                "conversation": str(conversation_id),
                "messages": [m.as_frame() for m in messages],
            }
        )

    async def chat_frame(self, event):
        """Frames of the watched conversation (``agent.live.publish``)."""
        await send_frames(self, event)

    async def staff_frame(self, event):
        """A frame for every staff socket (``agent.staff.handoffs.send_to_staff``): a
        ``queue_change``."""
        await self.send_json(event["frame"])

    async def send_error(self, code: str, message: str) -> None:
        """Send an error frame to this socket only; the connection stays open."""
        await self.send_json({"type": "error", "code": code, "message": message})


def handoff_id(frame: dict) -> int:
    """The frame's ``handoff`` id.

    Raises:
        HandoffRefused: ``bad_handoff`` when it is not a positive whole number.
    """
    value = frame.get("handoff")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise handoffs.HandoffRefused("bad_handoff", 'Name the handoff: "handoff": its id.')
    return value


def reply_text(frame: dict) -> str:
    """The trimmed text of a staff reply.

    Raises:
        HandoffRefused: ``empty_text`` or ``text_too_long`` (over 2,000 characters).
    """
    text = frame.get("text")
    text = text.strip() if isinstance(text, str) else ""
    if not text:
        raise handoffs.HandoffRefused("empty_text", "The reply is empty.")
    if len(text) > MAX_TEXT:
        raise handoffs.HandoffRefused(
            "text_too_long", f"Replies are limited to {MAX_TEXT} characters."
        )
    return text
