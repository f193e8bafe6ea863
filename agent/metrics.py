"""Prometheus metrics of turns, classifier calls and handoffs, served by ``/metrics``.

Everything lives in ``REGISTRY``, a registry of this module (not prometheus-client's global
one), so ``/metrics`` shows the product's figures only and tests read samples from it with
``REGISTRY.get_sample_value(name, labels)``.

The counts are per process: run one daphne process per registry, or switch to
prometheus-client's multiprocess mode before running several behind one address.

Durations are in seconds, as Prometheus names them. The buckets run from 10 ms to 10 s: a
classifier call takes 50 to 600 ms on a GPU, a turn's budget is a few seconds, and anything
past 10 s is a failure whatever its exact length.
"""

import functools
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 2.5,
           3.0, 5.0, 10.0)  # seconds
STATUSES = ("ok", "error", "timeout", "cancelled")

TURN_SECONDS = Histogram(
    "chat_turn_duration_seconds",
    "Time from storing the visitor's message to routing the reply, by route.",
    ["route"],
    buckets=BUCKETS,
    registry=REGISTRY,
)
CLASSIFIER_CALL_SECONDS = Histogram(
    "chat_classifier_call_duration_seconds",
    "Wall time of one classifier call, by classifier, model and outcome "
    "(ok, error, timeout, cancelled).",
    ["classifier", "model", "outcome"],
    buckets=BUCKETS,
    registry=REGISTRY,
)
CLASSIFIER_RETRIES = Counter(
    "chat_classifier_retries",
    "Retries of classifier calls (connection errors, 429, 5xx), by classifier and model.",
    ["classifier", "model"],
    registry=REGISTRY,
)
SLOT_WAIT_SECONDS = Histogram(
    "chat_classifier_slot_wait_seconds",
    "Time a classifier call waited for a free slot of its endpoint, by classifier and model.",
    ["classifier", "model"],
    buckets=BUCKETS,
    registry=REGISTRY,
)
TURNS_WAITING = Gauge(
    "chat_turns_waiting",
    "Turns waiting for one of the process's TURN_MAX_OPEN turn slots (agent.chat.capacity).",
    registry=REGISTRY,
)
TURNS_SHED = Counter(
    "chat_turns_shed",
    "Turns that waited TURN_QUEUE_TIMEOUT for a slot: the visitor got route busy, then the "
    "normal answer once a slot came.",
    registry=REGISTRY,
)
CONNECTIONS_SHED = Counter(
    "chat_connections_shed",
    "New chat sockets refused with HTTP 503 at the handshake because CHAT_SHED_WAITING turns "
    "waited for a slot (agent.chat.shedding); nginx opens them on another worker.",
    registry=REGISTRY,
)
TURN_QUEUE_SECONDS = Histogram(
    "chat_turn_queue_wait_seconds",
    "Time a turn waited for a turn slot before its classifier calls started.",
    buckets=BUCKETS,
    registry=REGISTRY,
)
CHANNEL_DROPS = Counter(
    "chat_channel_layer_dropped_messages",
    "Frames channels_redis dropped because a socket's channel was full (CHANNEL_CAPACITY): "
    "the socket missed them until it reconnects.",
    registry=REGISTRY,
)
CHANNEL_OUTAGES = Counter(
    "chat_channel_layer_outages",
    "Times this process lost its Redis connection; each closes the process's sockets so "
    "their clients reconnect and rejoin their groups.",
    registry=REGISTRY,
)
TURNS_RATE_LIMITED = Counter(
    "chat_turns_rate_limited",
    "Visitor messages refused by a rate limit (not stored, no turn), by the limit that refused: "
    "connection (CHAT_RATE_LIMIT_CONNECTION) or ip (CHAT_RATE_LIMIT_IP).",
    ["limit"],
    registry=REGISTRY,
)
SOCKETS_REFUSED = Counter(
    "chat_sockets_refused",
    "Chat sockets closed at connect (4429) because their address had CHAT_MAX_SOCKETS_PER_IP "
    "open in this process.",
    registry=REGISTRY,
)
RATE_LIMIT_STORAGE_ERRORS = Counter(
    "chat_rate_limit_storage_errors",
    "Per-address rate-limit checks that failed open because the storage (Redis) failed.",
    registry=REGISTRY,
)
TURNS_RESUMED = Counter(
    "chat_turns_resumed",
    "Turns run again for a visitor message that nothing answered in time: its worker died, "
    "or the database failed under its turn (agent.chat.orphans).",
    registry=REGISTRY,
)
DB_TRIPS_REFUSED = Counter(
    "chat_db_trips_refused",
    "Database trips failed at once because PostgreSQL was unreachable a moment before "
    "(agent.dbgate); each becomes an error frame.",
    registry=REGISTRY,
)
HANDOFFS_QUEUED = Counter(
    "chat_handoffs_queued",
    "Handoffs queued for staff (a conversation already waiting for a person is not counted).",
    registry=REGISTRY,
)


def record_turn(route: str, latency_ms: float, outcomes: Iterable) -> None:
    """Record one answered turn and each of its classifier calls.

    Args:
        route: the reply's route (``agent.models.Route`` value).
        latency_ms: the turn's latency in milliseconds.
        outcomes: one per classifier call, each with ``classifier``, ``model``, ``latency_ms``
            and ``error`` attributes, and, once the engine provides them, ``status`` (one of
            ``STATUSES``), ``retries`` and ``wait_ms`` (ms waited for an endpoint slot). Without
            ``status`` a call is "error" if it has an error, else "ok"; missing ``retries``
            and ``wait_ms`` count as 0.
    """
    TURN_SECONDS.labels(route=route).observe(latency_ms / 1000)
    for outcome in outcomes:
        status = getattr(outcome, "status", None) or ("error" if outcome.error else "ok")
        seconds, retries, wait = _call_series(outcome.classifier, outcome.model, status)
        seconds.observe(outcome.latency_ms / 1000)
        retries.inc(getattr(outcome, "retries", 0) or 0)
        wait.observe((getattr(outcome, "wait_ms", 0) or 0) / 1000)


@functools.lru_cache(maxsize=1024)  # classifiers x models x statuses: a few dozen
def _call_series(classifier: str, model: str, status: str) -> tuple:
    """The call's labelled series of ``CLASSIFIER_CALL_SECONDS``, ``CLASSIFIER_RETRIES`` and
    ``SLOT_WAIT_SECONDS``: looked up once, not three times a call (issue 16)."""
    labels = {"classifier": classifier, "model": model}
    return (
        CLASSIFIER_CALL_SECONDS.labels(outcome=status, **labels),
        CLASSIFIER_RETRIES.labels(**labels),
        SLOT_WAIT_SECONDS.labels(**labels),
    )


def record_handoff_queued() -> None:
    """Count one handoff queued for staff."""
    HANDOFFS_QUEUED.inc()
