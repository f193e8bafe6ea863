"""A turn, end to end: store the visitor's message, ask the classifiers, route, store the reply.

Plain functions that the chat consumer, the replay command and tests call directly. The
synchronous ones touch the database and must run off the event loop (``sync_to_async``).
"""

import asyncio
import logging
import time

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agent import metrics
from agent.classifiers import HISTORY_MESSAGES, Classifier, as_label
from agent.fanout import Outcome, fan_out
from agent.llm import LLMClient, get_client
from agent.models import ClassifierCall, ClassifierConfig, Conversation, Message
from agent.router import route_turn

logger = logging.getLogger(__name__)

OPENAI_ROLES = {
    Message.Role.USER: "user",
    Message.Role.ASSISTANT: "assistant",
    Message.Role.STAFF: "assistant",
}


def open_conversation(session_key: str) -> Conversation:
    """The session's latest conversation, created if it has none."""
    conversation = Conversation.objects.filter(session_key=session_key).first()
    if conversation is None:
        conversation = Conversation.objects.create(session_key=session_key)
    return conversation


def messages_after(conversation_id, after: int = 0) -> list[Message]:
    """The conversation's messages whose ``seq`` is greater than ``after``, by seq."""
    return list(Message.objects.filter(conversation_id=conversation_id, seq__gt=after))


def store_message(conversation_id, role: str, text: str, **fields) -> Message:
    """Store a message with the conversation's next ``seq`` (the conversation row is locked)."""
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
        return _append(conversation, role, text, **fields)


def _append(conversation: Conversation, role: str, text: str, **fields) -> Message:
    """Add a message to a conversation whose row the caller's transaction has locked."""
    conversation.last_seq += 1
    conversation.save(update_fields=["last_seq"])
    return Message.objects.create(
        conversation=conversation, seq=conversation.last_seq, role=role, text=text, **fields
    )


def store_visitor_message(
    conversation_id, text: str, client_id: str | None = None
) -> tuple[Message, bool]:
    """Store a visitor's message unless one with the same ``client_id`` is already stored.

    Args:
        conversation_id: the conversation's UUID.
        text: the visitor's text, already validated.
        client_id: the id the client gave the message (up to 64 characters), or None.
    Returns:
        ``(message, created)``; ``created`` is False when ``client_id`` repeats an earlier
        message of the conversation, which is returned instead, so a resend makes no new turn.
    """
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
        if client_id is not None:
            earlier = conversation.messages.filter(client_id=client_id).first()
            if earlier is not None:
                return earlier, False
        return _append(conversation, Message.Role.USER, text, client_id=client_id), True


def chat_history(conversation_id) -> list[dict]:
    """The latest ``HISTORY_MESSAGES`` messages as OpenAI chat messages, oldest first."""
    latest = Message.objects.filter(conversation_id=conversation_id).order_by("-seq")
    return [
        {"role": OPENAI_ROLES[m.role], "content": m.text}
        for m in reversed(latest[:HISTORY_MESSAGES])
    ]


def prepare_turn(conversation_id) -> tuple[list[dict], list[Classifier]]:
    """What a turn asks: the chat history and the enabled classifiers, in one trip off the
    event loop."""
    return chat_history(conversation_id), ClassifierConfig.enabled_classifiers()


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
            classifier_version=o.version,
            model=o.model,
            status=o.status,
            raw_output=o.raw,
            output=as_label(o.output) if o.output is not None else None,
            latency_ms=o.latency_ms,
            wait_ms=o.wait_ms,
            retries=o.retries,
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

    The classifier calls end within ``TURN_BUDGET`` seconds of the start, whatever the LLM
    servers do; the database work comes on top.

    Args:
        message: the visitor's message, already stored.
        client: the LLM client; the shared one of the event loop by default.
    Returns:
        The stored assistant message.
    Raises:
        django.db.Error: the database failed; the visitor's message stays stored.
    """
    started = time.perf_counter()
    deadline = asyncio.get_running_loop().time() + settings.TURN_BUDGET
    history, classifiers = await database_sync_to_async(prepare_turn)(message.conversation_id)
    outcomes = await fan_out(
        client or get_client(), classifiers, history, timezone.localdate(), deadline
    )
    return await database_sync_to_async(finish_turn)(message, outcomes, started)
