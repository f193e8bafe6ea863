"""``/call/<token>/``: the page a signed link in a booking email opens (``listings.links``),
offering the realtor's free times from the booking rules (``listings.booking``), cancelling or
moving the call on a POST with Django's CSRF check.
"""

import logging
from datetime import date, datetime

from django.db import transaction
from django.shortcuts import render

from listings import booking, links
from listings.agencytime import format_slot
from listings.models import Appointment

logger = logging.getLogger(__name__)

SLOTS_OFFERED = 6
INVALID = "This link is not valid any more. To change your call, chat with us again."
CANCELLED = "Your call is cancelled."
MOVED = "Your call is moved to {when}."
NOT_OFFERED = "Please pick one of the times offered."


def _offered(appointment: Appointment, day: date | None, now: datetime) -> list[datetime]:
    """Free times to move to, the call's own time left out."""
    if day is not None:
        slots = booking.free_slots_on(day, now=now, count=SLOTS_OFFERED + 1, ignore=appointment)
    else:
        slots = booking.nearest_free_slots(
            appointment.starts_at, now=now, count=SLOTS_OFFERED + 1, ignore=appointment
        )
    return [s for s in slots if s != appointment.starts_at][:SLOTS_OFFERED]


def _day(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw[:10]) if raw else None
    except ValueError:
        return None


def call_page(request, token: str):
    """``GET /call/<token>/``: the call, a cancel button and free times to move it to
    (``?day=YYYY-MM-DD`` for that day's). ``POST`` with ``action=cancel``, or
    ``action=move`` and ``slot`` (an ISO time offered), acts and says what was done.

    A bad token, or a call already cancelled or started, gets a 404 page and changes nothing;
    a time no longer free is said on the page with fresh times.
    """
    now = links.clock()
    appointment = links.appointment_for(token, now)
    if appointment is None:
        return render(request, "listings/call.html", {"message": INVALID}, status=404)
    day = _day(request.GET.get("day", ""))
    context = {"appointment": appointment, "when": format_slot(appointment.starts_at),
               "day": day}
    if request.method == "POST":
        action = request.POST.get("action", "")
        if action == "cancel":
            with transaction.atomic():
                booking.cancel(appointment)
            return render(request, "listings/call.html", {"message": CANCELLED})
        if action == "move":
            try:
                starts_at = datetime.fromisoformat(request.POST.get("slot", "")[:40])
                if starts_at.tzinfo is None:
                    raise ValueError("naive time")
                new = booking.move(appointment, starts_at, now=now)
            except ValueError:
                context["error"] = NOT_OFFERED
            except booking.SlotUnavailable as exc:
                context["error"] = str(exc)
            else:
                return render(request, "listings/call.html",
                              {"message": MOVED.format(when=format_slot(new.starts_at))})
    context["slots"] = [(s.isoformat(), format_slot(s)) for s in _offered(appointment, day, now)]
    return render(request, "listings/call.html", context)
