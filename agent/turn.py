"""A turn, end to end: store the visitor's message, ask the classifiers, route, store the reply.

Plain functions that the chat consumer, the replay command and tests call directly. The
synchronous ones touch the database and must run off the event loop (``sync_to_async``).
"""

import logging
import time

from channels.db import database_sync_to_async
from django.db import transaction
from django.utils import timezone

from agent import metrics
from agent.classifiers import HISTORY_MESSAGES, as_label
from agent.fanout import Outcome, fan_out
from agent.llm import LLMClient, get_client
from agent.models import ClassifierCall, Conversation, Message
from agent.router import route_turn

logger = logging.getLogger(__name__)

OPENAI_ROLES = {
    Message.Role.USER: "user",
    Message.Role.ASSISTANT: "assistant",
    Message.Role.STAFF: "assistant",
}


def open_conversation(session_key: str) -> tuple[Conversation, list[Message]]:
    """The session's latest conversation, created if it has none, with its messages by seq."""
    conversation = Conversation.objects.filter(session_key=session_key).first()
    if conversation is None:
        conversation = Conversation.objects.create(session_key=session_key)
    return conversation, list(conversation.messages.all())


def store_message(conversation_id, role: str, text: str, **fields) -> Message:
    """Store a message with the conversation's next ``seq`` (the conversation row is locked)."""
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
        conversation.last_seq += 1
        conversation.save(update_fields=["last_seq"])
        return Message.objects.create(
            conversation=conversation, seq=conversation.last_seq, role=role, text=text, **fields
        )


def chat_history(conversation_id) -> list[dict]:
    """The latest ``HISTORY_MESSAGES`` messages as OpenAI chat messages, oldest first."""
    latest = Message.objects.filter(conversation_id=conversation_id).order_by("-seq")
    return [
        {"role": OPENAI_ROLES[m.role], "content": m.text}
        for m in reversed(latest[:HISTORY_MESSAGES])
    ]


def finish_turn(message: Message, outcomes: list[Outcome], started: float) -> Message:
    """Log the classifier calls, route, and store the assistant's reply.

    Args:
        message: the visitor's message of this turn.
        outcomes: what each classifier said.
        started: ``time.perf_counter()`` when the visitor's message was stored.
    Returns:
        The stored assistant message, with its route and the turn's latency in ms.
    """
    ClassifierCall.objects.bulk_create(
        ClassifierCall(
            message=message,
            classifier=o.classifier,
            model=o.model,
            raw_output=o.raw,
            output=as_label(o.output) if o.output is not None else None,
            latency_ms=o.latency_ms,
            error=o.error,
        )
        for o in outcomes
    )
    with transaction.atomic():
        reply = route_turn(message.conversation, message, outcomes, timezone.now())
        latency_ms = round((time.perf_counter() - started) * 1000)
        transaction.on_commit(lambda: metrics.record_turn(reply.route, latency_ms, outcomes))
        return store_message(
            message.conversation_id,
            Message.Role.ASSISTANT,
            reply.text,
            route=reply.route,
            latency_ms=latency_ms,
        )


async def run_turn(message: Message, client: LLMClient | None = None) -> Message:
    """Answer a stored visitor message: one round of parallel classifier calls, then the router.

    Args:
        message: the visitor's message, already stored.
        client: the LLM client; the shared one from settings by default.
    Returns:
        The stored assistant message.
    Raises:
        django.db.Error: the database failed; the visitor's message stays stored.
    """
    started = time.perf_counter()
    history = await database_sync_to_async(chat_history)(message.conversation_id)
    outcomes = await fan_out(client or get_client(), history, timezone.localdate())
    return await database_sync_to_async(finish_turn)(message, outcomes, started)
