"""Retention: anonymise or delete conversations older than ``RETENTION_DAYS``.

``manage.py purge_conversations`` calls ``purge``. A conversation expires when its latest message
(or its creation, if it has none) is older than the retention period and it has no appointment
still to come (the realtor needs the visitor's contact until the call). Appointments always keep
their time, realtor, listing and status; their visitor contact fields are blanked.

Anonymising keeps the rows, so the dashboard's counts, routes and latencies stay, and removes:
message texts and client ids; classifier raw outputs, and error texts (which can quote them; a
failed call keeps ``error = "removed"`` so it still counts as failed); handoff reasons; the
visitor's name, email and phone. Parsed classifier outputs (yes/no answers, listing
ids, dates) stay. Deleting removes the conversation with its messages, classifier calls and
handoffs; its appointments stay, unlinked. Then leads left with no un-anonymised
conversation lose their contact details, and webhook events older than the period go
(``agent.crm.leads.forget``).
"""

from dataclasses import astuple, dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, F, Max, OuterRef, QuerySet
from django.db.models.functions import Coalesce

from agent.crm import leads
from agent.models import ClassifierCall, Conversation, Handoff, Message
from listings.models import Appointment

BATCH = 500  # conversations per transaction
REMOVED = "removed"


@dataclass
class PurgeCounts:
    """How many rows a purge touched (or would touch): conversations, and their messages,
    classifier calls, handoffs and appointments."""

    conversations: int = 0
    messages: int = 0
    classifier_calls: int = 0
    handoffs: int = 0
    appointments: int = 0

    def __add__(self, other: "PurgeCounts") -> "PurgeCounts":
        return PurgeCounts(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def __str__(self):
        return (
            f"{self.conversations} conversations, {self.messages} messages, "
            f"{self.classifier_calls} classifier calls, {self.handoffs} handoffs, "
            f"{self.appointments} appointments' visitor contacts"
        )


def expired(now: datetime, days: int, *, delete: bool) -> QuerySet:
    """The conversations to purge at ``now`` (aware) with ``days`` of retention: last activity
    before ``now - days``, no appointment ending after ``now``; when anonymising, only those not
    anonymised yet."""
    conversations = (
        Conversation.objects.annotate(
            last_activity=Coalesce(Max("messages__created_at"), F("created_at"))
        )
        .filter(last_activity__lt=now - timedelta(days=days))
        .exclude(Exists(Appointment.objects.filter(conversation=OuterRef("pk"), ends_at__gt=now)))
    )
    if not delete:
        conversations = conversations.filter(anonymised_at__isnull=True)
    return conversations


def count(conversation_ids) -> PurgeCounts:
    """The rows of the conversations ``conversation_ids`` (a list or a ``values("pk")``
    queryset)."""
    return PurgeCounts(
        conversations=Conversation.objects.filter(pk__in=conversation_ids).count(),
        messages=Message.objects.filter(conversation__in=conversation_ids).count(),
        classifier_calls=ClassifierCall.objects.filter(
            message__conversation__in=conversation_ids
        ).count(),
        handoffs=Handoff.objects.filter(conversation__in=conversation_ids).count(),
        appointments=Appointment.objects.filter(conversation__in=conversation_ids).count(),
    )


def purge(now: datetime, days: int, *, delete: bool = False, dry_run: bool = False) -> PurgeCounts:
    """Anonymise (or, with ``delete``, delete) the conversations ``expired`` at ``now``.

    Args:
        now: the current time, aware.
        days: the retention period in days, at least 1 (``settings.RETENTION_DAYS``).
        delete: delete the conversations instead of anonymising them.
        dry_run: change nothing; count what would be purged.
    Returns:
        The rows purged, or that would be. Works in transactions of ``BATCH`` conversations, so
        an interrupted run keeps what it finished and the next run does the rest.
    Raises:
        ValueError: ``days`` is less than 1.
    """
    if days < 1:
        raise ValueError(f"retention is at least 1 day, not {days!r}")
    if dry_run:
        return count(expired(now, days, delete=delete).values("pk"))
    total = PurgeCounts()
    while True:
        with transaction.atomic():
            ids = list(expired(now, days, delete=delete).values_list("pk", flat=True)[:BATCH])
            if not ids:
                leads.forget(now, days)  # the CRM's copies: leads' contacts, old events
                return total
            total += count(ids)
            Appointment.objects.filter(conversation__in=ids).update(
                visitor_name="", visitor_email="", visitor_phone=""
            )
            if delete:
                Conversation.objects.filter(pk__in=ids).delete()
            else:
                _anonymise(ids, now)


def _anonymise(ids: list, now: datetime) -> None:
    Message.objects.filter(conversation__in=ids).update(text="", client_id=None)
    calls = ClassifierCall.objects.filter(message__conversation__in=ids)
    calls.update(raw_output="")
    calls.exclude(error="").update(error=REMOVED)
    Handoff.objects.filter(conversation__in=ids).update(reason="")
    Conversation.objects.filter(pk__in=ids).update(
        visitor_name="", visitor_email="", visitor_phone="", anonymised_at=now
    )
