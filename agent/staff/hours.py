"""Staff hours: whether staff are on duty, when they next are, and what a handoff reply says
about it.

``STAFF_HOURS`` (opening and closing ``time``) on ``STAFF_DAYS`` (weekday numbers, Monday 0),
in the agency's time zone (``listings.booking.agency_zone``).
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.utils.translation import gettext as _

from agent.models import Conversation
from listings.agencytime import agency_zone, format_slot


def staff_on_duty(now: datetime) -> bool:
    """Whether ``now`` (aware) lies within ``STAFF_HOURS`` on a ``STAFF_DAYS`` day, agency time."""
    local = now.astimezone(agency_zone())
    opens, closes = settings.STAFF_HOURS
    return local.weekday() in settings.STAFF_DAYS and opens <= local.time() < closes


def next_staff_opening(now: datetime) -> datetime:
    """The next time staff come on duty after ``now`` (aware), in the agency's zone.

    Looks up to 8 days ahead, which always finds one since ``STAFF_DAYS`` is never empty.
    """
    local = now.astimezone(agency_zone())
    opens, _closes = settings.STAFF_HOURS
    for days in range(8):
        day = local.date() + timedelta(days=days)
        opening = datetime.combine(day, opens, tzinfo=agency_zone())
        if day.weekday() in settings.STAFF_DAYS and opening > now:
            return opening
    raise AssertionError("STAFF_DAYS is empty")  # settings refuse an empty list


def when_staff_answer(conversation: Conversation, now: datetime) -> str:
    """The sentence of a handoff reply telling the visitor when a person will answer.

    During staff hours: "Someone from our team will reply here shortly." Outside them, the next
    opening in words ("... on Monday, November 30 at 09:00 EST."), and, when the conversation
    has neither an email address nor a phone number, a request for one. In the active language.
    """
    if staff_on_duty(now):
        return _("Someone from our team will reply here shortly.")
    text = _("Our team is away right now; someone will reply here on %(when)s.") % {
        "when": format_slot(next_staff_opening(now))}
    if not (conversation.visitor_email or conversation.visitor_phone):
        text += " " + _(
            "Could you leave a phone number or email address, so we can reach you then?")
    return text
