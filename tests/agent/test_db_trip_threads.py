"""agent.dbgate's trips run on a pool of threads under the ASGI server: one chat's trip that
waits on PostgreSQL no longer holds up another's, and every connection goes back to the pool."""

import asyncio
import threading

import pytest
from django.db import connection

from agent import dbgate
from agent.models import Conversation, Message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.trip_threads]


async def test_a_trip_waiting_does_not_hold_up_another_chats_trip(settings):
    settings.DB_TRIP_THREADS = 2
    other_ran = threading.Event()
    threads = []

    def waits_for_the_other():
        threads.append(threading.current_thread().name)
        # On one database thread the other trip could only run after this one: it would wait
        # the whole 10 s and fail. On the pool it runs meanwhile, in milliseconds.
        return other_ran.wait(timeout=10)

    def the_other():
        threads.append(threading.current_thread().name)
        Conversation.objects.create()
        other_ran.set()

    first = asyncio.ensure_future(dbgate.db_trip(waits_for_the_other))
    await dbgate.db_trip(the_other)
    assert await first is True
    assert all(name.startswith("db-trip") for name in threads)


async def test_a_trip_returns_its_connection_and_sees_what_earlier_trips_committed(settings):
    settings.DB_TRIP_THREADS = 2
    conversation = await dbgate.db_trip(Conversation.objects.create)
    stored = await asyncio.gather(
        *(dbgate.db_trip(Message.objects.store_visitor, conversation.id, f"m{n}")
          for n in range(6))
    )
    assert sorted(m.seq for m, _ in stored) == [1, 2, 3, 4, 5, 6]  # the row lock orders them

    # Each trip gave its connection back: neither trip thread holds one now. (The pool's own
    # figures would not tell: the pool is the process's, and other tests' threads borrow from it.)
    both_threads = threading.Barrier(2)

    def holds_a_connection():
        both_threads.wait(timeout=5)  # so that each of the two threads answers once
        return connection.connection is not None

    loop, threads = asyncio.get_running_loop(), dbgate._executor()
    assert await asyncio.gather(
        *(loop.run_in_executor(threads, holds_a_connection) for _ in range(2))
    ) == [False, False]


def test_from_sync_code_a_trip_stays_on_the_callers_thread(settings):
    from asgiref.sync import async_to_sync

    settings.DB_TRIP_THREADS = 2
    assert async_to_sync(dbgate.db_trip)(lambda: threading.current_thread()) is (
        threading.current_thread()
    )


async def test_a_cancelled_trip_is_waited_for_before_the_cancel_is_raised(settings):
    settings.DB_TRIP_THREADS = 2
    loop, started, release = asyncio.get_running_loop(), asyncio.Event(), threading.Event()
    ended = []

    def slow():
        loop.call_soon_threadsafe(started.set)
        release.wait(timeout=10)
        ended.append(True)

    trip = asyncio.ensure_future(dbgate.db_trip(slow))
    await started.wait()
    trip.cancel()
    for _ in range(20):  # let the cancel through: the task stays on the running trip
        await asyncio.sleep(0)
    assert not trip.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await trip
    assert ended == [True]  # it ran to its end before its caller heard of the cancel


async def test_async_to_sync_in_a_trip_runs_on_the_trips_event_loop(settings):
    # agent.staff.handoffs.send_to_staff and the on-commit publishes rely on it: the channel
    # layer's in-memory queues belong to this loop.
    from asgiref.sync import async_to_sync

    settings.DB_TRIP_THREADS = 2

    async def which_loop():
        return asyncio.get_running_loop()

    assert await dbgate.db_trip(lambda: async_to_sync(which_loop)()) is asyncio.get_running_loop()
