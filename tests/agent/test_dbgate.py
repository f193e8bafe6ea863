"""agent.dbgate: once PostgreSQL cannot be reached, the chat's trips fail at once, but for one
probe a second, until a trip reaches it again."""

import pytest
from django.db import OperationalError

from agent import dbgate, metrics


class Refused(Exception):
    """What psycopg raises when the server cannot be reached: no SQLSTATE."""

    sqlstate = None


class Deadlock(Exception):
    sqlstate = "40P01"


def failing(cause: type[Exception]):
    def trip():
        calls.append(cause)
        raise OperationalError("boom") from cause()

    return trip


def fine():
    calls.append("fine")
    return "ok"


calls: list = []


@pytest.fixture(autouse=True)
def fresh_gate(monkeypatch):
    monkeypatch.setattr(dbgate, "_unreachable", False)
    monkeypatch.setattr(dbgate, "_last_failure", 0.0)
    monkeypatch.setattr(dbgate, "_probing", False)
    calls.clear()


async def test_after_a_lost_connection_trips_fail_at_once_until_a_probe_gets_through(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(dbgate.time, "monotonic", lambda: clock[0])
    refused_before = metrics.REGISTRY.get_sample_value("chat_db_trips_refused_total") or 0
    with pytest.raises(OperationalError):
        await dbgate.db_trip(failing(Refused))
    clock[0] += 0.5
    with pytest.raises(dbgate.DatabaseUnavailable):
        await dbgate.db_trip(fine)
    assert calls == [Refused]  # the second trip never ran
    assert metrics.REGISTRY.get_sample_value("chat_db_trips_refused_total") == refused_before + 1
    clock[0] += dbgate.PROBE_SECONDS  # a probe is due: it runs, succeeds, and opens the gate
    assert await dbgate.db_trip(fine) == "ok"
    assert await dbgate.db_trip(fine) == "ok"
    assert calls == [Refused, "fine", "fine"]


async def test_a_statement_error_does_not_mark_the_database_unreachable():
    with pytest.raises(OperationalError):
        await dbgate.db_trip(failing(Deadlock))
    assert await dbgate.db_trip(fine) == "ok"


@pytest.mark.parametrize(("sqlstate", "lost"), [(None, True), ("57P01", True), ("08006", True),
                                                ("40P01", False), ("23505", False)])
def test_lost_connection_reads_the_sqlstate_class(sqlstate, lost):
    cause = type("Cause", (Exception,), {"sqlstate": sqlstate})
    try:
        raise OperationalError("x") from cause()
    except OperationalError as exc:
        assert dbgate.lost_connection(exc) is lost


async def test_while_a_probe_waits_for_the_database_other_trips_fail_at_once(monkeypatch):
    import asyncio
    import threading

    monkeypatch.setattr(dbgate, "_unreachable", True)
    release, started = threading.Event(), threading.Event()

    def slow_probe():
        started.set()
        release.wait(5)  # as a trip waiting DB_POOL_TIMEOUT for a connection
        return "back"

    probe = asyncio.create_task(dbgate.db_trip(slow_probe))
    assert await asyncio.to_thread(started.wait, 5)  # the probe holds the gate now
    with pytest.raises(dbgate.DatabaseUnavailable):
        await dbgate.db_trip(fine)
    release.set()
    assert await probe == "back"
    assert await dbgate.db_trip(fine) == "ok"
    assert calls == ["fine"]
