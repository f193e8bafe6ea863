"""Each realtor's private calendar feed, ``/calendar/<token>.ics``: their upcoming calls as
iCalendar, for Google Calendar, Outlook or Apple Calendar to subscribe to, without a login.

The token is random (``secrets.token_urlsafe``, 256 bits); only its SHA-256 is stored
(``Realtor.calendar_token_hash``), so the lookup is by a digest of what was presented (an index
lookup whose timing says nothing about the token) and a copy of the database gives no feed.
Staff with ``listings.manage_calendar_feed`` regenerate (the old URL stops) or revoke it from
the realtor admin.
"""

import hashlib
import hmac
import logging
import secrets
from datetime import datetime

from django.conf import settings
from django.http import Http404, HttpResponse
from django.utils import timezone

from listings import ics
from listings.models import Appointment, Realtor
from listings.schedule import ACTIVE

logger = logging.getLogger(__name__)

TOKEN_MAX_LENGTH = 64  # a presented token longer than this is refused before hashing


def clock() -> datetime:
    """The current time (tests replace it)."""
    return timezone.now()


def digest(token: str) -> str:
    """The stored form of a feed token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def regenerate(realtor: Realtor) -> str:
    """Give the realtor a new feed token (the old URL stops working); returns its URL,
    ``SITE_URL/calendar/<token>.ics``, shown once."""
    token = secrets.token_urlsafe(32)
    realtor.calendar_token_hash = digest(token)
    realtor.save(update_fields=["calendar_token_hash"])
    return f"{settings.SITE_URL}/calendar/{token}.ics"


def revoke(realtor: Realtor) -> None:
    """Stop the realtor's feed: no token, no URL."""
    realtor.calendar_token_hash = None
    realtor.save(update_fields=["calendar_token_hash"])


def realtor_for(token: str) -> Realtor | None:
    """The realtor whose feed token this is, or None (unknown, revoked, or too long)."""
    if not token or len(token) > TOKEN_MAX_LENGTH:
        return None
    wanted = digest(token)
    realtor = Realtor.objects.select_related("user").filter(calendar_token_hash=wanted).first()
    if realtor is None or not hmac.compare_digest(realtor.calendar_token_hash, wanted):
        return None
    return realtor


def feed_text(realtor: Realtor, now: datetime) -> str:
    """The realtor's feed: active calls not yet ended, earliest first."""
    upcoming = (
        Appointment.objects.filter(realtor=realtor, status__in=ACTIVE, ends_at__gt=now)
        .select_related("listing")
        .order_by("starts_at")
    )
    return ics.feed(realtor, upcoming, now=now)


def calendar_feed(request, token: str):
    """``GET /calendar/<token>.ics``: the realtor's feed, ``text/calendar``, never cached by
    shared caches.

    Raises:
        Http404: no realtor has that token (a revoked one included).
    """
    realtor = realtor_for(token)
    if realtor is None:
        raise Http404("No such calendar.")
    response = HttpResponse(feed_text(realtor, clock()),
                            content_type="text/calendar; charset=utf-8")
    response["Cache-Control"] = "private, max-age=300"
    return response
