"""``manage.py notify_overdue_handoffs``: email about handoffs that have waited too long.

    python manage.py notify_overdue_handoffs [--every SECONDS]

Sends ``HANDOFF_ALERT_EMAIL`` one email per handoff queued longer than
``HANDOFF_ALERT_MINUTES``, during staff hours; each handoff is emailed about once. Run it from
cron or a systemd timer every minute, or keep it running with ``--every 60`` (``make run``
does). Does nothing while ``HANDOFF_ALERT_EMAIL`` is empty.
"""

import logging
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections
from django.utils import timezone

from agent.staff.alerts import send_overdue_alerts

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Email HANDOFF_ALERT_EMAIL about handoffs queued longer than HANDOFF_ALERT_MINUTES."

    def add_arguments(self, parser):
        parser.add_argument(
            "--every", type=float, metavar="SECONDS",
            help="Keep running, checking every SECONDS (at least 5); errors are logged, not fatal.",
        )

    def handle(self, *args, every=None, **options):
        if not settings.HANDOFF_ALERT_EMAIL:
            self.stdout.write("HANDOFF_ALERT_EMAIL is empty: no alerts are sent.")
        if every is None:
            sent = send_overdue_alerts(timezone.now())
            self.stdout.write(f"{sent} overdue handoff email(s) sent.")
            return
        if every < 5:
            raise CommandError("--every takes at least 5 seconds")
        try:
            while True:
                close_old_connections()  # a long-running process: drop connections gone bad
                try:
                    send_overdue_alerts(timezone.now())
                except Exception:
                    logger.exception("overdue handoff alerts failed; trying again in %s s", every)
                time.sleep(every)
        except KeyboardInterrupt:
            return
