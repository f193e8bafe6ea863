"""Booking emails: a confirmation to the visitor (when their email is known) and a notice to the
realtor, each with an .ics attachment; the same for cancellations.

Sent through Django's email framework: the console backend by default, SMTP when ``EMAIL_HOST``
is set. They are called after the turn's transaction commits, so a failure to send is logged
and never undoes a booking. The visitor's emails are in the conversation's language
(``Conversation.language``), the realtor's in the staff's (``LANGUAGE_CODE``).
"""

import logging

from django.conf import settings
from django.core.mail import EmailMessage
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from listings import ics, links
from listings.agencytime import format_day, format_slot, local
from listings.models import Appointment

logger = logging.getLogger(__name__)

# The visitor's texts, translated when sent, in their conversation's language.
LINK_LINE = gettext_noop("To cancel or move this call: %(url)s")
REMINDER_SUBJECT = gettext_noop("Reminder: your call with %(realtor)s on %(when)s")
REMINDER_BODY = gettext_noop("This is a reminder of your call, in %(lead)s. %(realtor)s will "
                             "call you.")
REMINDER_LEADS = {"24 hours": gettext_noop("24 hours"), "1 hour": gettext_noop("1 hour")}
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
        _("When: %(when)s (%(minutes)s minutes)") % {
            "when": format_slot(appointment.starts_at), "minutes": _minutes(appointment)},
        _("Realtor: %(realtor)s") % {"realtor": appointment.realtor},
    ]
    if appointment.listing is not None:
        lines.append(_("Listing: %(listing)s") % {"listing": appointment.listing})
    visitor = [appointment.visitor_name, appointment.visitor_email, appointment.visitor_phone]
    lines.append(_("Visitor: %(visitor)s") % {
        "visitor": " · ".join(v for v in visitor if v) or _("no contact details yet")})
    return "\n".join(lines)


def visitor_language(appointment: Appointment) -> str:
    """The language of the visitor's emails: their conversation's, else ``LANGUAGE_CODE``."""
    return getattr(appointment.conversation, "language", "") or settings.LANGUAGE_CODE


def _minutes(appointment: Appointment) -> int:
    return round((appointment.ends_at - appointment.starts_at).total_seconds() / 60)


def send_confirmation(appointment: Appointment, *, realtor: bool = True) -> int:
    """Email a booked call to the visitor (if their email is known) and, unless ``realtor`` is
    False (the visitor's email came later), to the realtor.

    Returns:
        How many emails went out (0 to 2).
    """
    sent = 0
    if appointment.visitor_email:
        with translation.override(visitor_language(appointment)):
            words = {"realtor": appointment.realtor, "when": format_slot(appointment.starts_at)}
            sent += _send(
                _("Your call with %(realtor)s on %(when)s") % words,
                _("Your call is booked. %(realtor)s will call you.") % words
                + f"\n\n{_details(appointment)}\n"
                + link_line(appointment),
                appointment.visitor_email,
                appointment,
                _("Call with %(realtor)s") % words,
            )
    if realtor and appointment.realtor.user.email:
        with translation.override(settings.LANGUAGE_CODE):  # staff read the staff's language
            when = format_slot(appointment.starts_at)
            sent += _send(
                f"New call booked: {when}",
                "A visitor booked a call with you through the chat.\n\n"
                f"{_details(appointment)}\n",
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
    sent = 0
    recipients = [
        (appointment.visitor_email, visitor_language(appointment),
         gettext_noop("Call with %(realtor)s")),
        (appointment.realtor.user.email, settings.LANGUAGE_CODE, "Call with %(visitor)s"),
    ]
    for address, language, summary in recipients:
        if not address:
            continue
        with translation.override(language):
            words = {"realtor": appointment.realtor, "when": format_slot(appointment.starts_at),
                     "visitor": appointment.visitor_name or "a visitor"}
            note = _("It has moved to %(when)s.") % {
                "when": format_slot(moved_to.starts_at)} + "\n" if moved_to else ""
            sent += _send(
                _("Call cancelled: %(when)s") % words,
                _("This call is cancelled.") + f"\n{note}\n{_details(appointment)}\n",
                address,
                moved_to or appointment,  # a move's .ics updates the event, same UID
                _(summary) % words,
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
    with translation.override(visitor_language(appointment)):
        words = {"realtor": appointment.realtor, "when": format_slot(appointment.starts_at),
                 "lead": _(REMINDER_LEADS.get(lead, lead))}
        body = (_(REMINDER_BODY) % words + f"\n\n{_details(appointment)}\n"
                + link_line(appointment))
        return _send(_(REMINDER_SUBJECT) % words, body, appointment.visitor_email, appointment,
                     _("Call with %(realtor)s") % words)


def link_line(appointment: Appointment) -> str:
    """The confirmation's and reminders' line with the signed link to cancel or move the call
    (``listings.links``), in the active language."""
    return "\n" + _(LINK_LINE) % {"url": links.url_for(appointment)} + "\n"


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
