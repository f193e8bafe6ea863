"""What the pieces of a turn cost at their floor: CPU per operation of the libraries a turn
goes through, each alone, in this process.

    .venv/bin/python -m realestate.dev.devdb .venv/bin/python bench/unitcosts.py [--n 3000]

A script, not a test: it prints one line per operation, ``cpu us`` being this process's
``time.process_time()`` (user + system) over N runs, divided by N. The database lines need
``DATABASE_URL`` (``realestate.dev.devdb`` gives the embedded server); the HTTP lines talk to a
minimal keep-alive HTTP/1.1 server on loopback in a subprocess (its CPU is not counted), which
answers every POST with a classifier's JSON answer.

What it is for: a turn's CPU (``bench/turns.py``) divided among its parts. A turn at C = 50
makes six LLM calls, two database trips, one transaction, six to ten statements, and sends
four websocket frames; multiplying these floors by those counts gives the part of a turn's
CPU that is the libraries' own (bench/README.md, "Issue 16, sixth round").
"""

import argparse
import asyncio
import contextvars
import multiprocessing
import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realestate.settings")

import aiohttp  # noqa: E402
import django  # noqa: E402

from realestate.dev.devserver import free_port  # noqa: E402
from realestate.dev.localkey import use_local_secret_key  # noqa: E402

use_local_secret_key()
django.setup()

from channels.db import DatabaseSyncToAsync  # noqa: E402
from django.db import close_old_connections, connection, transaction  # noqa: E402

from agent import dbgate  # noqa: E402

ANSWER = (
    b'{"choices":[{"message":{"content":'
    b'"{\\"is_price\\": true, \\"listing_id\\": \\"123456\\"}"}}]}'
)
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(ANSWER),
    ANSWER,
)
BODY = b'{"model":"m","stream":false,"messages":[{"role":"user","content":"How much is 123456?"}]}'


def serve(port: int) -> None:
    """A keep-alive HTTP/1.1 server answering every request with ``RESPONSE`` (subprocess)."""

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                writer.write(RESPONSE)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
        await server.serve_forever()

    asyncio.run(main())


def per_op(n: int, run) -> float:
    """Microseconds of CPU per call of ``run()`` over ``n`` calls, after a warm-up."""
    for _ in range(min(n, 50)):
        run()
    started = time.process_time()
    for _ in range(n):
        run()
    return (time.process_time() - started) / n * 1e6


async def per_op_async(n: int, batch: int, make) -> float:
    """Microseconds of CPU per awaitable of ``make()``, ``batch`` of them gathered at a time."""
    for _ in range(5):
        await asyncio.gather(*(make() for _ in range(batch)))
    started = time.process_time()
    for _ in range(n // batch):
        await asyncio.gather(*(make() for _ in range(batch)))
    return (time.process_time() - started) / (n // batch * batch) * 1e6


def database_lines(n: int) -> list[tuple[str, float]]:
    def django_statement():
        with connection.cursor() as cursor:
            cursor.execute("SELECT %s", [1])
            cursor.fetchall()

    def psycopg_statement():
        with connection.connection.cursor() as cursor:
            cursor.execute("SELECT %s", [1])
            cursor.fetchall()

    def trip_of_one():  # what every trip does around its work (CONN_MAX_AGE 0): the pool
        close_old_connections()
        django_statement()
        close_old_connections()

    def transaction_of_one():
        with transaction.atomic():
            django_statement()

    connection.ensure_connection()
    lines = [
        ("statement, Django's cursor (SELECT %s)", per_op(n, django_statement)),
        ("statement, psycopg's own cursor", per_op(n, psycopg_statement)),
    ]
    lines.append(("trip of one statement, extra", per_op(n, trip_of_one) - lines[0][1]))
    connection.ensure_connection()
    lines.append(
        ("transaction around a statement, extra", per_op(n, transaction_of_one) - lines[0][1])
    )
    return lines


async def hop_lines(n: int) -> list[tuple[str, float]]:
    executor = ThreadPoolExecutor(4)
    loop = asyncio.get_running_loop()

    def nothing():
        return None

    asgiref = await per_op_async(
        n, 10, lambda: DatabaseSyncToAsync(nothing, thread_sensitive=False, executor=executor)()
    )
    plain = await per_op_async(
        n, 10, lambda: loop.run_in_executor(executor, contextvars.copy_context().run, nothing)
    )
    ours = await per_op_async(n, 10, lambda: dbgate._hop(executor, nothing))
    executor.shutdown()
    return [
        ("thread hop, channels' DatabaseSyncToAsync", asgiref),
        ("thread hop, run_in_executor", plain),
        ("thread hop, agent.dbgate's", ours),
    ]


async def http_lines(n: int, port: int) -> list[tuple[str, float]]:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    lines = []
    for label, force_close in (("keep-alive", False), ("new connection each", True)):
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=force_close)
        )

        async def call(session=session):
            async with session.post(
                url, data=BODY, headers={"Content-Type": "application/json"}
            ) as response:
                await response.read()

        lines.append((f"aiohttp POST, 6 at once, {label}", await per_op_async(n, 6, call)))
        await session.close()
    loop = asyncio.get_running_loop()

    async def connect_and_close():
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        transport.close()

    lines.append(
        ("asyncio connect and close, no HTTP", await per_op_async(n, 1, connect_and_close))
    )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="runs of each operation")
    args = parser.parse_args()
    port = free_port()
    server = multiprocessing.Process(target=serve, args=(port,), daemon=True)
    server.start()
    for _ in range(100):  # until it listens
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    lines = database_lines(args.n)
    lines += asyncio.run(hop_lines(args.n))
    lines += asyncio.run(http_lines(args.n, port))
    server.terminate()
    print(f"{'operation':48s} {'cpu us':>8s}")
    for label, micros in lines:
        print(f"{label:48s} {micros:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
