"""The chat's database trips, failing fast while PostgreSQL is unreachable.

A process's database trips run one after another on its one database thread
(``database_sync_to_async``), and each may wait ``DB_POOL_TIMEOUT`` for a connection. While
PostgreSQL is down they queue behind each other: in ``bench/faults.py`` (before this gate) ten
visitors waited out the whole 30 s outage and only 3 got an error frame. Here the first trip
that cannot reach the database marks it unreachable. Until a trip reaches it again, a trip
fails at once with ``DatabaseUnavailable``, except one probe per ``PROBE_SECONDS``, which
tries for real. A restart shorter than ``DB_POOL_TIMEOUT`` costs no error at all: the waiting
trips get their connections when the pool reconnects.
"""

import time

from channels.db import database_sync_to_async
from django.db import InterfaceError, OperationalError

from agent import metrics

PROBE_SECONDS = 1.0  # after a failed attempt, before the next real one

# Set on the database thread, read on the event loop too (plain flags: the GIL orders them).
_unreachable = False
_last_failure = 0.0  # time.monotonic() of the last attempt that could not reach the server
_probing = False  # a real attempt is in flight while the database is marked unreachable


class DatabaseUnavailable(OperationalError):
    """PostgreSQL could not be reached at the last attempt, and no new attempt is due yet."""


def lost_connection(exc: Exception) -> bool:
    """True when ``exc`` (a Django database error) means the server could not be reached or
    dropped the connection, rather than refused a statement.

    psycopg gives a failed or dropped connection, and the pool's timeout, no SQLSTATE; a
    server shutting down sends class 57 (operator intervention) and a broken link is class 08
    (connection exception), per PostgreSQL's errcodes appendix.
    """
    if isinstance(exc, InterfaceError):
        return True
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    return sqlstate is None or sqlstate[:2] in ("08", "57")


def _refuse():
    metrics.DB_TRIPS_REFUSED.inc()
    raise DatabaseUnavailable("PostgreSQL is unreachable; not trying again yet")


def _gated(func, probe: bool):
    def trip(*args, **kwargs):
        global _unreachable, _last_failure
        if _unreachable and not probe:
            _refuse()  # queued behind the attempt that found the server gone
        try:
            result = func(*args, **kwargs)
        except (InterfaceError, OperationalError) as exc:
            if lost_connection(exc):
                _unreachable, _last_failure = True, time.monotonic()
            raise
        _unreachable = False
        return result

    return trip


async def db_trip(func, *args, **kwargs):
    """Run ``func(*args, **kwargs)`` on the database thread and return its result.

    While the database is marked unreachable, one call at a time, at least ``PROBE_SECONDS``
    after the last failure, makes a real attempt (it may wait ``DB_POOL_TIMEOUT``); the others
    fail at once, without queueing on the database thread.

    Raises:
        DatabaseUnavailable: the database is marked unreachable and this call is not the
            attempt.
        django.db.Error: whatever ``func`` raises.
    """
    global _probing
    probe = False
    if _unreachable:
        if _probing or time.monotonic() - _last_failure < PROBE_SECONDS:
            _refuse()
        _probing = probe = True
    try:
        return await database_sync_to_async(_gated(func, probe))(*args, **kwargs)
    finally:
        if probe:
            _probing = False
