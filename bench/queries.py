"""Database work per chat turn: SQL queries and thread hops of the async ORM.

    .venv/bin/python bench/queries.py [--sql]

Runs one visitor's conversation through ``realestate.asgi.application`` in this process (the
websocket as channels' ``WebsocketCommunicator`` sees it), against the stand-in on loopback
and a fresh ``realestate_queries`` database on the embedded PostgreSQL (or ``DATABASE_URL``),
and prints, per turn and route:

* queries: SQL statements Django executed (every connection, every thread);
* hops: calls that moved from the event loop to a database thread and back
  (``database_sync_to_async``, or ``agent.dbgate``'s trip threads);
* round trips: messages psycopg sent PostgreSQL and waited for (``Connection.wait``): every
  statement, ``BEGIN`` and ``COMMIT``, and the pool's health check of a connection it lends,
  which Django's count of queries does not see (switching autocommit is local: not counted).
"""

import argparse
import asyncio
import os
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from realestate.dev import devdb  # noqa: E402

DATABASE = "realestate_queries"
MESSAGES = (
    "How much is listing 123456?",
    "Does 654321 have a garden?",
    "Can I book a call with an agent?",
    "Hello there!",
)

counts: Counter = Counter()
statements: list[str] = []


def count_query(execute, sql, params, many, context):
    """A Django execute wrapper: count and remember each statement."""
    counts["queries"] += 1
    statements.append(sql)
    return execute(sql, params, many, context)


def instrument() -> None:
    """Count queries on every connection, and hops, from now on."""
    from channels.db import DatabaseSyncToAsync
    from django.db.backends.signals import connection_created

    connection_created.connect(
        lambda sender, connection, **kwargs: count_query in connection.execute_wrappers
        or connection.execute_wrappers.append(count_query),
        weak=False,
    )
    thread_handler = DatabaseSyncToAsync.thread_handler

    def counted_hop(self, *args, **kwargs):
        counts["hops"] += 1
        return thread_handler(self, *args, **kwargs)

    DatabaseSyncToAsync.thread_handler = counted_hop

    from agent import dbgate

    on_trip_thread = dbgate._on_trip_thread

    def counted_trip(*args):
        counts["hops"] += 1
        return on_trip_thread(*args)

    dbgate._on_trip_thread = counted_trip

    import psycopg

    wait = psycopg.Connection.wait

    def counted_wait(self, gen, *args, **kwargs):
        kind = getattr(gen, "__qualname__", "")
        if kind.endswith(("_commit_gen", "_rollback_gen")):
            counts["round trips"] += 2  # the BEGIN psycopg sent before the first statement, too
        elif not kind.endswith("_set_autocommit_gen"):  # local: no message to the server
            counts["round trips"] += 1
        return wait(self, gen, *args, **kwargs)

    psycopg.Connection.wait = counted_wait


async def conversation(show_sql: bool) -> None:
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.conf import settings
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connections

    from agent.llm.client import close_clients
    from realestate.asgi import application

    session = SessionStore()
    session["chat"] = True
    await database_sync_to_async(session.save)()
    headers = [(b"cookie", f"{settings.SESSION_COOKIE_NAME}={session.session_key}".encode()),
               (b"origin", b"http://localhost")]
    await database_sync_to_async(connections.close_all)()
    counts.clear()
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    await communicator.receive_json_from()
    print(f"{'connect':<34} {'':<20} {dict(counts)}")
    for text in MESSAGES:
        counts.clear()
        statements.clear()
        await communicator.send_json_to({"type": "message", "text": text})
        route = None
        while (frame := await communicator.receive_json_from(timeout=10)) != {
            "type": "typing", "active": False
        }:
            route = frame.get("route", route)
        print(f"{text:<34} {route:<20} {dict(counts)}")
        if show_sql:
            for sql in statements:
                print(f"    {sql[:110]}")
    await communicator.disconnect()
    await close_clients()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sql", action="store_true", help="print each turn's statements")
    args = parser.parse_args()
    devdb.bench_django(DATABASE, DEBUG="false")
    from django.conf import settings
    from django.core.management import call_command

    from agent.llm.standin.server import StandinServer

    call_command("seed_demo", stdout=open(os.devnull, "w"))
    instrument()
    with StandinServer() as standin:
        settings.LLM_BASE_URL = standin.base_url
        asyncio.run(conversation(args.sql))
    return 0


if __name__ == "__main__":
    sys.exit(main())
