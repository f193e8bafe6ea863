"""The webhook delivery task on procrastinate, and its backoff.

Backoff (``agent.crm.delivery.waits``): ``WEBHOOK_RETRY_FIRST`` seconds after the first
failure, doubling up to ``WEBHOOK_RETRY_MAX_WAIT``, for ``WEBHOOK_RETRY_HOURS`` in all
(defaults 10 s, 1 h and 24 h: 10, 20, 40, ... 2,560 s, then hourly; 33 tries). The last
failure pauses the endpoint (``agent.crm.delivery.pause``).
"""

import logging

from procrastinate import RetryDecision
from procrastinate.contrib.django import app
from procrastinate.retry import BaseRetryStrategy

from agent.crm import delivery

logger = logging.getLogger(__name__)

QUEUE = "webhooks"


class Backoff(BaseRetryStrategy):
    """Retry after ``waits()[attempts]`` seconds (the last wait once the list is used up);
    a delivery's last failure pauses its endpoint without raising, so a job stops being
    retried then. Other errors (the database away) are retried the same way, up to
    ``10 * max_tries()`` times."""

    def get_retry_decision(self, *, exception, job) -> RetryDecision | None:
        """Args: the exception and the procrastinate job (``job.attempts``: 0 on the first
        run). Returns: when to retry, or None."""
        planned = delivery.waits()
        if job.attempts >= 10 * delivery.max_tries():
            return None
        return RetryDecision(retry_in={"seconds": planned[min(job.attempts, len(planned) - 1)]})


@app.task(name="deliver_webhook", queue=QUEUE, retry=Backoff())
def deliver_webhook(delivery_id: int) -> int:
    """Send the delivery and the others waiting for its endpoint and lead, in order
    (``agent.crm.delivery.drain``); ``DeliveryFailed`` makes procrastinate retry it with
    ``Backoff``. Returns how many were tried."""
    return delivery.drain(delivery_id)
