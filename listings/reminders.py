"""Reminders: the visitor by email 24 hours and 1 hour before the call (when their email is
known), and each realtor the day's agenda each morning at ``AGENDA_HOUR`` (agency time).

``send_due(now)`` runs every minute (the ``reminders`` task, agent/tasks.py). Each reminder is
claimed before it is sent: ``SELECT ... FOR UPDATE SKIP LOCKED`` of the due rows and an UPDATE
of their ``reminded_*_at`` in one transaction, so with several workers each goes out once (a
send that fails after the claim is logged, not retried). The agenda is claimed by a
conditional UPDATE of ``Realtor.agenda_sent_on``.

Lead times are taken off the call's agency-local wall-clock time, in PostgreSQL (issue 17: "a
reminder for a 10:00 call the morning after the clocks change goes out at 10:00 local minus the
lead time, not an hour off"): the 24 hour reminder of a 10:00 call goes out at 10:00 the day
before (23 or 25 real hours before, across a change), the 1 hour one at 09:00. A reminder is
due once ``now`` passes that moment, if the call was booked before it (the confirmation said it
all otherwise) and no nearer reminder is due yet.
"""

import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import DateTimeField, F
from django.db.models.expressions import RawSQL

from listings import emails
from listings.agencytime import local, local_midnight
from listings.models import Appointment, Realtor
from listings.schedule import ACTIVE

logger = logging.getLogger(__name__)

# (field, lead, lead in words), farthest first; from the issue: 24 hours and 1 hour before.
LEADS = (
    ("reminded_24h_at", timedelta(hours=24), "24 hours"),
    ("reminded_1h_at", timedelta(hours=1), "1 hour"),
)


def claim(field: str, lead: timedelta, nearer: timedelta | None, now: datetime) -> list[int]:
    """Mark as sent, and return the ids of, the appointments whose reminder ``field`` is due
    at ``now``: active, with an email, not yet reminded, whose reminder moment has come (the
    call's agency-local wall-clock time minus ``lead``: a 10:00 call's 24-hour reminder goes
    out at 10:00 the day before even when the clocks change in between, as issue 17 asks),
    booked before that moment, and starting later than ``nearer`` from now (that nearer
    reminder will say it). Rows another worker holds are skipped (it has claimed them)."""
    zone = settings.AGENCY_TIMEZONE
    due = Appointment.objects.annotate(
        reminder_at=RawSQL(
            f'(("{Appointment._meta.db_table}"."starts_at" AT TIME ZONE %s) - %s) AT TIME ZONE %s',
            (zone, lead, zone), output_field=DateTimeField(),
        )
    ).filter(
        status__in=ACTIVE, starts_at__gt=now + (nearer or timedelta(0)),
        reminder_at__lte=now, created_at__lte=F("reminder_at"),
        **{f"{field}__isnull": True},
    ).exclude(visitor_email="")
    with transaction.atomic():
        ids = [pk for (pk,) in due.select_for_update(skip_locked=True).values_list("pk")]
        Appointment.objects.filter(pk__in=ids).update(**{field: now})
    return ids


def send_reminders(now: datetime) -> int:
    """Send every visitor reminder due at ``now`` (aware, any zone). Returns how many went
    out."""
    now = now.astimezone(UTC)  # a timedelta added to a local time is wall-clock, off at DST
    sent = 0
    for index, (field, lead, words) in enumerate(LEADS):
        nearer = LEADS[index + 1][1] if index + 1 < len(LEADS) else None
        ids = claim(field, lead, nearer, now)
        for appointment in Appointment.objects.filter(pk__in=ids).select_related(
            "realtor__user", "listing"
        ):
            sent += emails.send_reminder(appointment, words)
    return sent


def send_agendas(now: datetime, hour: int) -> int:
    """From ``hour`` (agency-local) on, email each realtor with calls today their agenda,
    once a day. Returns how many went out."""
    today = local(now).date()
    if local(now).hour < hour:
        return 0
    start, end = local_midnight(today), local_midnight(today + timedelta(days=1))
    sent = 0
    waiting = Realtor.objects.filter(is_active=True).exclude(agenda_sent_on=today).exclude(
        user__email="").select_related("user")
    for realtor in waiting:
        calls = list(Appointment.objects.filter(
            realtor=realtor, status__in=ACTIVE, starts_at__gte=max(start, now),
            starts_at__lt=end).select_related("listing", "realtor__user"))
        if not calls:
            continue
        claimed = Realtor.objects.filter(pk=realtor.pk).exclude(agenda_sent_on=today).update(
            agenda_sent_on=today)
        if claimed:  # another worker's UPDATE of the same row made this one match nothing
            sent += emails.send_agenda(realtor, calls)
    return sent


def send_due(now: datetime) -> int:
    """Everything due at ``now``: visitor reminders and realtors' agendas (``AGENDA_HOUR``).
    Returns how many emails went out."""
    return send_reminders(now) + send_agendas(now, settings.AGENDA_HOUR)
