"""Fault benchmark: the LLM server, or PostgreSQL, fails for a window under steady load.

    .venv/bin/python bench/faults.py                        # every mode, a 30 s window each
    .venv/bin/python bench/faults.py --mode 503 hang --window 10 --visitors 20

A script, not a test: it prints a table of figures. Everything runs on loopback:

* the app is ``daphne realestate.asgi:application``, a real subprocess with the default
  settings (``TURN_BUDGET`` 2.5 s, the psycopg pool with ``DB_POOL_TIMEOUT`` 10 s);
* the LLM is ``agent.llm.standin.server.StandinServer`` at ``--latency-ms`` (300) per call, in a
  child process that the script tells when to fail (``StandinServer.outage``);
* the database is a fresh ``realestate_bench`` on the embedded PostgreSQL of ``.pgdata/``
  (``bench/turns.py``'s), except for the ``postgres`` mode, which stops and starts a PostgreSQL
  server of its own (``realestate.dev.devdb.SparePostgres``) and a daphne of its own on it.

Modes: ``down`` (the LLM server's port closed), ``hang`` (it accepts requests and never
answers), ``503``, ``429`` (with ``Retry-After: 1``), ``garbage`` (200 with content that is
not JSON), and ``postgres`` (PostgreSQL stopped). Per mode, V new visitors (``--visitors``)
each open a chat and ask a price question every ``--period`` seconds, or as soon as the reply
to the previous one has come if that took longer: ``--before`` seconds normal, ``--window``
seconds failing, ``--after`` seconds normal again. Open handoffs are resolved between modes.

Figures, for the turns in flight at some point of the window: how many; how many got an
answer within ``TURN_BUDGET`` + 0.5 s (the database's share); latency p50/p99/max from
sending to the reply or error frame; fallback replies; handoffs queued against conversations
with a fallback (one waits per conversation); error frames by code, and turns with no answer
within ``REPLY_TIMEOUT``. Then the time from the end of the window to the first normal answer
(``price``), how many turns sent after the window got one, and whether every message the
server acknowledged is stored exactly once.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil
import psycopg
from turns import (
    NO_ABUSE_LIMITS,
    ROOT,
    Run,
    bench_database,
    free_port,
    manage,
    open_chats,
    percentiles,
    raise_file_limit,
    started,
)

from agent.llm.standin.server import StandinServer
from realestate.dev.devdb import SparePostgres

LLM_MODES = ("down", "hang", "503", "429", "garbage")
MODES = (*LLM_MODES, "postgres")
QUESTION = "How much is listing 123456?"  # answered with route "price" when all is well
NORMAL = "price"
TURN_BUDGET = 2.5  # seconds, the app's default; the script does not change it
DATABASE_SHARE = 0.5  # seconds on top of the budget that still count as "within budget"
REPLY_TIMEOUT = 120.0  # seconds: a turn with no reply or error frame by then is an error


# ---------------------------------------------------------------------------------------------
# The stand-in, in a process of its own, told when to fail


def serve_standin(port: int, latency_ms: float, commands) -> None:
    """Child process: run the stand-in on ``port`` and apply each mode received on the pipe
    (``StandinServer.outage``) until "quit"; answer each with "ok"."""
    server = StandinServer(port=port, latency_ms=latency_ms).start()
    commands.send("ok")
    while (mode := commands.recv()) != "quit":
        server.outage(mode)
        commands.send("ok")
    server.stop()


class Standin:
    """The stand-in's child process and its command pipe."""

    def __init__(self, latency_ms: float):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        context = multiprocessing.get_context("spawn")
        self.commands, theirs = context.Pipe()
        self.process = context.Process(target=serve_standin,
                                       args=(self.port, latency_ms, theirs), daemon=True)
        self.process.start()
        self.commands.recv()

    def outage(self, mode: str | None) -> None:
        """Begin (``mode``) or end (None) an outage; returns once it is in force."""
        self.commands.send(mode)
        self.commands.recv()

    def close(self) -> None:
        self.commands.send("quit")
        self.process.join(timeout=15)


# ---------------------------------------------------------------------------------------------
# Visitors


@dataclass
class Turn:
    """One visitor message: when it was sent and done (``time.monotonic()``), the reply's
    route, the error frame's code, and whether the server echoed it (stored)."""

    client_id: str
    sent: float
    done: float | None = None
    route: str | None = None
    error: str | None = None
    stored: bool = False

    @property
    def latency(self) -> float | None:
        return None if self.done is None else self.done - self.sent


async def turn(socket_, record: Turn) -> None:
    """Send the visitor's message and read frames until its turn is over: ``typing: false``
    after a reply or ``turn_failed``, or a ``not_stored`` error."""
    await socket_.send(json.dumps({"type": "message", "text": QUESTION, "id": record.client_id}))
    while True:
        frame = json.loads(await asyncio.wait_for(socket_.recv(), REPLY_TIMEOUT))
        if frame["type"] == "message" and frame["role"] == "user":
            record.stored = True
        elif frame["type"] == "message" and frame["role"] == "assistant":
            record.route = frame["route"]
        elif frame["type"] == "error":
            record.error = frame["code"]
            if record.error == "not_stored":
                break
        elif frame == {"type": "typing", "active": False}:
            break
    record.done = time.monotonic()


async def visitor(number: int, socket_, period: float, until: float, turns: list[Turn]) -> None:
    """Ask the question every ``period`` seconds (or when the last reply came, if later)."""
    count = 0
    while time.monotonic() < until:
        count += 1
        record = Turn(f"v{number}-{count}-{time.time_ns()}", time.monotonic())
        turns.append(record)
        try:
            await turn(socket_, record)
        except Exception as exc:  # a timeout or a closed socket: this visitor stops
            record.error = f"no reply: {type(exc).__name__}"
            return
        await asyncio.sleep(max(0.0, record.sent + period - time.monotonic()))


# ---------------------------------------------------------------------------------------------
# One mode


@dataclass
class Result:
    """A mode's turns and the window's bounds (monotonic and wall-clock)."""

    mode: str
    turns: list[Turn] = field(default_factory=list)
    window: tuple[float, float] = (0.0, 0.0)
    wall: tuple[datetime, datetime] | None = None
    handoffs: int = 0
    stored_once: tuple[int, int] = (0, 0)  # (acknowledged messages stored once, acknowledged)
    worker_alive: bool = True


async def run_mode(mode: str, base_url: str, begin, end, args) -> Result:
    """V visitors for before + window + after seconds; ``begin()`` and ``end()`` start and
    stop the fault (in a thread: they block)."""
    result = Result(mode)
    sockets = await open_chats(base_url, args.visitors, Run(mode, args.visitors))
    start = time.monotonic()
    until = start + args.before + args.window + args.after
    load = [asyncio.create_task(visitor(i, s, args.period, until, result.turns))
            for i, s in enumerate(sockets)]
    await asyncio.sleep(args.before)
    await asyncio.to_thread(begin)
    opened, opened_wall = time.monotonic(), datetime.now(UTC)
    await asyncio.sleep(args.window)
    await asyncio.to_thread(end)
    result.window = (opened, time.monotonic())
    result.wall = (opened_wall, datetime.now(UTC))
    await asyncio.gather(*load)
    await asyncio.gather(*(s.close() for s in sockets))
    return result


def check_database(result: Result, database_url: str) -> None:
    """Count the handoffs queued in the window and the acknowledged messages stored once."""
    acknowledged = [t.client_id for t in result.turns if t.stored]
    with psycopg.connect(database_url, autocommit=True) as db:
        result.handoffs = db.execute(
            "SELECT count(*) FROM agent_handoff WHERE created_at >= %s AND created_at < %s",
            [result.wall[0], result.wall[1]],
        ).fetchone()[0]
        counts = dict(db.execute(
            "SELECT client_id, count(*) FROM agent_message WHERE client_id = ANY(%s) "
            "GROUP BY client_id", [acknowledged],
        ).fetchall())
        db.execute("UPDATE agent_handoff SET status = 'resolved', resolved_at = now() "
                   "WHERE status IN ('queued', 'claimed')")
    result.stored_once = (sum(1 for c in acknowledged if counts.get(c) == 1), len(acknowledged))


# ---------------------------------------------------------------------------------------------
# Figures


HEADER = ("| mode | turns during the window | answered ≤ budget + 0.5 s | p50 ms | p99 ms | max ms "
          "| fallbacks | handoffs queued / chats with a fallback | error frames | no reply "
          "| first normal answer after the window | normal after | stored once |")


def row(result: Result) -> str:
    """The mode's line of the table (Markdown)."""
    opened, closed = result.window
    during = [t for t in result.turns  # in flight at some point of the window
              if t.sent < closed and (t.done is None or t.done >= opened)]
    after = [t for t in result.turns if t.sent >= closed]
    within = [t for t in during
              if t.route is not None and t.latency <= TURN_BUDGET + DATABASE_SHARE]
    latencies = [t.latency * 1000 for t in during if t.latency is not None]
    p50, _, p99 = percentiles(latencies) if latencies else (0, 0, 0)
    fallbacks = [t for t in during if t.route == "fallback"]
    chats = {t.client_id.split("-")[0] for t in fallbacks}
    errors: dict[str, int] = {}
    for t in during:
        if t.error and not t.error.startswith("no reply"):
            errors[t.error] = errors.get(t.error, 0) + 1
    no_reply = sum(1 for t in result.turns if t.error and t.error.startswith("no reply"))
    first = min((t.done for t in result.turns
                 if t.route == NORMAL and t.done is not None and t.done >= closed), default=None)
    recovery = f"{first - closed:.1f} s" if first is not None else "never"
    normal_after = sum(1 for t in after if t.route == NORMAL)
    error_text = ", ".join(f"{n} {code}" for code, n in sorted(errors.items())) or "0"
    alive = "" if result.worker_alive else " (worker died)"
    return (f"| {result.mode}{alive} | {len(during)} | {len(within)} | {p50:,.0f} | {p99:,.0f} "
            f"| {max(latencies, default=0):,.0f} | {len(fallbacks)} "
            f"| {result.handoffs} / {len(chats)} | {error_text} | {no_reply} | {recovery} "
            f"| {normal_after} / {len(after)} | {result.stored_once[0]} / "
            f"{result.stored_once[1]} |")


# ---------------------------------------------------------------------------------------------
# Stacks


def prepare(database_url: str, env: dict) -> None:
    """Migrate the database and load the demo listings."""
    env = {**env, "DATABASE_URL": database_url}
    subprocess.run(manage("migrate", "--noinput", "-v", "0"), cwd=ROOT, env=env, check=True)
    subprocess.run(manage("seed_demo"), cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)


@contextmanager
def app(database_url: str, llm_url: str, env: dict, logs: Path):
    """daphne on a free port against ``database_url``; yields (base URL, its process)."""
    port = free_port()
    daphne = [str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1", "-p", str(port),
              "realestate.asgi:application"]
    app_env = {**env, "DATABASE_URL": database_url, "LLM_BASE_URL": llm_url}
    with started(daphne, app_env, port, logs / "daphne.log") as process:
        yield f"http://127.0.0.1:{port}", psutil.Process(process.pid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--window", type=float, default=30.0, help="seconds of failure")
    parser.add_argument("--before", type=float, default=5.0, help="seconds of normal load first")
    parser.add_argument("--after", type=float, default=15.0, help="seconds of normal load after")
    parser.add_argument("--visitors", type=int, default=10, help="chats at once")
    parser.add_argument("--period", type=float, default=1.0,
                        help="seconds between a visitor's questions")
    parser.add_argument("--latency-ms", type=float, default=300.0,
                        help="the stand-in's latency per call")
    args = parser.parse_args()

    raise_file_limit()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env |= {"DEBUG": "false", "LOG_LEVEL": "ERROR", **NO_ABUSE_LIMITS}
    logs = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    print(f"cores: {os.cpu_count()}; V = {args.visitors} visitors, a question every "
          f"{args.period:g} s; stand-in {args.latency_ms:g} ms per call; window "
          f"{args.window:g} s after {args.before:g} s, then {args.after:g} s; server logs: "
          f"{logs}", flush=True)
    results = []
    standin = Standin(args.latency_ms)
    try:
        llm_modes = [m for m in args.mode if m in LLM_MODES]
        if llm_modes:
            database_url = bench_database()
            prepare(database_url, env)
            with app(database_url, standin.base_url, env, logs) as (base_url, process):
                for mode in llm_modes:
                    result = asyncio.run(run_mode(
                        mode, base_url, lambda m=mode: standin.outage(m),
                        lambda: standin.outage(None), args))
                    result.worker_alive = process.is_running()
                    check_database(result, database_url)
                    results.append(result)
                    print(row(result), flush=True)
        if "postgres" in args.mode:
            spare = SparePostgres()
            try:
                prepare(spare.url, env)
                with app(spare.url, standin.base_url, env, logs) as (base_url, process):
                    result = asyncio.run(run_mode("postgres", base_url, spare.stop, spare.start,
                                                  args))
                    result.worker_alive = process.is_running()
                    check_database(result, spare.url)
                    results.append(result)
                    print(row(result), flush=True)
            finally:
                spare.close()
    finally:
        standin.close()
    print()
    print(HEADER)
    print("|" + " --- |" * (HEADER.count("|") - 1))
    for result in results:
        print(row(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
