"""Database connections stay bounded: requests in many threads share psycopg's pool instead of
each thread keeping a connection open (what ran PostgreSQL out of connections under daphne)."""

import threading

import psycopg
import pytest
from django.conf import settings
from django.core import signals
from django.db import connection

from listings.models import Listing

COUNT_BACKENDS = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"


def serve_request(done: threading.Event, served: threading.Barrier, errors: list) -> None:
    """One request as Django's handlers run it (request_started, ORM work, request_finished),
    in a thread that outlives the request as a server's worker thread does."""
    signals.request_started.send(sender=__name__)
    try:
        Listing.objects.count()
    except Exception as exc:  # the test fails on it below, in the main thread
        errors.append(exc)
    finally:
        signals.request_finished.send(sender=__name__)
    served.wait()
    done.wait()


@pytest.mark.django_db
def test_requests_in_many_threads_share_a_bounded_number_of_connections():
    threads_count = 4 * settings.DB_POOL_MAX_SIZE + 20
    bound = settings.DB_POOL_MAX_SIZE + 2  # + a connection or two made outside the pool
    peak, sampling = 0, threading.Event()
    params = connection.get_connection_params()

    def sample() -> None:
        nonlocal peak
        with psycopg.connect(**params, autocommit=True) as own:  # counted once, then removed
            while not sampling.is_set():
                peak = max(peak, own.execute(COUNT_BACKENDS).fetchone()[0] - 1)
                sampling.wait(0.005)

    done, served, errors = threading.Event(), threading.Barrier(threads_count + 1), []
    sampler = threading.Thread(target=sample)
    threads = [
        threading.Thread(target=serve_request, args=(done, served, errors))
        for _ in range(threads_count)
    ]
    sampler.start()
    try:
        for thread in threads:
            thread.start()
        served.wait(timeout=60)  # every request has finished; its thread is still alive
        with connection.cursor() as cursor:
            cursor.execute(COUNT_BACKENDS)
            (after,) = cursor.fetchone()
    finally:
        done.set()
        sampling.set()
        for thread in [*threads, sampler]:
            thread.join(timeout=60)
    assert not errors
    assert after <= bound, f"{after} connections open after {threads_count} requests"
    assert peak <= bound, f"{peak} connections at once during {threads_count} requests"
