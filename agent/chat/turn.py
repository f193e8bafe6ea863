"""A turn, end to end: store the visitor's message, ask the classifiers, route, store the reply.

Plain functions that the chat consumer, the replay command and tests call directly. The
synchronous ones touch the database and must run off the event loop (``sync_to_async``).
"""

import asyncio
import logging
import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agent import metrics
from agent.chat import abuse
from agent.chat.router import route_turn
from agent.dbgate import db_trip
from agent.llm.classifiers import HISTORY_MESSAGES, Classifier, as_label
from agent.llm.client import LLMClient, get_client
from agent.llm.fanout import Outcome, fan_out
from agent.models import ClassifierCall, ClassifierConfig, Conversation, Message
from agent.staff import handoffs

logger = logging.getLogger(__name__)

OPENAI_ROLES = {
    Message.Role.USER: "user",
    Message.Role.ASSISTANT: "assistant",
    Message.Role.STAFF: "assistant",
}


def open_conversation(session_key: str, language: str = "en") -> Conversation:
    """The session's latest conversation, created if it has none (in ``language``, a
    ``settings.LANGUAGES`` code)."""
    conversation = Conversation.objects.filter(session_key=session_key).first()
    if conversation is None:
        conversation = Conversation.objects.create(session_key=session_key, language=language)
    return conversation


def chat_history(conversation_id) -> list[dict]:
    """The latest ``HISTORY_MESSAGES`` messages as OpenAI chat messages, oldest first; when
    the newest is the visitor's and was sent from a listing's page, a last system message
    tells the classifiers "The visitor is looking at listing 654321." """
    latest = list(Message.objects.filter(conversation_id=conversation_id).order_by("-seq")
                  [:HISTORY_MESSAGES])
    history = [{"role": OPENAI_ROLES[m.role], "content": m.text} for m in reversed(latest)]
    if latest and latest[0].role == Message.Role.USER and latest[0].page_listing:
        history.append({"role": "system", "content": page_note(latest[0].page_listing)})
    return history


def page_note(listing_id: str) -> str:
    """What the classifiers are told about the listing on the visitor's screen."""
    return f"The visitor is looking at listing {listing_id}."


def prepare_turn(conversation_id) -> tuple[list[dict], list[Classifier]]:
    """What a turn asks: the chat history and the enabled classifiers, in one trip off the
    event loop."""
    classifiers = ClassifierConfig.enabled_classifiers()
    abuse.saw_classifiers(len(classifiers))  # what the next turns are charged
    return chat_history(conversation_id), classifiers


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
        if handoffs.route_to_staff(message):
            return None
        if not mark_answered(message):
            return None  # another turn answered it
        reply = route_turn(message.conversation, message, outcomes, timezone.now())
        latency_ms = round((time.perf_counter() - started) * 1000)
        transaction.on_commit(lambda: metrics.record_turn(reply.route, latency_ms, outcomes))
        return Message.objects.store(
            message.conversation_id,
            Message.Role.ASSISTANT,
            reply.text,
            route=reply.route,
            latency_ms=latency_ms,
            listings=list(reply.listings) or None,
        )


def mark_answered(message: Message) -> bool:
    """Set the visitor message's ``answered_at`` unless it is answered or marked for staff;
    in a transaction, its row stays locked until the transaction ends.

    Returns:
        True when this call marked it, so the caller's turn is the one to answer it.
    """
    now = timezone.now()
    marked = Message.objects.filter(pk=message.pk, answered_at=None, route="").update(
        answered_at=now
    )
    if marked:
        message.answered_at = now
    return bool(marked)


async def run_turn(message: Message, client: LLMClient | None = None) -> Message | None:
    """Answer a stored visitor message: one round of parallel classifier calls, then the router.

    The classifier calls end within ``TURN_BUDGET`` seconds of the start, whatever the LLM
    servers do; the database work comes on top.

    Args:
        message: the visitor's message, already stored.
        client: the LLM client; the shared one of the event loop by default.
    Returns:
        The stored assistant message, or None when staff claimed the conversation meanwhile
        or another turn of the same message (``agent.chat.orphans``) answered it first.
    Raises:
        django.db.Error: the database failed; the visitor's message stays stored.
    """
    started = time.perf_counter()
    deadline = asyncio.get_running_loop().time() + settings.TURN_BUDGET
    history, classifiers = await db_trip(prepare_turn, message.conversation_id)
    outcomes = await fan_out(
        client or get_client(), classifiers, history, timezone.localdate(), deadline
    )
    return await db_trip(finish_turn, message, outcomes, started)
