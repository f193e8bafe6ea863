"""The iCalendar (RFC 5545) of appointments, built with the ``icalendar`` library: the .ics
attached to booking emails and each realtor's calendar feed (``/calendar/<token>.ics``).

Times are written in the agency's zone (``TZID``) with its ``VTIMEZONE``; escaping and line
folding are the library's. An appointment's event keeps one ``UID`` across a move (the new row
carries ``calendar_uid``) and a ``SEQUENCE`` that grows with each change, so a calendar updates
the event it has rather than adding another.
"""

from datetime import UTC, datetime, timedelta

from django.conf import settings
from icalendar import Alarm, Calendar, Event, vCalAddress

from listings.agencytime import local
from listings.models import Appointment

PRODID = "-//Real-estate agency chat//Bookings//EN"
ALARM_BEFORE = timedelta(minutes=15)  # the VALARM's display reminder before each call


def uid(appointment: Appointment) -> str:
    """The event's stable UID, ``<calendar_uid>@<from-address domain>``, the same for a call
    and the call it was moved to."""
    domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2].strip(">") or "localhost"
    return f"{appointment.calendar_uid}@{domain}"


def event(appointment: Appointment, *, summary: str, description: str, now: datetime) -> Event:
    """The VEVENT of one appointment, ``STATUS:CANCELLED`` once cancelled, with a VALARM
    ``ALARM_BEFORE`` the start.

    Args:
        appointment: a saved appointment (UTC times).
        summary, description: plain text for the event's title and notes.
        now: the time of writing, aware (DTSTAMP).
    """
    cancelled = appointment.status == Appointment.Status.CANCELLED
    item = Event()
    item.add("uid", uid(appointment))
    item.add("dtstamp", now.astimezone(UTC))
    item.add("dtstart", local(appointment.starts_at))
    item.add("dtend", local(appointment.ends_at))
    item.add("sequence", appointment.sequence)
    item.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    item.add("summary", summary)
    item.add("description", description)
    organizer = vCalAddress(f"mailto:{settings.DEFAULT_FROM_EMAIL.strip('<>')}")
    item.add("organizer", organizer)
    if not cancelled:
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", summary)
        alarm.add("trigger", -ALARM_BEFORE)
        item.add_component(alarm)
    return item


def _calendar(method: str | None, events: list[Event], name: str = "") -> str:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    if method:
        cal.add("method", method)
    if name:
        cal.add("x-wr-calname", name)
    for item in events:
        cal.add_component(item)
    cal.add_missing_timezones()
    return cal.to_ical().decode()


def calendar(appointment: Appointment, *, summary: str, description: str, now: datetime) -> str:
    """The VCALENDAR text for an email: an invitation (``METHOD:REQUEST``) while the
    appointment is active, a cancellation (``METHOD:CANCEL``) once cancelled.

    Args: as ``event``. Returns: the iCalendar text, CRLF line endings, folded.
    """
    cancelled = appointment.status == Appointment.Status.CANCELLED
    method = "CANCEL" if cancelled else "REQUEST"
    return _calendar(method, [event(appointment, summary=summary, description=description,
                                    now=now)])


def feed(realtor, appointments, *, now: datetime) -> str:
    """A realtor's calendar feed: one event per appointment given (the caller picks the
    upcoming active ones), named after the realtor, no METHOD (a subscription, RFC 5545).

    Args:
        realtor: the ``Realtor``.
        appointments: their appointments, with ``listing`` loaded.
        now: the time of writing, aware.
    Returns:
        The iCalendar text.
    """
    events = []
    for appointment in appointments:
        who = appointment.visitor_name or "a chat visitor"
        contact = (appointment.visitor_name, appointment.visitor_email, appointment.visitor_phone)
        lines = ["Visitor: " + (" · ".join(v for v in contact if v) or "no contact details")]
        if appointment.listing is not None:
            lines.append(f"Listing: {appointment.listing}")
        events.append(event(appointment, summary=f"Call with {who}",
                            description="\n".join(lines), now=now))
    return _calendar(None, events, name=f"Calls: {realtor}")
