"""A turn, end to end: store the visitor's message, ask the classifiers, route, store the reply.

Plain functions that the chat consumer, the replay command and tests call directly. The
synchronous ones touch the database and must run off the event loop (``sync_to_async``).
"""

import asyncio
import logging
import time
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy

from agent import metrics
from agent.chat import abuse, capacity, dialogue, language
from agent.chat.router import listing_to_read, route_turn
from agent.crm import leads
from agent.crm.models import Lead
from agent.dbgate import db_trip
from agent.llm.classifiers import HISTORY_MESSAGES, Classifier, as_label
from agent.llm.client import LLMClient, get_client
from agent.llm.fanout import Outcome, fan_out
from agent.models import (
    CONFIG_STAMP_SQL,
    ClassifierCall,
    ClassifierConfig,
    Conversation,
    Handoff,
    Message,
    Route,
)
from agent.rows import insert_rows, select_models, select_rows, values_sql
from agent.staff import handoffs
from listings.models import Listing

logger = logging.getLogger(__name__)

# The session's entry naming its conversation: the session holds the conversation's id, the
# conversation nothing of the session, whose key is a login credential (issue 13).
SESSION_CONVERSATION = "chat_conversation"

OPENAI_ROLES = {
    Message.Role.USER: "user",
    Message.Role.ASSISTANT: "assistant",
    Message.Role.STAFF: "assistant",
}


OPEN_CONVERSATION = "WHERE t.id = %s AND t.anonymised_at IS NULL"  # select_rows's rest


def open_conversation(
    session, *, new_key: bool = True, language: str = "en"
) -> Conversation | None:
    """The conversation a Django session names, created and named in the session if it has
    none (or only one that ``purge_conversations`` anonymised).

    Args:
        session: a ``SessionBase``: the request's, or the websocket scope's. Reading it loads it
            from the store; a key the store does not know (forged, expired, logged out) loads
            as an empty session without a key, so it never reaches another's conversation.
        new_key: whether a session without a key may be saved under a new one, which only an
            HTTP response can give the browser (false on the websocket).
        language: a ``settings.LANGUAGES`` code for a conversation created here.
    Returns:
        The conversation; ``None`` when ``session`` has no key the store knows and ``new_key``
        is false.
    """
    conversation_id = session.get(SESSION_CONVERSATION)  # loads the session
    if conversation_id:
        # Raw, as every chat page and socket asks (agent.rows).
        found = select_rows(Conversation, OPEN_CONVERSATION, [conversation_id])
        if found:
            return found[0]
    if session.session_key is None and not new_key:
        return None
    conversation = Conversation(language=language)
    insert_rows([conversation])
    session[SESSION_CONVERSATION] = str(conversation.id)
    session.save()
    return conversation


def chat_history(conversation_id) -> list[dict]:
    """The latest ``HISTORY_MESSAGES`` messages as OpenAI chat messages, oldest first; when
    the newest is the visitor's and was sent from a listing's page, a last system message
    tells the classifiers "The visitor is looking at listing 654321." """
    return _history_and_stamp(conversation_id)[0]


def page_note(listing_id: str) -> str:
    """What the classifiers are told about the listing on the visitor's screen."""
    return f"The visitor is looking at listing {listing_id}."


# The turn's first read, in one statement (raw SQL: the ORM's compiling of it cost more CPU
# than PostgreSQL's running it, bench/README.md): the latest messages, the classifier
# configuration's stamp and whether staff hold the conversation.
# Staff hold the conversation of message ``m``: it has a claimed handoff.
CLAIMED_SQL = (
    f"EXISTS (SELECT 1 FROM {Handoff._meta.db_table} h "
    f"WHERE h.conversation_id = m.conversation_id AND h.status = '{Handoff.Status.CLAIMED}')"
)
HISTORY_SQL = (
    f"SELECT m.role, m.text, m.page_listing, ({CONFIG_STAMP_SQL}), {CLAIMED_SQL} "
    f"FROM {Message._meta.db_table} m WHERE m.conversation_id = %s AND m.route <> '{Route.BUSY}' "
    "ORDER BY m.seq DESC LIMIT %s"
)


def _history_and_stamp(conversation_id) -> tuple[list[dict], int | None, bool]:
    """``chat_history``, and in the same statement the classifier configuration's stamp
    (``agent.models.config_stamp``; None when the conversation has no message) and whether
    staff hold the conversation (a claimed handoff). Our apologies for a wait (route
    ``busy``) are nothing to classify and are left out."""
    with connection.cursor() as cursor:
        cursor.execute(HISTORY_SQL, [conversation_id, HISTORY_MESSAGES])
        rows = cursor.fetchall()
    if not rows:
        return [], None, False
    return _as_history(rows), rows[0][3], rows[0][4]


def _as_history(rows) -> list[dict]:
    """``chat_history``'s messages from ``(role, text, page_listing, ...)`` rows, newest
    first."""
    history = [{"role": OPENAI_ROLES[role], "content": text} for role, text, *_ in reversed(rows)]
    if rows and rows[0][0] == Message.Role.USER and rows[0][2]:
        history.append({"role": "system", "content": page_note(rows[0][2])})
    return history


def prepare_turn(
    conversation_id, message: Message | None = None
) -> tuple[list[dict], list[Classifier]] | None:
    """What a turn asks, in one trip off the event loop: the chat history and the enabled
    classifiers (cached until an edit, ``ClassifierConfig.enabled_classifiers``); one query
    when the cache holds them and staff do not hold the conversation.

    Args:
        conversation_id: the conversation's UUID.
        message: the turn's visitor message, to check whether staff hold the conversation,
            and if so to mark it theirs (``agent.staff.handoffs.route_to_staff``, which checks
            again in its UPDATE). A claim after this read is caught when the reply is stored
            (``mark_answered``).
    Returns:
        ``(history, classifiers)``, or None when ``message`` is now for staff.
    """
    return _prepared(message, *_history_and_stamp(conversation_id))


def _prepared(message, history, stamp, claimed):
    """``prepare_turn``'s answer from what its read found."""
    if message is not None and (claimed or stamp is None) and handoffs.route_to_staff(message):
        return None
    classifiers = ClassifierConfig.enabled_classifiers(stamp)
    abuse.saw_classifiers(len(classifiers))  # what the next turns are charged
    return history, classifiers


# store_and_prepare's read, in the statement that stores the message (agent.models
# MessageManager._append's ``then``): the stored row with the stamp and the staff check, then
# the messages before it, newest first (HISTORY_SQL's, which the statement does not see yet).
STORED_AND_HISTORY_SQL = (
    f"SELECT m.id, m.seq, ({CONFIG_STAMP_SQL}), {CLAIMED_SQL}, NULL, NULL, NULL FROM stored m "
    "UNION ALL (SELECT NULL, m.seq, NULL, NULL, m.role, m.text, m.page_listing "
    f"FROM {Message._meta.db_table} m WHERE m.conversation_id = %s "
    f"AND m.route <> '{Route.BUSY}' ORDER BY m.seq DESC LIMIT %s) ORDER BY 2 DESC"
)


LATER = "later"  # store_and_prepare's answer when the turn is to read what it asks itself


def store_and_prepare(
    conversation_id, text: str, client_id: str | None = None, page_listing: str = ""
) -> tuple[Message, bool, object]:
    """Store a visitor's message and read what its turn asks, in one trip off the event
    loop and one statement (``STORED_AND_HISTORY_SQL``): a trip fewer a turn than storing,
    then ``run_turn``'s own ``prepare_turn``, and a round trip fewer than two statements.

    Args and the first two results: ``Message.objects.store_visitor``'s.
    Returns:
        ``(message, created, prepared)``: ``prepared`` is ``prepare_turn(conversation_id,
        message)``'s answer (None: the message is for staff), or ``LATER`` when the message
        is a resend, or when the rest of the preparation failed after the message was stored
        (the turn then reads again, and fails as a turn; the message is kept).
    Raises:
        Conversation.DoesNotExist, django.db.Error: the message could not be stored.
    """
    message, created, rows = Message.objects.store_visitor(
        conversation_id, text, client_id, page_listing,
        then=(STORED_AND_HISTORY_SQL, [conversation_id, HISTORY_MESSAGES - 1]),
    )
    if not created:
        return message, False, LATER
    try:
        newest = [(message.role, message.text, page_listing), *(row[4:] for row in rows[1:])]
        stamp, claimed = rows[0][2:4]
        return message, True, _prepared(message, _as_history(newest), stamp, claimed)
    except Exception:
        logger.exception("could not prepare the turn of a stored message of conversation %s",
                         conversation_id)
        return message, True, LATER


def finish_turn(
    message: Message, outcomes: list[Outcome], started: float, read: tuple | None = None
) -> Message | None:
    """Log the classifier calls, route and store the assistant's reply, in one transaction.

    The calls are logged in the transaction's first statement (``mark_answered``'s); when the
    transaction fails they are logged again on their own, so they stay in the trace even when
    routing fails. In the transaction, unless staff now hold the conversation, the visitor
    message is marked answered (``answered_at``) if nothing answered it yet, which also locks
    its row until the reply is stored: of two turns of one message (a turn resumed by
    ``agent.chat.orphans`` while the first, slow rather than dead, still ran) exactly one
    stores a reply.

    Args:
        message: the visitor's message of this turn.
        outcomes: what each classifier said.
        started: ``time.perf_counter()`` when the turn started.
        read: ``read_text(message.text, ...)``, worked out off the database thread: the day
            and time the message names and the language it is written in; None: the router
            works them out.
    Returns:
        The stored assistant message, with its route and the turn's latency in ms; or None
        when the bot stays silent: staff claimed the conversation while the classifiers ran
        (the message is then theirs, route ``staff``), or another turn answered it first.
    """
    calls = call_rows(message, outcomes, timezone.now())
    committed = []
    try:
        with transaction.atomic():
            # Registered first, so it runs before the router's own hooks: an error in one of
            # those comes after the commit, when the calls are stored already.
            transaction.on_commit(lambda: committed.append(True))
            return _route_and_store(message, outcomes, started, read, calls)
    except Exception:
        if not committed:  # rolled back with the rest: log them alone
            try:
                sql, rows = values_sql(ClassifierCall, calls)
                with connection.cursor() as cursor:
                    cursor.execute(sql, [rows])
            except Exception:
                logger.exception("could not log the classifier calls of message %s", message.pk)
        raise


def call_rows(message: Message, outcomes: list[Outcome], now: datetime) -> list[dict]:
    """The turn's ``ClassifierCall`` rows, one per outcome, as ``agent.rows.values_sql``
    takes them (no model instances: they cost more than the statement).

    Args:
        message: the visitor's message of the turn.
        outcomes: what each classifier said.
        now: the rows' ``created_at``, aware.
    """
    return [
        {
            "message_id": message.pk,
            "classifier": o.classifier,
            "classifier_version": o.version,
            "model": o.model,
            "status": o.status,
            "output": as_label(o.output) if o.output is not None else None,
            "raw_output": o.raw,
            "latency_ms": o.latency_ms,
            "wait_ms": o.wait_ms,
            "retries": o.retries,
            "error": o.error,
            "created_at": now,
        }
        for o in outcomes
    ]


def _route_and_store(message, outcomes, started, read, calls) -> Message | None:
    """``finish_turn``'s transaction: the calls logged and the message marked in one
    statement, then the router and the reply."""
    listing_id = listing_to_read(outcomes, message)
    marked = mark_answered(message, calls, listing_id)
    if marked is None:
        handoffs.route_to_staff(message)  # staff claimed it meanwhile: theirs now
        return None  # or another turn answered it
    conversation, lead, listing = marked
    message.conversation = conversation  # as it is now, the router reads it through it
    mentioned, written = read or (None, None)
    reply = route_turn(
        conversation, message, outcomes, message.answered_at, mentioned, written, lead,
        {listing_id: listing} if listing_id else None,
    )
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


def mark_answered(
    message: Message, calls: list[dict] = (), listing_id: str | None = None
) -> tuple[Conversation, Lead | None, Listing | None] | None:
    """Set the visitor message's ``answered_at`` unless it is answered or marked for staff,
    or staff hold its conversation (a claimed handoff; the caller then marks it theirs,
    ``route_to_staff``), and in the same statement read its conversation and touch its lead
    (``last_contact_at``, as ``agent.crm.leads.record_turn`` does). In a transaction, the
    message's row stays locked until the transaction ends.

    Args:
        message: the visitor message.
        calls: ``ClassifierCall`` rows (``call_rows``) inserted by the same statement,
            whatever the mark finds.
        listing_id: a listing to read in the same statement too (the route's,
            ``agent.chat.router.listing_to_read``), or None.
    Returns:
        When this call marked the message, so the caller's turn is the one to answer it:
        ``(conversation, lead, listing)``, the conversation read after the mark, its lead
        with its last contact now (None when it has none yet) and the listing ``listing_id``
        names (None when none does, or none was asked for); else None.
    """
    now = timezone.now()
    before, params = f"WITH {MARK_CTE}", [now, message.pk, now, now]
    if calls:
        logged, rows = values_sql(ClassifierCall, calls)
        before, params = f"WITH logged AS ({logged}), {MARK_CTE}", [rows, *params]
    models_, rest = [(Conversation, "t"), (Lead, "l")], MARKED
    if listing_id:
        models_.append((Listing, "li"))
        rest, params = f"{MARKED} {MARKED_LISTING}", [*params, listing_id]
    found = select_models(models_, rest, params, before=before)
    if not found:
        return None
    message.answered_at = now
    conversation, lead, *listing = found[0]
    if lead is not None:
        lead.last_contact_at = lead.updated_at = now
    return conversation, lead, listing[0] if listing else None


# mark_answered's statement, raw for the reason of HISTORY_SQL's: the UPDATE and the lead's
# touch, then select_models's read of the conversation of the message it marked and its lead
# (and the route's listing).
MARK_CTE = (
    f"marked AS (UPDATE {Message._meta.db_table} m SET answered_at = %s "
    f"WHERE m.id = %s AND m.answered_at IS NULL AND m.route = '' AND NOT {CLAIMED_SQL} "
    f"RETURNING m.conversation_id), {leads.TOUCH_MARKED}"
)
MARKED = (
    f"FROM {Conversation._meta.db_table} t JOIN marked ON marked.conversation_id = t.id "
    f"{leads.TOUCHED_LEAD}"
)
MARKED_LISTING = f"LEFT JOIN {Listing._meta.db_table} li ON li.listing_id = %s"


async def run_turn(
    message: Message, client: LLMClient | None = None, *, staff_check: bool = False,
    on_start=None, on_busy=None, prepared=LATER,
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
        prepared: ``prepare_turn``'s answer for ``message`` with ``staff_check``, read by
            ``store_and_prepare``; ``LATER``: read here.
    Returns:
        The stored assistant message, or None when staff claimed the conversation meanwhile
        or another turn of the same message (``agent.chat.orphans``) answered it first.
    Raises:
        django.db.Error: the database failed; the visitor's message stays stored.
    """
    started = time.perf_counter()
    if prepared is LATER:
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
        # dateparser's CPU work (up to 0.1 s, issue 13), in a worker thread while the
        # classifiers answer: never on a database thread, nor on the event loop. A message
        # naming no day or time gives dateparser nothing, and is read here after the calls:
        # its language costs about 10 µs, less than the thread hop (issue 16).
        read = None
        if dialogue.date_text(message.text):
            read = asyncio.ensure_future(
                asyncio.to_thread(read_text, message.text, timezone.now())
            )
        outcomes = await fan_out(
            client or get_client(), classifiers, history, timezone.localdate(), deadline
        )
        read = await read if read is not None else read_text(message.text, timezone.now())
        return await db_trip(finish_turn, message, outcomes, started, read)


def read_text(text: str, now: datetime) -> tuple:
    """The CPU work on a visitor's text that the router needs, done off the database thread
    (``run_turn``): ``(dialogue.mentioned_in(text, now), language.guess(text))``."""
    return dialogue.mentioned_in(text, now), language.guess(text)


BUSY_TEXT = gettext_lazy(
    "We're very busy right now, sorry for the wait: your message is in, and you'll have "
    "the answer here in a moment. No need to send it again."
)


def store_busy(message: Message, language: str = "en") -> Message:
    """Store the "busy, one moment" reply to a visitor message still waiting for its turn
    (route ``busy``), in ``language`` (a ``settings.LANGUAGES`` code: the conversation's). The
    message stays unanswered: its turn answers it when it runs."""
    with translation.override(language):
        text = str(BUSY_TEXT)
    return Message.objects.store(
        message.conversation_id, Message.Role.ASSISTANT, text, route=Route.BUSY
    )
