"""The chat's database trips, failing fast while PostgreSQL is unreachable.

A process's database trips run one after another on its one database thread
(``database_sync_to_async``), and each may wait ``DB_POOL_TIMEOUT`` for a connection. While
PostgreSQL is down they queue behind each other: in ``bench/faults.py`` (before this gate) ten
visitors waited out the whole 30 s outage and only 3 got an error frame. Here the first trip
that cannot reach the database marks it unreachable. Until a trip reaches it again, a trip
fails at once with ``DatabaseUnavailable``, except one probe per ``PROBE_SECONDS``, which
tries for real. A restart shorter than ``DB_POOL_TIMEOUT`` costs no error at all: the waiting
trips get their connections when the pool reconnects.

Under the ASGI server the trips run on ``DB_TRIP_THREADS`` threads, not on channels' one
thread-sensitive database thread, where every chat's trips queued behind each other while each
waited on PostgreSQL (issue 16: that thread was busy 55% of the time, half of it waiting on
the socket). That is safe because a trip is a whole unit of work: it opens and ends its own
transactions, takes a connection from psycopg's pool and gives it back when it ends
(Django's ``close_old_connections`` around it, ``CONN_MAX_AGE`` 0; ``_hop``), and keeps
nothing on its thread for a later trip; a chat's trips still run one after another (each is
awaited), and two chats' trips are ordered by PostgreSQL's row locks, as two processes' are.
Called from sync code through ``async_to_sync`` (tests, management commands), a trip stays on
the caller's thread as before, so it sees the caller's open transaction.
"""

import asyncio
import contextvars
import functools
import os
import time
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import AsyncToSync, SyncToAsync
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections

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
        executor = _executor()
        if executor is None:
            return await database_sync_to_async(_gated(func, probe))(*args, **kwargs)
        return await _hop(executor, functools.partial(_gated(func, probe), *args, **kwargs))
    finally:
        if probe:
            _probing = False


async def _hop(executor: ThreadPoolExecutor, call):
    """``call()`` on one of ``executor``'s threads, as channels' ``DatabaseSyncToAsync`` runs a
    function (old connections closed around it; asgiref's record of this loop on the thread,
    so ``async_to_sync`` there schedules onto it), for less CPU: asgiref's ``SyncToAsync`` also
    walks the context's variables twice a hop to carry its ``Local`` values across, and a trip
    shares none with its caller (the chat consumers activate no language or time zone).
    ``call`` runs in a copy of the caller's context. Cancelled, this waits for ``call`` to end
    before it re-raises: a trip is never left running behind its caller. Figures in
    bench/README.md ("thread hop" lines of bench/unitcosts.py)."""
    loop = asyncio.get_running_loop()
    job = loop.run_in_executor(
        executor, contextvars.copy_context().run, _on_trip_thread, loop, call
    )
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        await asyncio.wait([job])
        raise


def _on_trip_thread(loop: asyncio.AbstractEventLoop, call):
    local = SyncToAsync.threadlocal  # what AsyncToSync reads to find the loop to schedule on
    local.main_event_loop, local.main_event_loop_pid = loop, os.getpid()
    close_old_connections()
    try:
        return call()
    finally:
        close_old_connections()


_executors: dict[int, ThreadPoolExecutor] = {}  # by DB_TRIP_THREADS


def _executor() -> ThreadPoolExecutor | None:
    """The threads for this trip, or None for channels' thread-sensitive database thread:
    when ``DB_TRIP_THREADS`` is 0, or when sync code waits below this loop (``async_to_sync``)
    and may hold a transaction the trip must see."""
    threads = settings.DB_TRIP_THREADS
    if not threads or getattr(AsyncToSync.executors, "current", None) is not None:
        return None
    if asyncio.get_running_loop() in AsyncToSync.loop_thread_executors:
        return None
    if threads not in _executors:
        _executors[threads] = ThreadPoolExecutor(threads, thread_name_prefix="db-trip")
    return _executors[threads]


class TripsOnly:
    """A consumer mixin: channels' ``dispatch`` without its hop to the database thread before
    every message (``aclose_old_connections``, 4.3), for consumers whose every database call
    goes through ``db_trip``, which closes old connections around itself. Under load that hop
    queued each frame a socket was given behind every chat's database work (bench/README.md)."""

    async def dispatch(self, message):
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)
