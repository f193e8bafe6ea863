"""Booking emails: a confirmation to the visitor (when their email is known) and a notice to the
realtor, each with an .ics attachment; the same for cancellations.

Sent through Django's email framework: the console backend by default, SMTP when ``EMAIL_HOST``
is set. They are called after the turn's transaction commits, so a failure to send is logged
and never undoes a booking.
"""

import logging

from django.conf import settings
from django.core.mail import EmailMessage
from django.utils import timezone

from listings import ics, links
from listings.agencytime import format_day, format_slot, local
from listings.models import Appointment

logger = logging.getLogger(__name__)

LINK_LINE = "\nTo cancel or move this call: {url}\n"
REMINDER_SUBJECT = "Reminder: your call with {realtor} on {when}"
REMINDER_BODY = "This is a reminder of your call, in {lead}. {realtor} will call you.\n\n"
AGENDA_SUBJECT = "Your calls on {day}"


def _send(subject: str, body: str, to: str, appointment: Appointment, summary: str) -> bool:
    """Send one email with the appointment's .ics; return whether it went out."""
    message = EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [to])
    calendar = ics.calendar(appointment, summary=summary, description=body, now=timezone.now())
    message.attach("call.ics", calendar, "text/calendar")
    try:
        message.send()
    except Exception:  # SMTP and socket errors alike: the booking stands, staff see the log
        logger.exception("could not email %s about appointment %s", to, appointment.pk)
        return False
    return True


def _details(appointment: Appointment) -> str:
    lines = [
        f"When: {format_slot(appointment.starts_at)} ({_minutes(appointment)} minutes)",
        f"Realtor: {appointment.realtor}",
    ]
    if appointment.listing is not None:
        lines.append(f"Listing: {appointment.listing}")
    visitor = [appointment.visitor_name, appointment.visitor_email, appointment.visitor_phone]
    lines.append("Visitor: " + (" · ".join(v for v in visitor if v) or "no contact details yet"))
    return "\n".join(lines)


def _minutes(appointment: Appointment) -> int:
    return round((appointment.ends_at - appointment.starts_at).total_seconds() / 60)


def send_confirmation(appointment: Appointment, *, realtor: bool = True) -> int:
    """Email a booked call to the visitor (if their email is known) and, unless ``realtor`` is
    False (the visitor's email came later), to the realtor.

    Returns:
        How many emails went out (0 to 2).
    """
    when = format_slot(appointment.starts_at)
    sent = 0
    if appointment.visitor_email:
        sent += _send(
            f"Your call with {appointment.realtor} on {when}",
            f"Your call is booked. {appointment.realtor} will call you.\n\n"
            f"{_details(appointment)}\n"
            + LINK_LINE.format(url=links.url_for(appointment)),
            appointment.visitor_email,
            appointment,
            f"Call with {appointment.realtor}",
        )
    if realtor and appointment.realtor.user.email:
        sent += _send(
            f"New call booked: {when}",
            f"A visitor booked a call with you through the chat.\n\n{_details(appointment)}\n",
            appointment.realtor.user.email,
            appointment,
            f"Call with {appointment.visitor_name or 'a chat visitor'}",
        )
    return sent


def send_cancellation(appointment: Appointment, moved_to: Appointment | None = None) -> int:
    """Email the visitor (if known) and the realtor that a call is cancelled, or moved.

    Returns:
        How many emails went out (0 to 2).
    """
    when = format_slot(appointment.starts_at)
    note = f"It has moved to {format_slot(moved_to.starts_at)}.\n" if moved_to else ""
    sent = 0
    recipients = [
        (appointment.visitor_email, f"Call with {appointment.realtor}"),
        (appointment.realtor.user.email, f"Call with {appointment.visitor_name or 'a visitor'}"),
    ]
    for address, summary in recipients:
        if address:
            sent += _send(
                f"Call cancelled: {when}",
                f"This call is cancelled.\n{note}\n{_details(appointment)}\n",
                address,
                moved_to or appointment,  # a move's .ics updates the event, same UID
                summary,
            )
    return sent


def send_reminder(appointment: Appointment, lead: str) -> bool:
    """Email the visitor a reminder of their call, with the cancel/move link and the .ics.

    Args:
        appointment: an active appointment with a ``visitor_email``.
        lead: how long before the call, in words ("24 hours", "1 hour").
    Returns:
        Whether it went out.
    """
    when = format_slot(appointment.starts_at)
    body = (REMINDER_BODY.format(lead=lead, realtor=appointment.realtor)
            + f"{_details(appointment)}\n" + LINK_LINE.format(url=links.url_for(appointment)))
    subject = REMINDER_SUBJECT.format(realtor=appointment.realtor, when=when)
    return _send(subject, body, appointment.visitor_email, appointment,
                 f"Call with {appointment.realtor}")


def send_agenda(realtor, appointments: list[Appointment]) -> bool:
    """Email a realtor their calls of one agency-local day, earliest first (no .ics: their
    calendar feed has them).

    Args:
        realtor: the ``Realtor``, with a user email.
        appointments: that day's active appointments, at least one.
    Returns:
        Whether it went out.
    """
    subject = AGENDA_SUBJECT.format(day=format_day(appointments[0].starts_at))
    body = "\n\n".join(
        f"{local(a.starts_at):%H:%M %Z}\n{_details(a)}" for a in appointments) + "\n"
    message = EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [realtor.user.email])
    try:
        message.send()
    except Exception:  # SMTP and socket errors alike: logged, staff see it
        logger.exception("could not email %s their agenda", realtor.user.email)
        return False
    return True
