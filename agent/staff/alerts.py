"""Overdue handoffs: one email to ``HANDOFF_ALERT_EMAIL`` about each handoff queued longer than
``HANDOFF_ALERT_MINUTES`` (``manage.py notify_overdue_handoffs`` runs it).
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction

from agent.models import Handoff
from agent.staff.handoffs import queue_item
from agent.staff.hours import staff_on_duty

logger = logging.getLogger(__name__)


def send_overdue_alerts(now: datetime) -> int:
    """Email ``HANDOFF_ALERT_EMAIL`` once about each handoff queued longer than
    ``HANDOFF_ALERT_MINUTES``; ``alerted_at`` remembers it was sent.

    Runs only during staff hours (an overnight handoff is reported when they start) and only
    when ``HANDOFF_ALERT_EMAIL`` is set. Each handoff is locked (``SKIP LOCKED``) while its email
    is sent, so concurrent runs never send one twice; if sending fails the handoff stays
    unmarked, the error propagates and the next run tries again.

    Args:
        now: the current time, aware.
    Returns:
        The number of emails sent.
    Raises:
        OSError, smtplib.SMTPException: the mail server failed.
    """
    if not settings.HANDOFF_ALERT_EMAIL or not staff_on_duty(now):
        return 0
    cutoff = now - timedelta(minutes=settings.HANDOFF_ALERT_MINUTES)
    sent = 0
    while True:
        with transaction.atomic():
            handoff = (
                Handoff.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("conversation", "message")
                .filter(status=Handoff.Status.QUEUED, alerted_at=None, created_at__lte=cutoff)
                .order_by("created_at", "pk")
                .first()
            )
            if handoff is None:
                return sent
            _send_alert(handoff, now)
            handoff.alerted_at = now
            handoff.save(update_fields=["alerted_at"])
        sent += 1


def _send_alert(handoff: Handoff, now: datetime) -> None:
    minutes = int((now - handoff.created_at).total_seconds() // 60)
    item = queue_item(handoff)
    lines = [
        f"A visitor has waited {minutes} minutes for a person.",
        "",
        f"Reason: {item['reason']}",
        f"Visitor's message: {item['text'] or '-'}",
        f"Contact: {item['visitor'] or 'none given'}",
        "",
        f"Take it: {settings.SITE_URL}{item['url']}",
    ]
    send_mail(
        f"Chat: a visitor has waited {minutes} minutes",
        "\n".join(lines),
        None,  # DEFAULT_FROM_EMAIL
        settings.HANDOFF_ALERT_EMAIL,
    )
    logger.info("emailed an alert about handoff %s, queued %s minutes", handoff.pk, minutes)
