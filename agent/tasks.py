"""The task queue's tasks (procrastinate, on the app's PostgreSQL; ``manage.py procrastinate
worker`` runs them, several workers at once safely).

- ``deliver_webhook`` (``agent.crm.jobs``): one webhook delivery, retried with backoff.
- ``handoff_alerts``, every minute: ``agent.staff.alerts.send_overdue_alerts`` (it was
  ``notify_overdue_handoffs --every 60``; the command stays for cron).
- ``purge``, daily at 03:30 (server time): ``agent.ops.retention.purge`` with
  ``RETENTION_DAYS`` (the command stays for ``--dry-run`` and ``--delete``).
- ``reminders``, every minute: ``listings.reminders.send_due`` (visitor reminders 24 h and
  1 h before a call, realtors' morning agendas), each email claimed once across workers.
- ``rescue_stalled``, every minute: jobs left ``doing`` by a worker that died (no heartbeat
  for ``TASKS_STALLED_SECONDS``) go back to ``todo``, so a killed worker loses nothing.

procrastinate defers each periodic run once per schedule tick whatever the number of workers.
"""

import logging
from datetime import UTC, datetime

from procrastinate.contrib.django import app

from agent.crm import jobs  # noqa: F401  registers deliver_webhook with the app

logger = logging.getLogger(__name__)


@app.periodic(cron="* * * * *", periodic_id="handoff_alerts")
@app.task(name="handoff_alerts", queueing_lock="handoff_alerts")
def handoff_alerts(timestamp: int) -> int:
    """Email about overdue handoffs. Args: the tick's unix time (procrastinate's). Returns:
    emails sent."""
    from agent.staff.alerts import send_overdue_alerts

    return send_overdue_alerts(datetime.fromtimestamp(timestamp, UTC))


@app.periodic(cron="30 3 * * *", periodic_id="purge")
@app.task(name="purge", queueing_lock="purge")
def purge(timestamp: int) -> None:
    """Apply ``RETENTION_DAYS`` to old conversations (the tick's unix time is "now")."""
    from django.conf import settings

    from agent.ops.retention import purge as run_purge

    counts = run_purge(datetime.fromtimestamp(timestamp, UTC), settings.RETENTION_DAYS)
    logger.info("retention: %s", counts)


@app.periodic(cron="* * * * *", periodic_id="reminders")
@app.task(name="reminders", queueing_lock="reminders")
def reminders(timestamp: int) -> int:
    """Send the reminders and agendas due at the tick's unix time. Returns emails sent."""
    from listings.reminders import send_due

    return send_due(datetime.fromtimestamp(timestamp, UTC))


@app.periodic(cron="* * * * *", periodic_id="rescue_stalled")
@app.task(name="rescue_stalled", queueing_lock="rescue_stalled")
async def rescue_stalled(timestamp: int) -> int:
    """Put back to ``todo`` the jobs of workers silent for ``TASKS_STALLED_SECONDS``.
    Returns how many."""
    return await rescue(None)


async def rescue(seconds: float | None) -> int:
    """Retry every ``doing`` job whose worker sent no heartbeat for ``seconds`` (None:
    ``TASKS_STALLED_SECONDS``). Returns how many were put back."""
    from django.conf import settings

    wait = settings.TASKS_STALLED_SECONDS if seconds is None else seconds
    stalled = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=wait)
    retried = 0
    for job in stalled:
        logger.warning("job %s (%s) stalled: its worker died; retrying it", job.id, job.task_name)
        await app.job_manager.retry_job(job)
        retried += 1
    return retried
