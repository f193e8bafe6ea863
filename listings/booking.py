"""Booking calls with realtors: the agency's hours, free realtors, and the appointment itself.

Rules (issue #2): a call lasts ``CALL_MINUTES`` (default 30), must start in the future, on a
business day (``BUSINESS_DAYS``, default Monday to Friday) and lie within ``BUSINESS_HOURS``
(default 09:00-17:00) in the agency's time zone (``AGENCY_TIMEZONE``), and must not overlap
another active appointment of the same realtor.
"""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q

from listings.models import Appointment, Listing, Realtor

DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
ACTIVE = (Appointment.Status.BOOKED, Appointment.Status.CONFIRMED)


class SlotUnavailable(Exception):
    """The requested call cannot be booked; the message says why, in words for the visitor."""


def agency_zone() -> ZoneInfo:
    """The agency's time zone, from ``AGENCY_TIMEZONE``."""
    return ZoneInfo(settings.AGENCY_TIMEZONE)


def describe_hours() -> str:
    """The hours in words, e.g. ``Monday to Friday, 09:00-17:00``."""
    days = sorted(settings.BUSINESS_DAYS)
    if days == list(range(days[0], days[-1] + 1)) and len(days) > 2:
        day_text = f"{DAY_NAMES[days[0]]} to {DAY_NAMES[days[-1]]}"
    else:
        day_text = ", ".join(DAY_NAMES[d] for d in days)
    opens, closes = settings.BUSINESS_HOURS
    return f"{day_text}, {opens:%H:%M}-{closes:%H:%M}"


def parse_slot(day: str, clock: str) -> datetime:
    """Turn a classifier's ``YYYY-MM-DD`` and ``HH:MM`` into an aware datetime in the agency zone.

    Raises:
        SlotUnavailable: the date or time does not exist (e.g. ``2027-02-30`` or ``25:00``).
    """
    try:
        local_day = date.fromisoformat(day)
    except ValueError:
        raise SlotUnavailable(f"{day} is not a valid date") from None
    try:
        local_time = time.fromisoformat(clock)
    except ValueError:
        raise SlotUnavailable(f"{clock} is not a valid time") from None
    return datetime.combine(local_day, local_time, tzinfo=agency_zone())


def check_hours(starts_at: datetime, now: datetime) -> None:
    """Check that a call starting at ``starts_at`` is in the future and within business hours.

    Raises:
        SlotUnavailable: with the reason in words.
    """
    local = starts_at.astimezone(agency_zone())
    if starts_at <= now:
        raise SlotUnavailable(f"{format_slot(starts_at)} is in the past")
    if local.weekday() not in settings.BUSINESS_DAYS:
        raise SlotUnavailable(f"we don't take calls on {DAY_NAMES[local.weekday()]}s")
    opens, closes = settings.BUSINESS_HOURS
    ends = (local + timedelta(minutes=settings.CALL_MINUTES)).time()
    if local.time() < opens or ends > closes or ends < local.time():
        raise SlotUnavailable(f"{local:%H:%M} is outside our hours")


def book_call(
    starts_at: datetime, *, now: datetime, conversation=None, listing: Listing | None = None
) -> Appointment:
    """Book a call of ``CALL_MINUTES`` with a free realtor.

    Of the active realtors free at that time, the one with the fewest active calls that day
    gets it (then the lowest id). Realtor rows are locked for the
    transaction, so two concurrent bookings cannot both take the last free realtor.

    Args:
        starts_at: aware datetime of the call's start.
        now: the current time, aware.
        conversation: the ``agent.Conversation`` the request came from; its contact is copied.
        listing: the listing under discussion, if any.
    Returns:
        The saved ``Appointment`` (UTC times).
    Raises:
        SlotUnavailable: in the past, outside hours, or no realtor free.
    """
    check_hours(starts_at, now)
    ends_at = starts_at + timedelta(minutes=settings.CALL_MINUTES)
    local_day = starts_at.astimezone(agency_zone()).date()
    day_start = datetime.combine(local_day, time(0), tzinfo=agency_zone())
    with transaction.atomic():
        realtors = list(Realtor.objects.filter(is_active=True).select_for_update().order_by("pk"))
        busy = set(
            Appointment.objects.filter(
                status__in=ACTIVE, starts_at__lt=ends_at, ends_at__gt=starts_at
            ).values_list("realtor_id", flat=True)
        )
        free = [r.pk for r in realtors if r.pk not in busy]
        if not free:
            raise SlotUnavailable(f"all our realtors are busy at {format_slot(starts_at)}")
        that_day = Q(
            appointments__status__in=ACTIVE,
            appointments__starts_at__gte=day_start,
            appointments__starts_at__lt=day_start + timedelta(days=1),
        )
        realtor = (
            Realtor.objects.filter(pk__in=free)
            .annotate(calls=Count("appointments", filter=that_day))
            .order_by("calls", "pk")
            .first()
        )
        return Appointment.objects.create(
            realtor=realtor,
            starts_at=starts_at,
            ends_at=ends_at,
            listing=listing,
            conversation=conversation,
            visitor_name=getattr(conversation, "visitor_name", ""),
            visitor_email=getattr(conversation, "visitor_email", ""),
            visitor_phone=getattr(conversation, "visitor_phone", ""),
        )


def format_slot(starts_at: datetime) -> str:
    """A call time as a visitor reads it: ``Wednesday, November 25 at 10:00 EST``."""
    local = starts_at.astimezone(agency_zone())
    return f"{local:%A, %B} {local.day} at {local:%H:%M %Z}"
