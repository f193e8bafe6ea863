"""The iCalendar (RFC 5545) text of one appointment, attached to booking emails.

Times are written in UTC (``...Z``), which every calendar shows in its user's own zone, so no
VTIMEZONE block is needed. Lines end in CRLF and are folded at 75 octets, as RFC 5545 asks.
"""

from datetime import UTC, datetime

from django.conf import settings

from listings.models import Appointment

PRODID = "-//Real-estate agency chat//Bookings//EN"


def escape(text: str) -> str:
    """Escape a TEXT value: backslash, semicolon, comma and newlines (RFC 5545 3.3.11)."""
    return (
        text.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
    )


def fold(line: str) -> str:
    """Fold a content line into chunks of at most 75 octets, continuations starting with a
    space (RFC 5545 3.1); never splits a UTF-8 character."""
    chunks, current, size = [], "", 0
    for char in line:
        width = len(char.encode())
        limit = 75 if not chunks else 74  # a continuation line starts with one space
        if size + width > limit:
            chunks.append(current)
            current, size = "", 0
        current += char
        size += width
    chunks.append(current)
    return "\r\n ".join(chunks)


def stamp(moment: datetime) -> str:
    """A UTC DATE-TIME value: ``20261124T150000Z``."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def uid(appointment: Appointment) -> str:
    """The event's stable UID, so a cancellation replaces the invitation in calendars."""
    domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2].strip(">") or "localhost"
    return f"appointment-{appointment.pk}@{domain}"


def calendar(appointment: Appointment, *, summary: str, description: str, now: datetime) -> str:
    """The VCALENDAR text for an appointment: an invitation (``METHOD:REQUEST``) while it is
    active, a cancellation (``METHOD:CANCEL``, ``STATUS:CANCELLED``) once cancelled.

    Args:
        appointment: a saved appointment.
        summary, description: plain text for the event's title and notes.
        now: the time of writing, aware (DTSTAMP).
    Returns:
        The iCalendar text, CRLF line endings.
    """
    cancelled = appointment.status == Appointment.Status.CANCELLED
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        f"METHOD:{'CANCEL' if cancelled else 'REQUEST'}",
        "BEGIN:VEVENT",
        f"UID:{uid(appointment)}",
        f"DTSTAMP:{stamp(now)}",
        f"DTSTART:{stamp(appointment.starts_at)}",
        f"DTEND:{stamp(appointment.ends_at)}",
        f"SEQUENCE:{1 if cancelled else 0}",
        f"STATUS:{'CANCELLED' if cancelled else 'CONFIRMED'}",
        f"SUMMARY:{escape(summary)}",
        f"DESCRIPTION:{escape(description)}",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return "".join(fold(line) + "\r\n" for line in lines)
