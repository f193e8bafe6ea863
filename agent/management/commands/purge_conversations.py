"""``manage.py purge_conversations [--days N] [--delete] [--dry-run]``: apply the retention
period (``RETENTION_DAYS``) to old conversations; what is kept and removed is in
``agent/ops/retention.py``."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from agent.ops.retention import purge


class Command(BaseCommand):
    help = (
        "Anonymise conversations whose last message is older than RETENTION_DAYS (or --days): "
        "message texts, contact details, classifier raw outputs and handoff reasons are removed; "
        "appointments keep their time and realtor. --delete deletes them instead; --dry-run "
        "only prints the counts. Run it daily, e.g. from cron."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--days", type=int, default=None,
            help=f"retention in days (default: RETENTION_DAYS, now {settings.RETENTION_DAYS})",
        )
        parser.add_argument(
            "--delete", action="store_true",
            help="delete the conversations, their messages and handoffs instead of anonymising",
        )
        parser.add_argument("--dry-run", action="store_true", help="change nothing; print counts")

    def handle(self, *args, days: int | None, delete: bool, dry_run: bool, **options):
        days = settings.RETENTION_DAYS if days is None else days
        if days < 1:
            raise CommandError(f"--days must be at least 1, not {days}")
        counts = purge(timezone.now(), days, delete=delete, dry_run=dry_run)
        verb = "delete" if delete else "anonymise"
        if dry_run:
            self.stdout.write(f"Would {verb} (older than {days} days): {counts}.")
        else:
            self.stdout.write(f"{verb.capitalize()}d (older than {days} days): {counts}.")
