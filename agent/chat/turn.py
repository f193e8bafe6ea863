"""A turn, end to end: store the visitor's message, ask the classifiers, route, store the reply.

Plain functions that the chat consumer, the replay command and tests call directly. The
synchronous ones touch the database and must run off the event loop (``sync_to_async``).
"""

import asyncio
import logging
import time

from django.conf import settings
from django.db import transaction
from django.db.models import Exists
from django.db.models.expressions import RawSQL
from django.utils import timezone

from agent import metrics
from agent.chat import abuse, capacity
from agent.chat.router import route_turn
from agent.dbgate import db_trip
from agent.llm.classifiers import HISTORY_MESSAGES, Classifier, as_label
from agent.llm.client import LLMClient, get_client
from agent.llm.fanout import Outcome, fan_out
from agent.models import (
    CONFIG_STAMP_SQL,
    ClassifierCall,
    ClassifierConfig,
    Conversation,
    Message,
    Route,
)
from agent.staff import handoffs

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


def chat_history(conversation_id) -> list[dict]:
    """The latest ``HISTORY_MESSAGES`` messages as OpenAI chat messages, oldest first."""
    return _history_and_stamp(conversation_id)[0]


def _history_and_stamp(conversation_id) -> tuple[list[dict], int | None]:
    """``chat_history`` and, in the same statement, the classifier configuration's stamp
    (``agent.models.config_stamp``); None when the conversation has no message."""
    latest = (
        Message.objects.filter(conversation_id=conversation_id)
        .exclude(route=Route.BUSY)  # our apology for a wait is nothing to classify
        .order_by("-seq")
        .annotate(config_stamp=RawSQL(f"({CONFIG_STAMP_SQL})", ()))
        .only("role", "text")[:HISTORY_MESSAGES]
    )
    rows = list(latest)
    history = [{"role": OPENAI_ROLES[m.role], "content": m.text} for m in reversed(rows)]
    return history, rows[0].config_stamp if rows else None


def prepare_turn(
    conversation_id, message: Message | None = None
) -> tuple[list[dict], list[Classifier]] | None:
    """What a turn asks, in one trip off the event loop: the chat history and the enabled
    classifiers (cached until an edit, ``ClassifierConfig.enabled_classifiers``); one query
    when the cache holds them.

    Args:
        conversation_id: the conversation's UUID.
        message: the turn's visitor message, to check first whether staff hold the
            conversation (``agent.staff.handoffs.route_to_staff``, which then marks it).
    Returns:
        ``(history, classifiers)``, or None when ``message`` is now for staff.
    """
    if message is not None and handoffs.route_to_staff(message):
        return None
    history, stamp = _history_and_stamp(conversation_id)
    classifiers = ClassifierConfig.enabled_classifiers(stamp)
    abuse.saw_classifiers(len(classifiers))  # what the next turns are charged
    return history, classifiers


def finish_turn(message: Message, outcomes: list[Outcome], started: float) -> Message | None:
    """Log the classifier calls, then route and store the assistant's reply in one transaction.

    The calls are logged first, so they stay in the trace even when routing fails. In the
    transaction, unless staff now hold the conversation, the visitor message is marked
    answered (``answered_at``) if nothing answered it yet, which also locks its row until the
    reply is stored: of two turns of one message (a turn resumed by ``agent.chat.orphans`` while the
    first, slow rather than dead, still ran) exactly one stores a reply.

    Args:
        message: the visitor's message of this turn.
        outcomes: what each classifier said.
        started: ``time.perf_counter()`` when the turn started.
    Returns:
        The stored assistant message, with its route and the turn's latency in ms; or None
        when the bot stays silent: staff claimed the conversation while the classifiers ran
        (the message is then theirs, route ``staff``), or another turn answered it first.
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
        if not mark_answered(message, unless_claimed=True):
            handoffs.route_to_staff(message)  # staff claimed it meanwhile: theirs now
            return None  # or another turn answered it
        reply = route_turn(message.conversation, message, outcomes, timezone.now())
        latency_ms = round((time.perf_counter() - started) * 1000)
        transaction.on_commit(lambda: metrics.record_turn(reply.route, latency_ms, outcomes))
        return Message.objects.store(
            message.conversation_id,
            Message.Role.ASSISTANT,
            reply.text,
            route=reply.route,
            latency_ms=latency_ms,
        )


def mark_answered(message: Message, unless_claimed: bool = False) -> bool:
    """Set the visitor message's ``answered_at`` unless it is answered or marked for staff;
    in a transaction, its row stays locked until the transaction ends.

    Args:
        message: the visitor message.
        unless_claimed: nor when staff hold its conversation (a claimed handoff), in the
            same UPDATE; the caller then marks it for staff (``route_to_staff``).
    Returns:
        True when this call marked it, so the caller's turn is the one to answer it.
    """
    now = timezone.now()
    marked = Message.objects.filter(pk=message.pk, answered_at=None, route="")
    if unless_claimed:
        marked = marked.exclude(Exists(handoffs.claimed_handoffs()))
    if marked.update(answered_at=now):
        message.answered_at = now
        return True
    return False


async def run_turn(
    message: Message, client: LLMClient | None = None, *, staff_check: bool = False,
    on_start=None, on_busy=None,
) -> Message | None:
    """Answer a stored visitor message: one round of parallel classifier calls, then the router.

    The classifier calls end within ``TURN_BUDGET`` seconds of getting a turn slot, whatever
    the LLM servers do; the wait for the slot and the database work come on top.

    Args:
        message: the visitor's message, already stored.
        client: the LLM client; the shared one of the event loop by default.
        staff_check: first mark the message for staff if they hold the conversation, in the
            same database trip as the turn's first read (``prepare_turn``); the turn then
            ends there, returning None.
        on_start: an async callable awaited once the turn goes ahead, before it waits for a
            turn slot (``agent.chat.capacity``; the consumer's typing indicator).
        on_busy: an async callable awaited if that wait passes ``TURN_QUEUE_TIMEOUT``.
    Returns:
        The stored assistant message, or None when staff claimed the conversation meanwhile
        or another turn of the same message (``agent.chat.orphans``) answered it first.
    Raises:
        django.db.Error: the database failed; the visitor's message stays stored.
    """
    started = time.perf_counter()
    prepared = await db_trip(
        prepare_turn, message.conversation_id, message if staff_check else None
    )
    if prepared is None:
        return None
    history, classifiers = prepared
    if on_start is not None:
        await on_start()
    async with capacity.turn_slot(on_busy):
        # The budget is the LLM calls'; the wait for the slot is bounded apart (capacity).
        deadline = asyncio.get_running_loop().time() + settings.TURN_BUDGET
        outcomes = await fan_out(
            client or get_client(), classifiers, history, timezone.localdate(), deadline
        )
        return await db_trip(finish_turn, message, outcomes, started)


BUSY_TEXT = (
    "We're very busy right now, sorry for the wait: your message is in, and you'll have "
    "the answer here in a moment. No need to send it again."
)


def store_busy(message: Message) -> Message:
    """Store the "busy, one moment" reply to a visitor message still waiting for its turn
    (route ``busy``). The message stays unanswered: its turn answers it when it runs."""
    return Message.objects.store(
        message.conversation_id, Message.Role.ASSISTANT, BUSY_TEXT, route=Route.BUSY
    )
