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

from listings import ics
from listings.agencytime import format_slot
from listings.models import Appointment

logger = logging.getLogger(__name__)


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
            f"{_details(appointment)}\n",
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
                appointment,
                summary,
            )
    return sent
