"""Slow clients against daphne: what daphne (Twisted, autobahn) does with connections that send
their request a byte at a time, or nothing, and what holding them costs.

    .venv/bin/python bench/slowloris.py [--connections 1000] [--trickle 50]

A script, not a test: it prints figures, in about three minutes. It starts
``daphne realestate.asgi:application`` as production runs it, on a free loopback port, against
a fresh ``realestate_bench`` database (``bench/turns.py``), and measures at once:

* ``idle``: a connection that sent half a request (request line, a header begun), then
  nothing: seconds until daphne closes it;
* ``trickle``: one that sends one more header byte every ``--trickle`` seconds: is it still
  open after three of them?
* ``no pong``: a websocket that opens, then never sends a byte again, not even the pongs
  the server's pings ask for: seconds until daphne drops it;
* ``held``: ``--connections`` connections holding half a request each: daphne's memory and
  open files with them, and ``GET /`` meanwhile.
"""

import argparse
import base64
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
from turns import ROOT, bench_database, free_port, manage, raise_file_limit, started

HALF_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


def seconds_until_closed(sock: socket.socket, started_at: float, limit: float) -> float | None:
    """Read (and drop) whatever the server sends until it closes; the seconds since
    ``started_at``, or None if it was still open after ``limit`` seconds."""
    sock.settimeout(1)
    while time.monotonic() - started_at < limit:
        try:
            if not sock.recv(65536):
                return time.monotonic() - started_at
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started_at
    return None


def idle(port: int, results: dict) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(HALF_REQUEST)
    results["idle"] = seconds_until_closed(sock, time.monotonic(), 300)
    sock.close()


def trickle(port: int, every: float, results: dict) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(HALF_REQUEST)
    started_at = time.monotonic()
    for n in range(1, 4):
        closed = seconds_until_closed(sock, time.monotonic(), every)
        if closed is not None:
            results["trickle"] = f"closed after {time.monotonic() - started_at:.0f} s"
            sock.close()
            return
        try:
            sock.sendall(b"z")
        except OSError:
            results["trickle"] = f"closed before byte {n}"
            return
    results["trickle"] = f"still open after {time.monotonic() - started_at:.0f} s ({n} bytes)"
    sock.close()


def no_pong(base_url: str, port: int, results: dict) -> None:
    token = httpx.post(base_url + "/chat/session", json={"token": None},
                       headers={"Origin": base_url}).json()["token"]
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws/chat/?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\nOrigin: {base_url}\r\n\r\n".encode()
    )
    results["no pong"] = seconds_until_closed(sock, time.monotonic(), 300)
    sock.close()


def held(base_url: str, port: int, server: psutil.Process, count: int) -> None:
    """Open ``count`` half requests, report daphne's memory and files, and GET / meanwhile."""
    time.sleep(1)
    rss_before, files_before = server.memory_info().rss, server.num_fds()
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(HALF_REQUEST)
        sockets.append(sock)
        if len(sockets) % 50 == 0:
            time.sleep(0.05)  # twisted listens with a backlog of 50
    time.sleep(2)
    rss, files = server.memory_info().rss, server.num_fds()
    started_at = time.perf_counter()
    status = httpx.get(base_url + "/", timeout=30).status_code
    get_ms = (time.perf_counter() - started_at) * 1000
    print(f"held: {count} half requests: daphne RSS {rss_before / 2**20:.1f} -> "
          f"{rss / 2**20:.1f} MiB ({(rss - rss_before) / count / 1024:.1f} KiB each), "
          f"open files {files_before} -> {files}; GET / meanwhile: {status} in {get_ms:.0f} ms",
          flush=True)
    for sock in sockets:
        sock.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--trickle", type=float, default=50, metavar="SECONDS")
    args = parser.parse_args()

    limit = raise_file_limit()
    env = {**os.environ, "DATABASE_URL": bench_database(), "DEBUG": "false",
           "LOG_LEVEL": "WARNING"}
    subprocess.run(manage("migrate", "--noinput", "-v", "0"), cwd=ROOT, env=env, check=True)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    daphne = [str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1", "-p", str(port),
              "realestate.asgi:application"]
    log = Path(tempfile.mkdtemp(prefix="bench-slowloris-")) / "daphne.log"
    print(f"open-file limit: {limit}; daphne log: {log}", flush=True)
    results: dict = {}
    with started(daphne, env, port, log) as process:
        threads = [
            threading.Thread(target=idle, args=(port, results)),
            threading.Thread(target=trickle, args=(port, args.trickle, results)),
            threading.Thread(target=no_pong, args=(base_url, port, results)),
        ]
        for thread in threads:
            thread.start()
        held(base_url, port, psutil.Process(process.pid), args.connections)
        for thread in threads:
            thread.join()
    idle_s, pong_s = results.get("idle"), results.get("no pong")
    print(f"idle: half a request, then nothing: closed after "
          f"{f'{idle_s:.0f} s' if idle_s else 'more than 300 s'}")
    print(f"trickle: a header byte every {args.trickle:.0f} s: {results.get('trickle')}")
    print(f"no pong: a websocket that sends nothing: dropped after "
          f"{f'{pong_s:.0f} s' if pong_s else 'more than 300 s'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
