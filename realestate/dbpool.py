"""The connection pool's check of a connection it lends, without a round trip when it can.

psycopg_pool's ``ConnectionPool.check_connection`` sends an empty query to PostgreSQL before
every checkout: a round trip per database trip (8% of the database thread under load, issue
16). An idle connection has nothing to read, so a socket with something to read means the
server spoke first: it ended the connection (a restart sends FATAL 57P01, then closes) or sent
an unsolicited message. Only then, or when libpq already marks the connection bad, does this
check make the real round trip, which fails for a dead connection and lets the pool replace it.

Django builds the pool itself and passes ``ConnectionPool.check_connection`` when
``CONN_HEALTH_CHECKS`` is on, with no way to name another check; ``install()`` swaps this one in
on the pool the first time a connection is made (``connection_created``).

What it cannot see: a connection whose server vanished without closing it (a network cut):
its next statement fails with an ``OperationalError``, as it would after a check that passed
a moment before the cut; ``agent.dbgate`` then fails the following trips fast.
"""

import select

from psycopg import OperationalError, pq
from psycopg_pool import ConnectionPool


def check_connection(conn) -> None:
    """Return quietly if ``conn`` (an idle psycopg connection) looks usable; else raise.

    Raises:
        psycopg.OperationalError: the connection is closed, broken, or failed the real check.
    """
    if conn.closed or conn.broken:
        raise OperationalError("the connection is closed")
    if conn.pgconn.status != pq.ConnStatus.OK:
        ConnectionPool.check_connection(conn)
        return
    readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    if readable:
        ConnectionPool.check_connection(conn)


def _swap_check(sender, connection, **kwargs) -> None:
    pool = getattr(connection, "pool", None)
    if pool is not None and getattr(pool, "_check", None) is ConnectionPool.check_connection:
        pool._check = check_connection  # psycopg_pool 3.2's attribute for its ``check`` argument


def install() -> None:
    """Check pooled connections with ``check_connection`` from the next one lent on (call
    once, from an ``AppConfig.ready``)."""
    from django.db.backends.signals import connection_created

    connection_created.connect(_swap_check, dispatch_uid="realestate.dbpool")
