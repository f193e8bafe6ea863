"""Booking calls with realtors: their hours, free slots, alternatives, and the appointment itself.

Rules (issue #4):

- Each realtor has weekly hours in the agency's time zone (``WorkingHours``; none means the
  agency's ``BUSINESS_HOURS`` on ``BUSINESS_DAYS``), days off, a call length and a buffer kept
  free after each call.
- A call starts at least ``BOOKING_LEAD_MINUTES`` (default 60) from now and at most
  ``BOOKING_HORIZON_DAYS`` (default 60) ahead, lies inside the realtor's hours, and does not
  overlap the realtor's other active calls, buffers included.
- The realtor of the listing under discussion gets the call if free, otherwise the free realtor
  with the fewest calls that (agency-local) day, then the lowest id.
- A chat conversation, and an email address or a phone number, hold at most
  ``BOOKING_MAX_UPCOMING`` (default 2) upcoming calls, so one visitor cannot fill the
  realtors' calendars or send confirmations to any address typed in (issue 13).
- The application check picks a realtor; PostgreSQL has the last word (the exclusion
  constraint ``appointment_no_overlap``): when a concurrent booking took the realtor first, the
  next free realtor is tried, and when none is left the visitor is told the slot was taken.

Times are stored in UTC and read in the agency's zone. All arithmetic and comparisons here are
done on UTC datetimes: Python adds a timedelta to a zone-aware datetime in wall-clock time,
which is off by an hour across a daylight-saving change.
"""

import logging
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from agent.crm import leads
from listings import emails
from listings.agencytime import (
    agency_zone,
    format_slot,
    local,
    local_midnight,
)
from listings.models import Appointment, Listing, Realtor
from listings.schedule import ACTIVE, load_schedule

logger = logging.getLogger(__name__)

OFFER_SIZE = 3  # alternatives offered at most
SEARCH_BEFORE = timedelta(days=7)  # how far around the requested time alternatives are sought
SEARCH_AFTER = timedelta(days=14)
EXCLUSION_VIOLATION = "23P01"  # PostgreSQL's SQLSTATE for an exclusion constraint


class SlotUnavailable(Exception):
    """The requested call cannot be booked; the message says why, in words for the visitor."""


class TooManyCalls(Exception):
    """The conversation, or its email or phone, already has ``BOOKING_MAX_UPCOMING`` upcoming
    calls; ``upcoming`` is how many."""

    def __init__(self, upcoming: int):
        super().__init__(f"{upcoming} upcoming calls already")
        self.upcoming = upcoming


def upcoming_calls(conversation, now: datetime) -> int:
    """The most upcoming active calls held by the conversation, or by its email (any case) or
    its phone, counted each on its own: what ``BOOKING_MAX_UPCOMING`` caps."""
    upcoming = Appointment.objects.filter(status__in=ACTIVE, starts_at__gt=now)
    counts = [upcoming.filter(conversation=conversation).count()]
    if conversation.visitor_email:
        counts.append(upcoming.filter(visitor_email__iexact=conversation.visitor_email).count())
    if conversation.visitor_phone:
        counts.append(upcoming.filter(visitor_phone=conversation.visitor_phone).count())
    return max(counts)


def parse_slot(day: str, clock: str) -> datetime:
    """Turn a classifier's ``YYYY-MM-DD`` and ``HH:MM`` (agency time) into a UTC datetime.

    Raises:
        SlotUnavailable: the date or time does not exist (``2027-02-30``, ``25:00``, or a
            local time skipped when clocks go forward, e.g. 02:30 on 2027-03-14 in New York).
    """
    try:
        local_day = date.fromisoformat(day)
    except ValueError:
        raise SlotUnavailable(_("%(day)s is not a valid date") % {"day": day}) from None
    try:
        local_time = time.fromisoformat(clock)
    except ValueError:
        raise SlotUnavailable(_("%(clock)s is not a valid time") % {"clock": clock}) from None
    return local_slot(local_day, local_time)


def local_slot(day: date, clock: time) -> datetime:
    """An agency-local day and time as a UTC datetime.

    Raises:
        SlotUnavailable: that local time does not exist on that day (clocks went forward).
    """
    wall = datetime.combine(day, clock, tzinfo=agency_zone())
    moment = wall.astimezone(UTC)
    if local(moment).replace(tzinfo=None) != wall.replace(tzinfo=None):
        raise SlotUnavailable(_("%(clock)s does not exist on %(day)s (the clocks change)") % {
            "clock": f"{clock:%H:%M}", "day": day})
    return moment


def check_window(starts_at: datetime, now: datetime) -> None:
    """Check that a call starting at ``starts_at`` is neither past, too soon nor too far ahead.

    Raises:
        SlotUnavailable: with the reason in words (``BOOKING_LEAD_MINUTES``,
            ``BOOKING_HORIZON_DAYS``).
    """
    if starts_at <= now:
        raise SlotUnavailable(_("%(when)s is in the past") % {"when": format_slot(starts_at)})
    lead = timedelta(minutes=settings.BOOKING_LEAD_MINUTES)
    if starts_at < now + lead:
        raise SlotUnavailable(
            _("%(when)s is too soon: calls are booked at least %(lead)s ahead")
            % {"when": format_slot(starts_at), "lead": _duration(lead)}
        )
    if starts_at > now + timedelta(days=settings.BOOKING_HORIZON_DAYS):
        raise SlotUnavailable(
            _("%(when)s is too far ahead: we book calls up to %(days)s days ahead")
            % {"when": format_slot(starts_at), "days": settings.BOOKING_HORIZON_DAYS}
        )


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes % 60 == 0:
        hours = minutes // 60
        return ngettext("%(n)s hour", "%(n)s hours", hours) % {"n": hours}
    return ngettext("%(n)s minute", "%(n)s minutes", minutes) % {"n": minutes}


def book_call(
    starts_at: datetime,
    *,
    now: datetime,
    conversation=None,
    listing: Listing | None = None,
    preferred: Realtor | None = None,
    ignore: Appointment | None = None,
) -> Appointment:
    """Book a call with a free realtor.

    Args:
        starts_at: aware datetime of the call's start.
        now: the current time, aware.
        conversation: the ``agent.Conversation`` the request came from; its contact is copied.
        listing: the listing under discussion; its realtor is preferred when free.
        preferred: a realtor to prefer over the listing's (the realtor of a call being moved).
        ignore: an appointment whose time does not count as busy (the one being moved; the
            caller cancels it in the same transaction).
    Returns:
        The saved ``Appointment`` (UTC times), its end after the realtor's call length.
    Raises:
        SlotUnavailable: past, too soon, too far ahead, outside every realtor's hours, or no
            realtor free, including when a concurrent booking took the last one first.
    """
    starts_at = starts_at.astimezone(UTC)
    check_window(starts_at, now)
    schedule = load_schedule(starts_at, starts_at, ignore=ignore)
    if preferred is None and listing is not None:
        preferred = listing.realtor
    candidates = schedule.free_realtors(starts_at, preferred)
    if not candidates:
        raise SlotUnavailable(schedule.why_not(starts_at))
    for realtor in candidates:
        appointment = Appointment(
            realtor=realtor,
            starts_at=starts_at,
            ends_at=starts_at + timedelta(minutes=realtor.call_minutes),
            listing=listing,
            conversation=conversation,
            visitor_name=getattr(conversation, "visitor_name", ""),
            visitor_email=getattr(conversation, "visitor_email", ""),
            visitor_phone=getattr(conversation, "visitor_phone", ""),
        )
        appointment.set_blocked_until()
        try:
            with transaction.atomic():
                _lock_realtor(realtor)
                appointment.save()
        except IntegrityError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != EXCLUSION_VIOLATION:
                raise
            logger.info("realtor %s was taken concurrently at %s", realtor.pk, starts_at)
            continue
        return appointment
    raise SlotUnavailable(_("%(when)s was booked by someone else a moment ago")
                          % {"when": format_slot(starts_at)})


def _lock_realtor(realtor: Realtor) -> None:
    """Lock the realtor's row (``FOR NO KEY UPDATE``) until the caller's transaction ends, or
    its savepoint rolls back, so bookings of one realtor insert one at a time.

    Without it, two transactions inserting overlapping calls at the same instant can each find
    the other's uncommitted row under the exclusion constraint and wait for it: PostgreSQL
    aborts one with a deadlock (40P01) after ``deadlock_timeout``, instead of the quick 23P01
    that sends the visitor to the next free realtor (tests/listings/test_booking.py). The
    weaker lock leaves the ``FOR KEY SHARE`` of other calls' foreign keys unblocked.
    """
    list(Realtor.objects.select_for_update(no_key=True).filter(pk=realtor.pk).values_list("pk"))


def book(
    starts_at: datetime, *, now: datetime, conversation, listing: Listing | None = None
) -> Appointment:
    """Book a call for a chat visitor (``book_call``) and email the confirmation to the visitor
    (if their email is known) and the realtor once the transaction commits.

    Args:
        starts_at: aware datetime of the call's start.
        now: the current time, aware.
        conversation: the ``agent.Conversation`` asking; its contact is copied.
        listing: the listing under discussion; its realtor is preferred when free.
    Returns:
        The saved ``Appointment``.
    Raises:
        TooManyCalls: the conversation, its email or its phone has ``BOOKING_MAX_UPCOMING``
            upcoming calls; nothing is booked.
        SlotUnavailable: as ``book_call``; nothing is booked and no email is scheduled.
    """
    upcoming = upcoming_calls(conversation, now)
    if upcoming >= settings.BOOKING_MAX_UPCOMING:
        raise TooManyCalls(upcoming)
    appointment = book_call(starts_at, now=now, conversation=conversation, listing=listing)
    transaction.on_commit(lambda: emails.send_confirmation(appointment))
    leads.appointment_event("appointment.booked", appointment, now)  # webhook outbox
    return appointment


def nearest_free_slots(
    requested: datetime, *, now: datetime, count: int = OFFER_SIZE, ignore=None
) -> list[datetime]:
    """Up to ``count`` free call starts nearest to ``requested``, earliest first.

    Candidates lie on the ``SLOT_STEP`` grid from each opening time, from ``SEARCH_BEFORE``
    before to ``SEARCH_AFTER`` after the requested time (moved inside the lead time and the
    horizon first), within the lead time and horizon.
    """
    requested = requested.astimezone(UTC)
    earliest = now + timedelta(minutes=settings.BOOKING_LEAD_MINUTES)
    latest = now + timedelta(days=settings.BOOKING_HORIZON_DAYS)
    around = min(max(requested, earliest), latest)  # a time past the horizon looks back from it
    start = max(around - SEARCH_BEFORE, earliest)
    end = min(around + SEARCH_AFTER, latest)
    if end < start:
        return []
    slots = load_schedule(start, end, ignore=ignore).slots(start, end)
    nearest = sorted(slots, key=lambda s: (abs(s - requested), s))[:count]
    return sorted(nearest)


def free_slots_on(day: date, *, now: datetime, count: int = OFFER_SIZE, ignore=None) -> list:
    """The first ``count`` free call starts on an agency-local day, within lead and horizon."""
    start = max(local_midnight(day), now + timedelta(minutes=settings.BOOKING_LEAD_MINUTES))
    end = min(
        local_midnight(day + timedelta(days=1)) - timedelta(seconds=1),
        now + timedelta(days=settings.BOOKING_HORIZON_DAYS),
    )
    if end < start:
        return []
    return load_schedule(start, end, ignore=ignore).slots(start, end)[:count]


def upcoming_appointment(conversation, now: datetime) -> Appointment | None:
    """The conversation's next active appointment that has not started, or None."""
    return (
        Appointment.objects.filter(conversation=conversation, status__in=ACTIVE, starts_at__gt=now)
        .select_related("realtor__user", "listing")
        .order_by("starts_at")
        .first()
    )


def cancel(appointment: Appointment) -> None:
    """Cancel an appointment, which frees its time, and email the visitor and the realtor
    once the transaction commits."""
    appointment.status = Appointment.Status.CANCELLED
    appointment.sequence += 1  # the calendar event's change (listings/ics.py)
    appointment.save(update_fields=["status", "sequence"])
    transaction.on_commit(lambda: emails.send_cancellation(appointment))
    leads.appointment_event("appointment.cancelled", appointment)  # webhook outbox


def move(appointment: Appointment, starts_at: datetime, *, now: datetime) -> Appointment:
    """Move a call to a new time: book the new one (same realtor preferred), cancel the old one.

    Both happen or neither does; emails go out once the transaction commits. The new row keeps
    the old one's ``calendar_uid`` with the next ``sequence``: calendars move the same event.

    Returns:
        The new ``Appointment``.
    Raises:
        SlotUnavailable: the new time cannot be booked; the old call is kept.
    """
    with transaction.atomic():
        old_status = appointment.status
        appointment.status = Appointment.Status.CANCELLED
        appointment.save(update_fields=["status"])
        try:
            with transaction.atomic():
                new = book_call(
                    starts_at,
                    now=now,
                    conversation=appointment.conversation,
                    listing=appointment.listing,
                    preferred=appointment.realtor,
                    ignore=appointment,
                )
        except SlotUnavailable:
            appointment.status = old_status
            appointment.save(update_fields=["status"])
            raise
        new.calendar_uid, new.sequence = appointment.calendar_uid, appointment.sequence + 1
        new.save(update_fields=["calendar_uid", "sequence"])  # the same calendar event, moved
        leads.appointment_event(  # webhook outbox, with the move
            "appointment.moved", new, now, moved_from=leads.appointment_data(appointment)
        )
    transaction.on_commit(lambda: emails.send_cancellation(appointment, moved_to=new))
    transaction.on_commit(lambda: emails.send_confirmation(new))
    return new


def copy_contact(conversation, fields: dict[str, str], now: datetime) -> None:
    """Copy contact details just given in the chat onto the conversation's upcoming active
    appointments; a new email gets each of them its visitor confirmation (not the realtor's,
    who had theirs at booking) once the transaction commits.

    Args:
        conversation: the ``agent.Conversation`` the details were given in.
        fields: the changed ``Appointment`` contact fields and their new values, e.g.
            ``{"visitor_email": "ann@example.com"}`` (``visitor_phone``, ``visitor_email``).
        now: the current time, aware; calls that have started are left alone.
    """
    upcoming = Appointment.objects.filter(
        conversation=conversation, status__in=ACTIVE, starts_at__gt=now
    )
    upcoming.update(**fields)
    if "visitor_email" in fields:
        for appointment in upcoming.select_related("realtor__user", "listing"):
            transaction.on_commit(lambda a=appointment: emails.send_confirmation(a, realtor=False))
