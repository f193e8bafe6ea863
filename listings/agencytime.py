"""The agency's time: its zone (``AGENCY_TIMEZONE``), its days, and times as a visitor reads them.

Times are stored in UTC; these read them in the agency's zone. Booking, the booking emails and
their .ics, the chat and the staff handoffs all use these, so the words match everywhere.
Words are in the active language (``django.utils.translation``), dates by Babel (CLDR) with a
pattern each catalogue gives: "Wednesday, November 25", "miércoles, 25 de noviembre".
"""

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from babel.dates import format_date
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

DAY_NAMES = (  # English; read through gettext by day_name
    gettext_noop("Monday"), gettext_noop("Tuesday"), gettext_noop("Wednesday"),
    gettext_noop("Thursday"), gettext_noop("Friday"), gettext_noop("Saturday"),
    gettext_noop("Sunday"),
)
# Translators: a Babel (CLDR) date pattern for a weekday and day of the month.
DAY_PATTERN = gettext_noop("EEEE, MMMM d")


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
    ``Wednesday, November 25`` (``miércoles, 25 de noviembre`` in Spanish)."""
    moment = local(moment)
    return format_date(moment.date(), _(DAY_PATTERN), locale=babel_locale())


def babel_locale() -> str:
    """The active language as a Babel locale name: "en_US", "es"."""
    return translation.to_locale(translation.get_language() or settings.LANGUAGE_CODE)


def day_name(weekday: int) -> str:
    """A weekday's name (Monday 0) in the active language: "Monday", "lunes"."""
    return _(DAY_NAMES[weekday])


def format_slot(starts_at: datetime) -> str:
    """An aware call time as a visitor reads it: ``Wednesday, November 25 at 10:00 EST``
    (``miércoles, 25 de noviembre a las 10:00 EST``)."""
    return _("%(day)s at %(time)s") % {
        "day": format_day(starts_at), "time": f"{local(starts_at):%H:%M %Z}"}


def describe_hours() -> str:
    """The agency's default hours (``BUSINESS_DAYS``, ``BUSINESS_HOURS``) in words, e.g.
    ``Monday to Friday, 09:00-17:00``."""
    days = sorted(settings.BUSINESS_DAYS)
    if days == list(range(days[0], days[-1] + 1)) and len(days) > 2:
        day_text = _("%(first)s to %(last)s") % {
            "first": day_name(days[0]), "last": day_name(days[-1])}
    else:
        day_text = ", ".join(day_name(d) for d in days)
    opens, closes = settings.BUSINESS_HOURS
    return f"{day_text}, {opens:%H:%M}-{closes:%H:%M}"
