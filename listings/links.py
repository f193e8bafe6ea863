"""Signed links in booking emails to cancel or move a call without logging in (the page is
``listings.callpage``, ``/call/<token>/``).

A token is ``django.core.signing`` of the appointment's ``calendar_uid``, salted
(``SALT``) and timestamped: it is refused after ``APPOINTMENT_LINK_DAYS`` days, when forged,
or when the call it names is cancelled or has started. The UID follows a move, so links in
older emails act on the call as it is now.
"""

import logging
from datetime import datetime

from django.conf import settings
from django.core import signing
from django.utils import timezone

from listings.models import Appointment
from listings.schedule import ACTIVE

logger = logging.getLogger(__name__)

SALT = "listings.links.appointment"
TOKEN_MAX_LENGTH = 200  # a longer path segment is refused before any unsigning


def clock() -> datetime:
    """The current time (tests replace it)."""
    return timezone.now()


def token_for(appointment: Appointment) -> str:
    """The signed token of an appointment's links."""
    return signing.dumps(str(appointment.calendar_uid), salt=SALT)


def url_for(appointment: Appointment) -> str:
    """The absolute URL of the appointment's page, ``SITE_URL/call/<token>/``."""
    return f"{settings.SITE_URL}/call/{token_for(appointment)}/"


def appointment_for(token: str, now: datetime) -> Appointment | None:
    """The active, not yet started appointment a token names, or None when the token is
    forged, older than ``APPOINTMENT_LINK_DAYS`` days, too long, or its call is gone."""
    if len(token) > TOKEN_MAX_LENGTH:
        return None
    try:
        uid = signing.loads(token, salt=SALT, max_age=settings.APPOINTMENT_LINK_DAYS * 86400)
    except signing.BadSignature:  # SignatureExpired included
        return None
    return (
        Appointment.objects.filter(calendar_uid=uid, status__in=ACTIVE, starts_at__gt=now)
        .select_related("realtor__user", "listing", "conversation")
        .first()
    )
