"""The outbox: ``emit`` writes an event, a delivery per subscribed endpoint and the task
queue's job for each, all in the caller's transaction, so a rolled-back change sends nothing
and a crash after the commit loses nothing (the jobs are rows of the same database).

Payload (version 1; docs/webhooks.md)::

    {"version": 1, "id": "<event uuid>", "type": "appointment.booked",
     "created_at": "<UTC ISO 8601>", "lead_id": 12, "data": {...}}

Deliveries of one endpoint and lead run in the order of their events: their jobs share a
procrastinate ``lock``, and procrastinate runs a locked job only when no earlier job of the
lock is waiting or running, retries included.
"""

import json
import logging

from django.db import connection, transaction
from django.utils import timezone

from agent.crm import jobs
from agent.crm.models import Delivery, Event, Lead, WebhookEndpoint
from agent.rows import records

logger = logging.getLogger(__name__)

VERSION = 1
EVENT_TYPES = (
    "lead.created",
    "lead.updated",
    "appointment.booked",
    "appointment.cancelled",
    "appointment.moved",
    "handoff.queued",
    "handoff.resolved",
)


# An event's INSERT (its row as JSON, ``agent.rows.records``) and, in the same statement, the
# ids of the active endpoints subscribed to its type (``events`` is a JSON array of types).
EMIT_SQL = (
    f"WITH e AS (INSERT INTO {Event._meta.db_table} ({{columns}}) SELECT {{columns}} "
    f"FROM jsonb_populate_recordset(NULL::{Event._meta.db_table}, %s) RETURNING id) "
    f"SELECT e.id, ARRAY(SELECT w.id FROM {WebhookEndpoint._meta.db_table} w "
    "WHERE w.active AND w.events ? %s ORDER BY w.id) FROM e"
)


def emit(event_type: str, lead: Lead | None, data: dict) -> Event:
    """Write an event and its deliveries, and defer their jobs, in the current transaction.

    Args:
        event_type: one of ``EVENT_TYPES``.
        lead: the lead it is about (orders its deliveries), or None.
        data: the event's JSON-ready details (``data`` of the payload).
    Returns:
        The saved ``Event``.
    Raises:
        ValueError: an unknown ``event_type``.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    with transaction.atomic(savepoint=False):  # no savepoint: a failure fails the change too
        event = Event(type=event_type, lead=lead, payload={})
        event.payload = {
            "version": VERSION,
            "id": str(event.event_id),
            "type": event_type,
            "created_at": timezone.now().isoformat(),
            "lead_id": lead.pk if lead else None,
            "data": data,
        }
        # Raw, in one statement, as every turn emits one or two events: the ORM's compiling
        # of the two it took cost more CPU than running them (issue 16).
        columns, row = records([event])
        with connection.cursor() as cursor:
            cursor.execute(EMIT_SQL.format(columns=columns), [row, event_type])
            event.pk, endpoint_ids = cursor.fetchone()
        event._state.adding, event._state.db = False, connection.alias
        deliveries = Delivery.objects.bulk_create(
            Delivery(event=event, endpoint_id=endpoint_id) for endpoint_id in endpoint_ids
        )
        for delivery in deliveries:
            schedule(delivery)
    return event


def lock_of(delivery: Delivery) -> str:
    """The procrastinate lock that orders a delivery among its endpoint's and lead's."""
    lead = delivery.event.lead_id or delivery.event.payload.get("lead_id") or "none"
    return f"webhook:{delivery.endpoint_id}:lead:{lead}"


def schedule(delivery: Delivery) -> None:
    """Defer the job that sends ``delivery``, in the current transaction (Django's connection:
    procrastinate's Django connector writes the job with it)."""
    jobs.deliver_webhook.configure(lock=lock_of(delivery)).defer(delivery_id=delivery.pk)


def pretty(payload: dict) -> str:
    """A payload as indented JSON, for the admin."""
    return json.dumps(payload, indent=2, sort_keys=True)
