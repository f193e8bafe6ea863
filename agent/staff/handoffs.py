"""Handoffs to staff: queue, claim, release, resolve, staff replies.

Lifecycle (issue 5): ``queued`` → ``claimed`` by one staff user → ``resolved``. Releasing a
claimed handoff puts it back in the queue: the bot answers the visitor again, and any staff
member (the same one too) can claim it later. Resolving ends it, from the queue or from one's
own claim. ``claimed_at`` is the first claim, so the wait before a person answered stays known.

While a handoff of a conversation is claimed, the visitor's messages are stored with route
``staff`` and no classifier sees them (``route_to_staff``); the claimer's replies are stored as
role ``staff`` with their first name.

Every change is published once its transaction commits:
    to the conversation's group (``agent.live``), which the visitor's sockets and the staff
    screens watching it share:
        {"type": "notice", "event": "joined"|"left", "name": "Anna",
         "text": "Anna has joined the chat"}
        {"type": "message", "role": "staff", "text": ..., "seq": n, "name": "Anna"}
    to every staff socket (``STAFF_GROUP``): a ``queue_change`` frame of that one handoff
    (``change_frame``). The whole (bounded) ``queue_frame()`` goes to a socket only when it
    connects or asks for it. Both frames are specified in README.md, "Staff socket".

Staff hours are in ``agent.staff.hours``, the overdue-handoff emails in ``agent.staff.alerts``.

The functions touch the database: call them off the event loop (``agent.dbgate.db_trip``).
"""

import contextvars
import json
import logging

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.text import Truncator
from django.utils.translation import gettext as _

from agent import metrics
from agent.crm import leads
from agent.live import publish
from agent.models import Conversation, Handoff, Message, Route
from agent.rows import insert_rows, select_rows

logger = logging.getLogger(__name__)

STAFF_GROUP = "staff.queue"
QUEUE_LIMIT = 50  # open handoffs listed in a queue frame, oldest first; ``waiting`` counts all
# Bytes of JSON the listed handoffs may take: the frame stays under daphne's 32,768 (README).
QUEUE_FRAME_BYTES = 24_000
# Numbers each reading of the queue's counts, so a screen keeps the newest (migration 0024).
COUNT_SEQUENCE = "agent_handoff_count_seq"


class HandoffRefused(Exception):
    """A staff action the handoff's state does not allow; ``code`` names why for the client."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def staff_name(user) -> str:
    """The name visitors see for a staff user: the first name, else the username."""
    return user.first_name.strip() or user.get_username()


# --- the lifecycle -------------------------------------------------------------------------------


# select_rows's rest of a conversation's queued or claimed handoff (raw: asked every handoff turn).
WAITING = (
    f"WHERE t.conversation_id = %s AND t.status IN ('{Handoff.Status.QUEUED}', "
    f"'{Handoff.Status.CLAIMED}') ORDER BY t.created_at, t.id LIMIT 1"
)


def queue_handoff(conversation: Conversation, message: Message | None, reason: str) -> Handoff:
    """Queue a handoff, unless the conversation already waits for or has a person.

    Args:
        conversation: the visitor's conversation.
        message: the visitor message that caused it, or None.
        reason: why, for staff (e.g. ``"listing question"``).
    Returns:
        The new handoff, or the conversation's queued or claimed one.
    """
    waiting = select_rows(Handoff, WAITING, [conversation.pk])
    if waiting:
        return waiting[0]
    handoff = Handoff(conversation=conversation, message=message, reason=reason)
    insert_rows([handoff])  # raw, as WAITING
    _change_on_commit(handoff)
    transaction.on_commit(metrics.record_handoff_queued)  # a rolled-back turn queued none
    leads.handoff_event("handoff.queued", handoff)  # webhook outbox, in this transaction
    return handoff


def _locked(handoff_id) -> Handoff:
    """The handoff's row, locked for the caller's transaction.

    No ``select_related``: after waiting for another transaction's lock, PostgreSQL returns
    the row as that transaction left it, but a joined row as it was before (the claimer would
    read as nobody).

    Raises:
        HandoffRefused: ``not_found``.
    """
    try:
        return Handoff.objects.select_for_update().get(pk=handoff_id)
    except Handoff.DoesNotExist:
        raise HandoffRefused("not_found", "There is no such handoff.") from None


def _refuse_unless_open(handoff: Handoff) -> None:
    if handoff.status == Handoff.Status.RESOLVED:
        raise HandoffRefused("resolved", "This handoff is already resolved.")


def _refuse_if_someone_else_has_it(handoff: Handoff, user) -> None:
    if handoff.status == Handoff.Status.CLAIMED and handoff.claimed_by_id != user.pk:
        name = staff_name(handoff.claimed_by) if handoff.claimed_by else "Someone else"
        raise HandoffRefused("already_claimed", f"{name} has this conversation.")


def claim(handoff_id: int, user) -> Handoff:
    """Take a queued handoff: the bot falls silent and the visitor sees "Anna has joined the chat".

    The row is locked, so of two staff members claiming at once exactly one gets it. Claiming
    one's own claim again changes nothing.

    Args:
        handoff_id: the handoff's id.
        user: the staff user claiming it.
    Returns:
        The claimed handoff.
    Raises:
        HandoffRefused: ``not_found``, ``resolved``, or ``already_claimed`` with the holder's
            name in the message ("Ben has this conversation.").
    """
    with transaction.atomic():
        handoff = _locked(handoff_id)
        _refuse_unless_open(handoff)
        _refuse_if_someone_else_has_it(handoff, user)
        if handoff.status == Handoff.Status.CLAIMED:
            return handoff
        handoff.status = Handoff.Status.CLAIMED
        handoff.claimed_by = user
        handoff.claimed_at = handoff.claimed_at or timezone.now()
        handoff.version += 1
        handoff.save(update_fields=["status", "claimed_by", "claimed_at", "version"])
        _notice_on_commit(handoff.conversation_id, "joined", staff_name(user))
        _change_on_commit(handoff)
    return handoff


def release(handoff_id: int, user) -> Handoff:
    """Give one's claimed handoff back: it is queued again and the bot answers the visitor.

    Args:
        handoff_id: the handoff's id.
        user: the staff user holding it.
    Returns:
        The queued handoff.
    Raises:
        HandoffRefused: ``not_found``, ``resolved``, ``not_claimed``, or ``already_claimed``
            when someone else holds it.
    """
    with transaction.atomic():
        handoff = _locked(handoff_id)
        _refuse_unless_open(handoff)
        _refuse_if_someone_else_has_it(handoff, user)
        if handoff.status != Handoff.Status.CLAIMED:
            raise HandoffRefused("not_claimed", "This handoff is not claimed.")
        handoff.status = Handoff.Status.QUEUED
        handoff.claimed_by = None
        handoff.version += 1
        handoff.save(update_fields=["status", "claimed_by", "version"])
        _notice_on_commit(handoff.conversation_id, "left", staff_name(user))
        _change_on_commit(handoff)
    return handoff


def resolve(handoff_id: int, user) -> Handoff:
    """Close a handoff, queued or claimed by ``user``; the bot answers the visitor again.

    A claimed one tells the visitor "Anna has left the chat". As in the handoff admin, a
    handoff resolved from the queue records ``user`` as its claimer, claimed now.

    Returns:
        The resolved handoff.
    Raises:
        HandoffRefused: ``not_found``, ``resolved``, or ``already_claimed`` when someone else
            holds it.
    """
    with transaction.atomic():
        handoff = _locked(handoff_id)
        _refuse_unless_open(handoff)
        _refuse_if_someone_else_has_it(handoff, user)
        now = timezone.now()
        if handoff.status == Handoff.Status.CLAIMED:
            _notice_on_commit(handoff.conversation_id, "left", staff_name(user))
        handoff.status = Handoff.Status.RESOLVED
        handoff.claimed_by = user
        handoff.claimed_at = handoff.claimed_at or now
        handoff.resolved_at = now
        handoff.version += 1
        handoff.save(update_fields=["status", "claimed_by", "claimed_at", "resolved_at", "version"])
        _change_on_commit(handoff)
        leads.handoff_event("handoff.resolved", handoff, now)  # webhook outbox
    return handoff


def post_staff_message(handoff_id: int, user, text: str) -> Message:
    """Store a staff reply in the handoff's conversation and publish it to the visitor at once.

    Args:
        handoff_id: a handoff ``user`` has claimed.
        user: the staff user; the frame carries their first name as ``name``.
        text: the reply, already trimmed and checked for length.
    Returns:
        The stored message (role ``staff``).
    Raises:
        HandoffRefused: ``not_found``, ``resolved``, ``not_claimed`` (claim it first), or
            ``already_claimed`` when someone else holds it.
    """
    with transaction.atomic():
        handoff = _locked(handoff_id)
        _refuse_unless_open(handoff)
        _refuse_if_someone_else_has_it(handoff, user)
        if handoff.status != Handoff.Status.CLAIMED:
            raise HandoffRefused("not_claimed", "Claim the conversation before replying.")
        message = Message.objects.store(
            handoff.conversation_id, Message.Role.STAFF, text,
            author=user, author_name=staff_name(user),
        )
        frame = message.as_frame()
        transaction.on_commit(lambda: async_to_sync(publish)(handoff.conversation_id, frame))
    return message


def claimed_handoffs():
    """A subquery of the claimed handoffs of the outer query's message's conversation, for
    ``Exists`` in a query of ``Message`` (``route_to_staff``; the turn's raw statements say the
    same in ``agent.chat.turn.CLAIMED_SQL``)."""
    return Handoff.objects.filter(
        conversation_id=OuterRef("conversation_id"), status=Handoff.Status.CLAIMED
    )


def route_to_staff(message: Message) -> bool:
    """Mark a visitor message for staff (route ``staff``) if its conversation is claimed.

    One UPDATE, so the check and the mark cannot be split by a claim or a release.

    Returns:
        True when staff hold the conversation: no classifier should run and the bot stays silent.
    """
    marked = (
        Message.objects.filter(pk=message.pk, answered_at=None)  # a reply came first: it stays
        .filter(Exists(claimed_handoffs()))
        .update(route=Route.STAFF)
    )
    if marked:
        message.route = Route.STAFF
    return bool(marked)


# --- what staff and visitors see -----------------------------------------------------------------


def queue_frame() -> dict:
    """The staff queue as a frame, small enough for any socket: ``{"type": "queue", "waiting":
    n, "open": m, "counted": c, "limit": QUEUE_LIMIT, "handoffs": [...]}``, plus ``"more": k``
    when the list leaves open handoffs out. Sent on connect and on a ``queue`` request
    (README.md, "Staff socket"); each change after that is a ``change_frame``.

    ``waiting`` counts the queued (unclaimed) handoffs, ``open`` the queued and claimed ones,
    ``counted`` numbers that reading of the counts (see ``queue_counts``).
    ``handoffs`` lists the oldest open ones, at most ``QUEUE_LIMIT`` and as many as fit in
    ``QUEUE_FRAME_BYTES`` of JSON, as ``queue_item``; ``more`` is how many open ones it leaves
    out. So the frame stays under daphne's 32 KiB message limit however long the queue: with
    566 handoffs queued, the whole list was 81,600 bytes, the socket closed and every badge
    showed "?" (issue 16).
    """
    frame = {"type": "queue", **queue_counts(), "limit": QUEUE_LIMIT}
    handoffs = (
        Handoff.objects.filter(status__in=(Handoff.Status.QUEUED, Handoff.Status.CLAIMED))
        .select_related("claimed_by", "message", "conversation")
        .order_by("created_at", "pk")[:QUEUE_LIMIT]
    )
    items, size = [], 0
    for handoff in handoffs:
        item = queue_item(handoff)
        size += len(json.dumps(item)) + 2  # ASCII (escaped), so characters are bytes
        if size > QUEUE_FRAME_BYTES:
            break
        items.append(item)
    frame["handoffs"] = items
    if frame["open"] > len(items):
        frame["more"] = frame["open"] - len(items)
    return frame


def queue_counts() -> dict:
    """``{"waiting": queued handoffs, "open": queued and claimed ones, "counted": c}`` in one
    query, whatever the queue's length; it counts entries of the ``status, created_at`` index
    and reads no handoff's texts.

    ``counted`` is the next value of ``COUNT_SEQUENCE``, taken in the statement that counts:
    of two readings, the one with the higher ``counted`` is (but for two statements starting
    in the same instant) the later, so a screen keeps the counts of the highest it has seen
    whatever order the frames arrive in.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT nextval('{COUNT_SEQUENCE}'),"  # a constant name, not input
            " COUNT(*) FILTER (WHERE status = %s), COUNT(*)"
            f" FROM {Handoff._meta.db_table} WHERE status IN (%s, %s)",
            [Handoff.Status.QUEUED, Handoff.Status.QUEUED, Handoff.Status.CLAIMED],
        )
        counted, waiting, open_ = cursor.fetchone()
    return {"waiting": waiting, "open": open_, "counted": counted}


def queue_item(handoff: Handoff) -> dict:
    """One handoff for staff screens: ``{"id", "conversation", "status" (queued, claimed or
    resolved), "queued_at" (ISO 8601), "reason", "text" (the visitor message, up to 200
    characters), "visitor" (contact details or ""), "claimed_by" (first name or null),
    "claimed_by_id" (user id or null), "url" (the handoff's staff screen), "version"}``.

    ``handoff`` comes with ``conversation``, ``message`` and ``claimed_by`` loaded, or each
    costs a query.
    """
    conversation = handoff.conversation
    visitor = " · ".join(
        part
        for part in (
            conversation.visitor_name, conversation.visitor_email, conversation.visitor_phone
        )
        if part
    )
    return {
        "id": handoff.pk,
        "conversation": str(handoff.conversation_id),
        "status": handoff.status,
        "queued_at": handoff.created_at.isoformat(),
        "reason": Truncator(handoff.reason).chars(200),
        "text": Truncator(handoff.message.text).chars(200) if handoff.message else "",
        "visitor": visitor,
        "claimed_by": staff_name(handoff.claimed_by) if handoff.claimed_by else None,
        "claimed_by_id": handoff.claimed_by_id,
        "url": reverse("handoff_detail", args=[handoff.pk]),
        "version": handoff.version,
    }


def change_frame(item: dict) -> dict:
    """The frame that tells staff screens of one handoff's change: ``{"type": "queue_change",
    "handoff": item, "waiting": n, "open": m, "counted": c}``, the counts as ``queue_counts``
    reads them now (one query). ``item`` is ``queue_item`` of the handoff as changed; the frame
    stays a few KB (under 32 KiB whatever the texts: ``queue_item`` cuts them to 200
    characters)."""
    return {"type": "queue_change", "handoff": item, **queue_counts()}


def _change_on_commit(handoff: Handoff) -> None:
    """Once the transaction commits, send ``change_frame`` of ``handoff`` to every staff
    socket. The item is read now, under the row's lock (one query at most), so it is the
    state of this very version; the counts are read after the commit."""
    loaded = (
        Handoff.conversation.is_cached(handoff)
        and (handoff.message_id is None or Handoff.message.is_cached(handoff))
        and (handoff.claimed_by_id is None or Handoff.claimed_by.is_cached(handoff))
    )
    if not loaded:
        handoff = Handoff.objects.select_related("claimed_by", "message", "conversation").get(
            pk=handoff.pk
        )
    item = queue_item(handoff)
    transaction.on_commit(lambda: send_to_staff(change_frame(item)))


def send_to_staff(frame: dict) -> None:
    """Send ``frame`` to every staff socket (``STAFF_GROUP``), from sync code.

    From a database trip or view run for the event loop, the send is scheduled on that loop
    and this returns at once, so the database thread does not wait for the channel layer; a
    failure is then logged. Elsewhere (a management command, a task) it is sent before this
    returns.
    """
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    if loop is None or not loop.is_running():
        async_to_sync(get_channel_layer().group_send)(
            STAFF_GROUP, {"type": "staff.frame", "frame": frame}
        )
        return
    # A fresh context: the calling thread's (a database trip's) would make anything the send
    # runs look nested in that trip to asgiref.
    loop.call_soon_threadsafe(
        lambda: _keep(loop.create_task(_send(frame))), context=contextvars.Context()
    )


_tasks: set = set()


def _keep(task) -> None:
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def _send(frame: dict) -> None:
    try:
        await get_channel_layer().group_send(STAFF_GROUP, {"type": "staff.frame", "frame": frame})
    except Exception:
        logger.exception("could not send staff a queue change")


def notice_frame(event: str, name: str, language: str | None = None) -> dict:
    """The visitor-facing frame for a staff member joining or leaving the chat.

    Args:
        event: ``"joined"`` or ``"left"``.
        name: the staff member's first name.
        language: the conversation's language (``Conversation.language``); None: the active one.
    """
    with translation.override(language or translation.get_language()):
        text = (_("%(name)s has joined the chat") if event == "joined"
                else _("%(name)s has left the chat")) % {"name": name}
    return {"type": "notice", "event": event, "name": name, "text": text}


def _notice_on_commit(conversation_id, event: str, name: str) -> None:
    spoken = Conversation.objects.filter(pk=conversation_id).values_list("language", flat=True)
    frame = notice_frame(event, name, spoken.first())
    transaction.on_commit(lambda: async_to_sync(publish)(conversation_id, frame))
