"""The pool's check of a connection it lends: no round trip for a healthy idle connection, the
real check when the server has spoken (a restart's goodbye), an error for a closed one."""

import select

import psycopg
import pytest
from django.db import connection

from realestate.dbpool import check_connection

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def conn():
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as own:
        yield own


def test_an_idle_healthy_connection_passes_without_a_message_to_the_server(conn, monkeypatch):
    sent = []
    monkeypatch.setattr(psycopg.Connection, "execute", lambda self, *a, **k: sent.append(a))
    check_connection(conn)
    assert sent == []


def test_a_connection_the_server_ended_fails_the_check(conn):
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])
    # pg_terminate_backend returns before the backend is gone: wait (up to 10 s, it takes
    # milliseconds) until its FATAL message and the close reach the socket, as they have by
    # the time the pool lends a connection after a restart.
    select.select([conn.pgconn.socket], [], [], 10)
    with pytest.raises(psycopg.OperationalError):
        check_connection(conn)


def test_a_closed_connection_fails_the_check(conn):
    conn.close()
    with pytest.raises(psycopg.OperationalError):
        check_connection(conn)
