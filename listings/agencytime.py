"""The agency's time: its zone (``AGENCY_TIMEZONE``), its days, and times as a visitor reads them.

Times are stored in UTC; these read them in the agency's zone. Booking, the booking emails and
their .ics, the chat and the staff handoffs all use these, so the words match everywhere.
"""

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from django.conf import settings

DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def agency_zone() -> ZoneInfo:
    """The agency's time zone, from ``AGENCY_TIMEZONE``.

    Raises:
        zoneinfo.ZoneInfoNotFoundError: the setting names no known zone.
    """
    return ZoneInfo(settings.AGENCY_TIMEZONE)


def local(moment: datetime) -> datetime:
    """An aware ``moment`` in the agency's zone."""
    return moment.astimezone(agency_zone())


def local_midnight(day: date) -> datetime:
    """The start of an agency-local day, as an aware UTC datetime."""
    return datetime.combine(day, time(0), tzinfo=agency_zone()).astimezone(UTC)


def format_day(moment: datetime) -> str:
    """The agency-local day of an aware ``moment`` as a visitor reads it:
    ``Wednesday, November 25``."""
    moment = local(moment)
    return f"{moment:%A, %B} {moment.day}"


def format_slot(starts_at: datetime) -> str:
    """An aware call time as a visitor reads it: ``Wednesday, November 25 at 10:00 EST``."""
    return f"{format_day(starts_at)} at {local(starts_at):%H:%M %Z}"


def describe_hours() -> str:
    """The agency's default hours (``BUSINESS_DAYS``, ``BUSINESS_HOURS``) in words, e.g.
    ``Monday to Friday, 09:00-17:00``."""
    days = sorted(settings.BUSINESS_DAYS)
    if days == list(range(days[0], days[-1] + 1)) and len(days) > 2:
        day_text = f"{DAY_NAMES[days[0]]} to {DAY_NAMES[days[-1]]}"
    else:
        day_text = ", ".join(DAY_NAMES[d] for d in days)
    opens, closes = settings.BUSINESS_HOURS
    return f"{day_text}, {opens:%H:%M}-{closes:%H:%M}"
