"""Orphaned turns: a visitor's message stored, but no turn ended for it.

That happens when the worker process running the turn dies (SIGKILL, out of memory, a
crash) or when the database fails under the turn (the visitor got ``turn_failed``). Each
socket that connects to the conversation, on any worker (``agent.chat.consumer``), looks at the
conversation's **latest** visitor message and runs its turn again ("resumes" it) when:

- nothing answered it: no ``answered_at`` (set in the transaction that stores the reply,
  ``agent.chat.turn.finish_turn``) and no route of its own (``staff``: staff hold the chat);
- it is at least ``resume_after()`` seconds old, so a turn that is still running is left
  alone; a socket that connects earlier checks again when that time comes;
- it is at most ``RESUME_MAX_AGE`` old: a conversation reopened next week gets no surprise
  reply to a question from last week;
- no other socket took it over in the last ``resume_after()`` seconds (``resumed_at``).

Only the latest one: the classifiers read the conversation up to it, and an answer to an
older question after a newer one would confuse more than help.

**Exactly one** socket resumes a message, of any number of tabs on any number of workers:
``take_orphan`` claims it with one conditional ``UPDATE`` of ``resumed_at``; PostgreSQL locks
the row for the first, and the second, after waiting for that lock, finds the condition no
longer true and updates nothing. No lock is held across an ``await``. A claim older than
``resume_after()`` may be taken again: the worker that resumed the turn died too. And should
the first turn, slow rather than dead, end after all, ``finish_turn`` marks the message
answered before storing a reply, with the row locked, so only one of the two replies is stored.

**Why a grace on top of ``TURN_BUDGET``**: the budget bounds the classifier calls only. A turn
also makes two or three trips to the database (the message with the staff check and the
history, or those apart, then the reply), which wait in line for a database thread and then
up to ``DB_POOL_TIMEOUT`` each for a pooled connection. A turn that is merely slow, on a
loaded worker or a database that is slow to hand out connections, must not be taken for dead:
that would call the LLM twice for one message. So the grace is ``DB_POOL_TIMEOUT`` (10 s by
default), one full wait for a connection, after which that trip fails and the turn with it. A
turn slower still is rare and costs only duplicate LLM calls: the answered mark still lets one
reply through. (Without the pool, ``DB_POOL_MAX_SIZE=0``, the same 10 s stand for a slow
connect.)

**Turns that failed with ``turn_failed``** (the database went away mid-turn) are resumed too.
While the database is down nothing can record that the turn failed, so such a message looks
exactly like one whose worker died; and the visitor was told their message is saved, so an
answer to it when they come back (within ``RESUME_MAX_AGE``) is what they expect. If they sent
it again instead, the new message is the latest one and the failed one is never answered
twice.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, Q

from agent.models import Message

logger = logging.getLogger(__name__)

# A visitor message older than this gets no resumed turn: the visitor has most likely left,
# and a reply out of the blue when they reopen the chat later would surprise them. Ten
# minutes covers a worker restart, a widget's reconnects (at most 10 s apart) and a short
# database outage with room to spare.
RESUME_MAX_AGE = timedelta(minutes=10)


def resume_after() -> float:
    """Seconds after storing a visitor message (or after a socket took its turn over) when
    its turn, still unanswered, counts as dead: ``TURN_BUDGET + DB_POOL_TIMEOUT`` (12.5 s by
    default; the module's docstring says why)."""
    return settings.TURN_BUDGET + settings.DB_POOL_TIMEOUT


def take_orphan(conversation_id, now: datetime) -> tuple[Message | None, float | None]:
    """Claim the conversation's orphaned visitor message, if it has one that is due.

    Args:
        conversation_id: the conversation's UUID.
        now: the current time, aware (the clock ``created_at`` was set by).
    Returns:
        ``(message, None)``: this caller claimed ``message`` (``resumed_at`` is set) and must
        run its turn now. ``(None, seconds)``: the latest visitor message is unanswered but
        its turn may still be running, or another socket has just taken it over; check again
        in ``seconds``. ``(None, None)``: nothing to do.
    Raises:
        django.db.Error: the database failed.
    """
    latest = (
        Message.objects.filter(conversation_id=conversation_id, role=Message.Role.USER)
        .order_by("-seq")
        .first()
    )
    if (
        latest is None
        or latest.answered_at is not None
        or latest.route
        or latest.created_at < now - RESUME_MAX_AGE
    ):
        return None, None
    grace = timedelta(seconds=resume_after())
    due = max(latest.created_at, latest.resumed_at or latest.created_at) + grace
    if due > now:
        return None, (due - now).total_seconds()
    newer = Message.objects.filter(
        conversation_id=OuterRef("conversation_id"), seq__gt=OuterRef("seq"), role=Message.Role.USER
    )
    claimed = (
        Message.objects.filter(pk=latest.pk, answered_at=None, route="")
        .filter(Q(resumed_at=None) | Q(resumed_at__lte=now - grace))
        .filter(~Exists(newer))
        .update(resumed_at=now)
    )
    if not claimed:  # answered, taken over, or followed by a new message meanwhile
        return None, resume_after()
    latest.resumed_at = now
    return latest, None
