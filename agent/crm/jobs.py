"""The webhook delivery task on procrastinate, and its backoff.

Backoff: ``WEBHOOK_RETRY_FIRST`` seconds after the first failure, doubling up to
``WEBHOOK_RETRY_MAX_WAIT``, for ``WEBHOOK_RETRY_HOURS`` in all (defaults 10 s, 1 h and 24 h:
10, 20, 40, ... 2,560 s, then hourly; 33 tries). The last failure pauses the endpoint
(``agent.crm.delivery.pause``).
"""

import logging

from django.conf import settings
from procrastinate import RetryDecision
from procrastinate.contrib.django import app
from procrastinate.retry import BaseRetryStrategy

from agent.crm import delivery

logger = logging.getLogger(__name__)

QUEUE = "webhooks"


def waits() -> list[float]:
    """The seconds waited before each retry, in order; they add up to at least
    ``WEBHOOK_RETRY_HOURS`` hours (the last wait may overshoot it)."""
    total, wait, found = 0.0, settings.WEBHOOK_RETRY_FIRST, []
    while total < settings.WEBHOOK_RETRY_HOURS * 3600:
        found.append(wait)
        total += wait
        wait = min(wait * 2, settings.WEBHOOK_RETRY_MAX_WAIT)
    return found


class Backoff(BaseRetryStrategy):
    """Retry after ``waits()[attempts]`` seconds; after the last, no retry (``send`` paused
    the endpoint and did not raise, so this is only asked about unexpected errors)."""

    def get_retry_decision(self, *, exception, job) -> RetryDecision | None:
        """Args: the exception and the procrastinate job (``job.attempts``: 0 on the first
        run). Returns: when to retry, or None."""
        planned = waits()
        if job.attempts >= len(planned):
            return None
        return RetryDecision(retry_in={"seconds": planned[job.attempts]})


@app.task(name="deliver_webhook", queue=QUEUE, retry=Backoff(), pass_context=True)
def deliver_webhook(context, delivery_id: int) -> str:
    """Send one delivery (``agent.crm.delivery.send``); raising ``DeliveryFailed`` makes
    procrastinate retry it with ``Backoff``. Returns the delivery's status."""
    last_try = context.job.attempts >= len(waits())
    return delivery.send(delivery_id, last_try=last_try)
