"""Sending one delivery: the signed POST, its outcome on the ``Delivery`` row, and pausing an
endpoint that kept failing, with a notice to staff.

No database transaction is held while the request is in flight. A worker killed after the
receiver answered but before the row says so sends the event again when its job is retried:
at most a duplicate, with the same event id, which receivers dedupe by.
"""

import json
import logging
import threading
import time

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db.models import Q
from django.utils import timezone

from agent.crm import signing
from agent.crm.models import Delivery, WebhookEndpoint
from agent.crm.urls import UnsafeURL, check_addresses

logger = logging.getLogger(__name__)

USER_AGENT = "realestate-chat-webhooks/1"
MAX_ERROR = 500  # characters of an error or response body kept on the row


_shared: httpx.Client | None = None
_shared_lock = threading.Lock()


def shared_client() -> httpx.Client:
    """The process's httpx client for deliveries (thread-safe; made once: building one costs
    an SSL context, tens of ms, which capped a worker at 15 deliveries/s; bench/README.md)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = httpx.Client(timeout=settings.WEBHOOK_TIMEOUT, follow_redirects=False)
        return _shared


class DeliveryFailed(Exception):
    """The receiver did not answer 2xx (or could not be reached); the job is retried."""


def body_of(delivery: Delivery) -> bytes:
    """The exact bytes sent: the event's payload as compact JSON, keys sorted."""
    return json.dumps(delivery.event.payload, separators=(",", ":"), sort_keys=True).encode()


def drain(delivery_id: int, *, client: httpx.Client | None = None) -> int:
    """Send the deliveries waiting for this one's endpoint and lead, oldest event first, this
    one included, until none waits or one fails.

    One job per delivery, each draining its group: the first job of a burst sends the whole
    burst at once, instead of each later job waiting for a worker's next poll (procrastinate
    wakes workers when a job is inserted, not when a locked one becomes free); the later jobs
    then find nothing to do. A delivery fails for good after ``len(jobs.waits()) + 1``
    attempts of its own (``max_tries``).

    Returns:
        How many deliveries were tried.
    Raises:
        DeliveryFailed: one failed and will be retried (the job is retried with backoff).
    """
    first = Delivery.objects.select_related("event").get(pk=delivery_id)
    group = Delivery.objects.filter(
        endpoint_id=first.endpoint_id,
        status__in=(Delivery.Status.PENDING, Delivery.Status.RETRYING),
    )
    if first.event.lead_id:
        group = group.filter(event__lead_id=first.event.lead_id)
    else:
        group = group.filter(event__lead__isnull=True)
    tried = 0
    while (head := group.order_by("event_id").values_list("pk", "attempts").first()) is not None:
        pk, attempts = head
        send(pk, last_try=attempts + 1 >= max_tries(), client=client)
        tried += 1
    return tried


def max_tries() -> int:
    """Attempts of one delivery before it fails for good: one plus each wait of the backoff
    (``WEBHOOK_RETRY_FIRST`` doubling to ``WEBHOOK_RETRY_MAX_WAIT``, ``WEBHOOK_RETRY_HOURS``)."""
    return len(waits()) + 1


def waits() -> list[float]:
    """The seconds waited before each retry, in order; they add up to at least
    ``WEBHOOK_RETRY_HOURS`` hours (the last wait may overshoot it)."""
    total, wait, found = 0.0, settings.WEBHOOK_RETRY_FIRST, []
    while total < settings.WEBHOOK_RETRY_HOURS * 3600:
        found.append(wait)
        total += wait
        wait = min(wait * 2, settings.WEBHOOK_RETRY_MAX_WAIT)
    return found


def send(delivery_id: int, *, last_try: bool, client: httpx.Client | None = None) -> str:
    """Send a delivery unless it is delivered already or its endpoint is paused.

    Args:
        delivery_id: the ``Delivery`` to send.
        last_try: no retry follows a failure: the delivery is marked failed and its endpoint
            paused, with an email to the staff who may change endpoints.
        client: the httpx client to use (tests); None: ``shared_client()``.
    Returns:
        The delivery's status afterwards (``Delivery.Status``).
    Raises:
        DeliveryFailed: the send failed and a retry follows (``last_try`` false).
    """
    delivery = Delivery.objects.select_related("event", "endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    if delivery.status == Delivery.Status.DELIVERED:
        return delivery.status
    if endpoint.paused_at is not None or not endpoint.active:
        Delivery.objects.filter(pk=delivery_id).update(status=Delivery.Status.HELD)
        return Delivery.Status.HELD
    now = timezone.now()
    code, error = _post(delivery, client)
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.response_code = code
    delivery.last_error = error
    if code is not None and 200 <= code < 300:
        delivery.status = Delivery.Status.DELIVERED
        delivery.delivered_at = timezone.now()
    elif last_try:
        delivery.status = Delivery.Status.FAILED
    else:
        delivery.status = Delivery.Status.RETRYING
    delivery.save(
        update_fields=[
            "attempts", "last_attempt_at", "response_code", "last_error", "status", "delivered_at"
        ]
    )
    if delivery.status == Delivery.Status.FAILED:
        event_id = delivery.event.event_id
        pause(endpoint, f"event {event_id} failed {delivery.attempts} times: {error}")
    elif delivery.status == Delivery.Status.RETRYING:
        raise DeliveryFailed(error)
    return delivery.status


def _post(delivery: Delivery, client: httpx.Client | None) -> tuple[int | None, str]:
    """POST the delivery; return (status code or None, error text or "")."""
    endpoint = delivery.endpoint
    body = body_of(delivery)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Chat-Event": delivery.event.type,
        "Chat-Event-Id": str(delivery.event.event_id),
        signing.HEADER: signing.signature(endpoint.secret, int(time.time()), body),
    }
    try:
        check_addresses(endpoint.url)
        client = client or shared_client()
        response = client.post(endpoint.url, content=body, headers=headers)
    except UnsafeURL as exc:
        return None, f"refused: {exc}"
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
    if 200 <= response.status_code < 300:
        return response.status_code, ""
    return response.status_code, f"HTTP {response.status_code}: {response.text[:MAX_ERROR]}"


def pause(endpoint: WebhookEndpoint, reason: str) -> None:
    """Pause an endpoint (its later deliveries are held) and email the staff who may change
    endpoints (the ``agent.change_webhookendpoint`` permission, superusers included)."""
    updated = WebhookEndpoint.objects.filter(pk=endpoint.pk, paused_at=None).update(
        paused_at=timezone.now(), paused_reason=reason[:2000]
    )
    if not updated:
        return
    logger.warning("paused webhook endpoint %s: %s", endpoint.pk, reason)
    User = get_user_model()
    can = Q(is_superuser=True) | Q(user_permissions__codename="change_webhookendpoint")
    can |= Q(groups__permissions__codename="change_webhookendpoint")
    staff = User.objects.filter(can, is_active=True).exclude(email="")
    emails = sorted(set(staff.values_list("email", flat=True)))
    if not emails:
        return
    url = f"{settings.SITE_URL}/admin/agent/webhookendpoint/{endpoint.pk}/change/"
    try:
        send_mail(
            f"Chat: webhook {endpoint.name} paused",
            f"Deliveries to {endpoint.url} kept failing, so it is paused.\n\n{reason}\n\n"
            f"Fix the receiver, then resume it (its held events go out in order): {url}",
            None,
            emails,
        )
    except OSError:
        logger.exception("could not email the notice about webhook endpoint %s", endpoint.pk)
