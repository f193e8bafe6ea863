"""Load and fault runs of the app as one or several workers: figures, not a test.

    .venv/bin/python bench/load.py                     # turns, every setup, C = 500: ~6 min
    .venv/bin/python bench/load.py --scenario turns --setup nginx-2 --chats 50 500 1000
    .venv/bin/python bench/load.py --scenario idle --setup alone nginx-2 --idle-chats 5000
    .venv/bin/python bench/load.py --scenario kill --kill-chats 200 [--restart-after 3]

Setups, each against the LLM stand-in (``--latency-ms``, 300 by default, for every call):

* ``alone``: one ``daphne`` process and the in-memory channel layer, as ``make run``;
* ``nginx-1``: one worker behind nginx, channel layer on Redis (``realestate.dev.scaled.Cluster``);
* ``nginx-2``: two workers behind nginx on Redis, as ``make run-scaled``.

Scenarios:

* ``turns``: C visitors (``bench.visitors.Visitor``: a token from ``/chat/session``, then
  the websocket, as the widget) open their chats 50 at a time, then all send T messages, each
  after the previous one's answer. Figures: turns/s, p50/p99 from sending a message to its
  answer, errors (error frames, sockets closed under a visitor, answers missing after 60 s,
  whose visitor then leaves, chats that did not open), the share of answers routed
  ``fallback`` (every message asks for something the router answers, so a fallback means the
  turn budget ran out), CPU ms per turn of each process group and of the rest of the machine
  (``others``: other people's work), and the peak of the bench database's connections;
* ``idle``: N chats opened and held without turns: RSS per chat of the workers, nginx, Redis;
* ``kill``: ``nginx-2`` with C visitors of T turns; worker 0 gets SIGKILL once ``--kill-at``
  of the turns are answered (and is started again after ``--restart-after`` s if given). The
  visitors reconnect (through nginx, to the worker left) and resend what they have not seen
  stored, as the widget does. Then the database is checked: each message stored once, and
  each visitor message answered or met by an error frame.

Processes come from ``bench/turns.py`` (the ``realestate_bench`` database on the embedded
PostgreSQL, the stand-in's launcher); Redis is a private ``redis-server`` on a free port. The
load client is this process, one event loop: it shares the 2 cores with everything else, so
its CPU (and the stand-in's) is printed too. The load average is printed before each run.
Each run starts with no open handoff (``clear_staff_queue``).
"""

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg
import turns  # bench/turns.py: processes and figures shared with the single-process bench
from turns import MIXED_MESSAGES, OPEN_AT_ONCE, REPLY_TIMEOUT, percentiles

ROOT = turns.ROOT
SETUPS = {
    "alone": "1 worker, daphne alone, in-memory layer",
    "nginx-1": "1 worker behind nginx, Redis layer",
    "nginx-2": "2 workers behind nginx, Redis layer",
}
# Every message asks for something the router answers (a price, a question about a listing
# for staff, a call) so a ``fallback`` reply means the turn ran out of budget or calls failed.
LOAD_MESSAGES = MIXED_MESSAGES[:3]
GROUPS = ("workers", "nginx", "redis", "postgres", "stand-in", "client")


# ---------------------------------------------------------------------------------------------
# Measuring processes


class Sampler(threading.Thread):
    """CPU time of process groups and the bench database's connections, sampled every 0.5 s
    from ``start()`` until ``stop()``.

    Args:
        groups: group name -> a function returning the group's processes now (children of
            nginx and PostgreSQL come and go: a process first seen after the start counts
            from 0; one that exits keeps its last sampled time).
        database_url: the database whose ``pg_stat_activity`` rows are counted.
    """

    def __init__(self, groups: dict, database_url: str):
        super().__init__(daemon=True)
        self.groups = groups
        self.database_url = database_url
        self.base: dict[tuple, float] = {}
        self.last: dict[tuple, float] = {}
        self.connections_peak = self.in_use_peak = 0
        self._done = threading.Event()
        self._first = True

    def start(self) -> None:
        self._db = psycopg.connect(self.database_url, autocommit=True)
        self._machine = busy_seconds()
        self.sample()
        self._first = False
        super().start()

    def run(self) -> None:
        while not self._done.wait(0.5):
            self.sample()

    def stop(self) -> None:
        self._done.set()
        self.join()
        self.sample()
        self._db.close()
        self.machine_ms = (busy_seconds() - self._machine) * 1000

    def sample(self) -> None:
        for name, find in self.groups.items():
            for process in find():
                try:
                    times = process.cpu_times()
                    key = (name, process.pid, process.create_time())
                except psutil.Error:
                    continue
                seconds = times.user + times.system
                self.base.setdefault(key, seconds if self._first else 0.0)
                self.last[key] = seconds
        count, in_use = self._db.execute(
            "SELECT count(*), count(*) FILTER (WHERE state <> 'idle') FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
        self.connections_peak = max(self.connections_peak, count)
        self.in_use_peak = max(self.in_use_peak, in_use)

    def cpu_ms(self) -> dict[str, float]:
        """CPU ms (user + system) per group since ``start()``."""
        spent = dict.fromkeys(self.groups, 0.0)
        for key, seconds in self.last.items():
            spent[key[0]] += (seconds - self.base[key]) * 1000
        return spent


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent on anything but idling, since boot."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def tree(pid: int | None) -> list[psutil.Process]:
    """The process ``pid`` and its descendants; empty when it is gone or None."""
    if pid is None:
        return []
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def rss(processes: list[psutil.Process]) -> int:
    """Their resident memory, bytes."""
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            pass
    return total


def postmaster_pid(database_url: str) -> int | None:
    """The PostgreSQL server's main process, when it runs on this machine."""
    with psycopg.connect(database_url) as conn:  # ask while the backend lives
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        try:
            return psutil.Process(backend).ppid()
        except psutil.Error:
            return None


def clear_staff_queue() -> int:
    """Resolve every open handoff, as staff who cleared the queue: each run starts alike.

    Every handoff queued during a turn counts the open ones (``agent.staff.handoffs.
    queue_counts``); runs differ less when none is open at the start. Returns how many were open.
    """
    from django.db import connections
    from django.utils import timezone

    from agent.models import Handoff

    resolved = Handoff.objects.exclude(status=Handoff.Status.RESOLVED).update(
        status=Handoff.Status.RESOLVED, resolved_at=timezone.now()
    )
    connections.close_all()
    return resolved


def load_average() -> str:
    return "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


# ---------------------------------------------------------------------------------------------
# The app, per setup


@dataclass
class Stack:
    """A running setup: the URL visitors use, the workers' own URLs (``/metrics``), the
    process groups to measure, and the cluster (None for ``alone``)."""

    setup: str
    url: str
    worker_urls: list[str]
    groups: dict
    cluster: object = None


@contextmanager
def running(setup: str, env: dict, folder: Path, redis, shared: dict):
    """Start ``setup``; ``shared`` holds the groups common to every setup (Redis, PostgreSQL,
    the stand-in, the client). Yields a ``Stack``; stops it at the end."""
    from realestate.dev.devserver import free_port
    from realestate.dev.scaled import Cluster, worker_command

    if setup == "alone":
        port = free_port()
        with turns.started(worker_command(port), env, port, folder / "alone.log") as worker:
            groups = {"workers": lambda: tree(worker.pid), "nginx": list, **shared}
            yield Stack(setup, f"http://127.0.0.1:{port}", [f"http://127.0.0.1:{port}"], groups)
        return
    count = 1 if setup == "nginx-1" else 2
    cluster = Cluster(free_port(), [free_port() for _ in range(count)],
                      {**env, "REDIS_URL": redis.url}, folder / setup)
    cluster.start()
    try:
        groups = {
            "workers": lambda: [p for w in cluster.workers if w for p in tree(w.pid)],
            "nginx": lambda: tree(cluster.nginx.pid),
            **shared,
        }
        yield Stack(setup, cluster.url, [f"http://127.0.0.1:{p}" for p in cluster.worker_ports],
                    groups, cluster)
    finally:
        cluster.stop()


# ---------------------------------------------------------------------------------------------
# Visitors


@dataclass
class Crowd:
    """Visitors whose chats opened, and why the others did not."""

    visitors: list = field(default_factory=list)
    failures: Counter = field(default_factory=Counter)


async def open_crowd(url: str, count: int, at_once: int = OPEN_AT_ONCE) -> Crowd:
    """Start ``count`` visitors, ``at_once`` at a time, each from its own loopback address
    (8 visitors per address, under nginx's per-address limits)."""
    from bench.visitors import Visitor, source_address

    gate = asyncio.Semaphore(at_once)
    crowd = Crowd()

    async def one(index: int) -> None:
        visitor = Visitor(url, source=source_address(index))
        async with gate:
            try:
                await visitor.start()
            except Exception as exc:  # counted and shown; the run goes on
                crowd.failures[repr(exc)[:120]] += 1
                return
        crowd.visitors.append(visitor)

    await asyncio.gather(*(one(i) for i in range(count)))
    return crowd


async def converse(visitor, index: int, count: int, wait: float, failures: Counter,
                   go_on: bool = False) -> None:
    """``count`` messages, each sent after the answer to the one before. Without an answer
    within ``wait`` s the visitor leaves, or with ``go_on`` sends the next one (its answer
    could then be taken for the late one's: the timings are the turns scenario's job)."""
    from bench.visitors import VisitorGaveUp

    for number in range(count):
        try:
            said = await visitor.say(LOAD_MESSAGES[(index + number) % len(LOAD_MESSAGES)], wait)
        except VisitorGaveUp as exc:
            failures[repr(exc)[:120]] += 1
            return
        if not said.done and not go_on:
            return


async def close_crowd(crowd: Crowd) -> None:
    await asyncio.gather(*(v.close() for v in crowd.visitors), return_exceptions=True)


# ---------------------------------------------------------------------------------------------
# Scenarios


HEADER = (f"{'setup':<8} {'chats':>5} {'turns':>6} {'errors':>6} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'turns/s':>7} {'fallback':>8} | cpu ms/turn: {' '.join(f'{g:>8}' for g in GROUPS)} "
          f"{'total':>6} {'others':>6} | db conns peak (in use)")


async def turns_run(stack: Stack, chats: int, count: int, database_url: str) -> str:
    """One row of the turns table (and lines about failures after it)."""
    crowd = await open_crowd(stack.url, chats)
    sampler = Sampler(stack.groups, database_url)
    sampler.start()
    started_at = time.perf_counter()
    gave_up: Counter = Counter()
    await asyncio.gather(*(converse(v, i, count, REPLY_TIMEOUT, gave_up)
                           for i, v in enumerate(crowd.visitors)))
    wall = time.perf_counter() - started_at
    sampler.stop()
    await close_crowd(crowd)
    said = [s for v in crowd.visitors for s in v.said]
    answered = [s for s in said if s.route is not None]
    frames = Counter(s.error for s in said if s.error is not None)
    missing = sum(1 for s in said if not s.done)
    closed = sum(v.closes for v in crowd.visitors)
    not_opened = sum(crowd.failures.values())
    errors = sum(frames.values()) + missing + closed + not_opened + sum(gave_up.values())
    fallback = sum(1 for s in answered if s.route == "fallback")
    cpu = sampler.cpu_ms()
    per_turn = [cpu[g] / max(1, len(answered)) for g in GROUPS]
    if answered:
        p50, _, p99 = percentiles([s.latency_ms for s in answered])
        figures = f"{p50:7.0f} {p99:7.0f} {len(answered) / wall:7.1f}"
    else:
        figures = f"{'-':>7} {'-':>7} {'-':>7}"
    row = (f"{stack.setup:<8} {chats:>5} {len(answered):>6} {errors:>6} {figures} "
           f"{fallback / max(1, len(answered)):8.0%} | {'':12}"
           f"{' '.join(f'{c:8.1f}' for c in per_turn)} {sum(per_turn):6.1f} "
           f"{(sampler.machine_ms - sum(cpu.values())) / max(1, len(answered)):6.1f} | "
           f"{sampler.connections_peak} ({sampler.in_use_peak})")
    notes = []
    if errors:
        notes.append(f"  errors: error frames {dict(frames)}, sockets closed {closed}, "
                     f"answers missing {missing}, chats not opened {not_opened}, "
                     f"gave up {sum(gave_up.values())}")
    for failure, times in (crowd.failures + gave_up).most_common(5):
        notes.append(f"  {times} x {failure}")
    routes = Counter(s.route for s in answered)
    busy = sum(s.busy for s in answered)
    notes.append(f"  routes: {dict(routes.most_common())}, after {busy} busy replies; "
                 f"wall {wall:.1f} s, machine busy "
                 f"{sampler.machine_ms / 1000 / wall:.2f} of {os.cpu_count()} cores; "
                 f"classifier calls not ok (/metrics): "
                 f"{sum([await turns.classifier_failures(u) for u in stack.worker_urls])}")
    return "\n".join([row, *notes])


async def idle_run(stack: Stack, chats: int) -> str:
    """Open ``chats`` chats and hold them: memory per chat of the workers, nginx and Redis."""
    warm = await open_crowd(stack.url, 1)
    for visitor in warm.visitors:
        await visitor.say(LOAD_MESSAGES[0], REPLY_TIMEOUT)
    await asyncio.sleep(1)
    measured = ("workers", "nginx", "redis")
    before = {g: rss(stack.groups[g]()) for g in measured}
    started_at = time.perf_counter()
    crowd = await open_crowd(stack.url, chats)
    opening = time.perf_counter() - started_at
    await asyncio.sleep(2)
    after = {g: rss(stack.groups[g]()) for g in measured}
    files = sum(p.num_fds() for p in stack.groups["workers"]())
    opened = len(crowd.visitors)
    per_chat = {g: (after[g] - before[g]) / max(1, opened) / 1024 for g in measured}
    lines = [
        f"{stack.setup}: {opened} chats open, {sum(crowd.failures.values())} failed, opened in "
        f"{opening:.0f} s ({opened / opening:.0f}/s); workers' open files {files}",
        "  RSS MiB before -> with the chats open (KiB per chat): " + "; ".join(
            f"{g} {before[g] / 2**20:.1f} -> {after[g] / 2**20:.1f} ({per_chat[g]:.1f})"
            for g in measured
        ) + f"; total {sum(per_chat.values()):.1f} KiB per chat",
    ]
    for failure, times in crowd.failures.most_common(5):
        lines.append(f"  {times} x {failure}")
    latencies = []
    for visitor in crowd.visitors[::max(1, opened // 10)]:  # 10 turns, one at a time
        said = await visitor.say(LOAD_MESSAGES[0], REPLY_TIMEOUT)
        latencies.append(said.latency_ms if said.route else float("inf"))
    if latencies:
        lines.append(f"  {len(latencies)} turns one at a time meanwhile: p50 "
                     f"{percentiles(latencies)[0]:.0f} ms, max {max(latencies):.0f} ms")
    await close_crowd(crowd)
    await close_crowd(warm)
    return "\n".join(lines)


async def kill_run(stack: Stack, chats: int, count: int, kill_at: float,
                   restart_after: float | None, wait: float) -> tuple[Crowd, list[str]]:
    """The kill scenario's run; returns the visitors (for the database check) and lines."""
    crowd = await open_crowd(stack.url, chats)
    total = len(crowd.visitors) * count
    gave_up: Counter = Counter()
    lines = []

    async def killer() -> None:
        while sum(s.done for v in crowd.visitors for s in v.said) < kill_at * total:
            await asyncio.sleep(0.05)
        done = sum(s.done for v in crowd.visitors for s in v.said)
        stack.cluster.kill_worker(0)
        lines.append(f"worker 0 killed (SIGKILL) after {done} of {total} turns answered, at "
                     f"{time.perf_counter() - started_at:.1f} s")
        if restart_after is not None:
            await asyncio.sleep(restart_after)
            await asyncio.to_thread(stack.cluster.start_worker, 0)
            lines.append(f"worker 0 started again {restart_after:g} s later")

    started_at = time.perf_counter()
    killing = asyncio.create_task(killer())
    await asyncio.gather(*(converse(v, i, count, wait, gave_up, go_on=True)
                           for i, v in enumerate(crowd.visitors)))
    if not killing.done():
        killing.cancel()
        lines.append("the run ended before the kill: lower --kill-at")
    wall = time.perf_counter() - started_at
    await close_crowd(crowd)
    said = [s for v in crowd.visitors for s in v.said]
    latencies = [s.latency_ms for s in said if s.route is not None]
    p50, _, p99 = percentiles(latencies) if latencies else (0, 0, 0)
    lines += [
        f"{len(crowd.visitors)} chats x {count} turns in {wall:.1f} s; "
        f"{sum(crowd.failures.values())} chats not opened; gave up: {sum(gave_up.values())}",
        f"answers seen by the visitors: {len(latencies)} (p50 {p50:.0f} ms, p99 {p99:.0f} ms); "
        f"error frames {sum(s.error is not None for s in said)}; "
        f"no answer within {wait:g} s: {sum(not s.done for s in said)}",
        f"visitors whose socket closed: {sum(v.closes > 0 for v in crowd.visitors)}; "
        f"reconnects {sum(v.reconnects for v in crowd.visitors)}; "
        f"resends {sum(v.resends for v in crowd.visitors)}",
    ]
    return crowd, lines


def kill_report(crowd: Crowd) -> list[str]:
    """The database check after the kill run."""
    from django.db import connections

    from bench.visitors import check_delivery

    delivery = check_delivery(crowd.visitors)
    connections.close_all()
    lines = [
        f"database: {delivery.sent} messages sent, {delivery.stored_once} stored once, "
        f"duplicates {delivery.duplicates}, lost {delivery.lost}, stored under an unknown id "
        f"{delivery.unknown}",
        f"visitor messages answered {delivery.answered}, met by an error frame "
        f"{delivery.error_answered}, unanswered {len(delivery.unanswered)}",
    ]
    for conversation, seq, text in delivery.unanswered[:10]:
        lines.append(f"  unanswered: conversation {conversation} seq {seq}: {text!r}")
    return lines


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", nargs="+", choices=["turns", "idle", "kill"],
                        default=["turns"])
    parser.add_argument("--setup", nargs="+", choices=list(SETUPS), default=list(SETUPS),
                        help="setups for turns and idle (kill always runs nginx-2)")
    parser.add_argument("--chats", type=int, nargs="+", default=[500], metavar="C")
    parser.add_argument("--turns", type=int, default=5, metavar="T", help="per visitor")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each turns row")
    parser.add_argument("--idle-chats", type=int, default=5000)
    parser.add_argument("--kill-chats", type=int, default=200)
    parser.add_argument("--kill-at", type=float, default=0.3,
                        help="share of the turns answered when worker 0 is killed")
    parser.add_argument("--restart-after", type=float, default=None, metavar="S")
    parser.add_argument("--answer-wait", type=float, default=30.0, metavar="S",
                        help="kill: seconds a visitor waits for an answer (orphaned turns are "
                        "resumed after TURN_BUDGET + DB_POOL_TIMEOUT)")
    parser.add_argument("--latency-ms", type=float, default=300.0,
                        help="the stand-in's latency per call")
    args = parser.parse_args()

    limit = turns.raise_file_limit()
    database_url = turns.bench_database()
    env = {**os.environ, "DATABASE_URL": database_url, "DEBUG": "false",
           "LOG_LEVEL": "WARNING", "METRICS_ALLOWED_IPS": "127.0.0.1,::1",
           **turns.NO_ABUSE_LIMITS}
    env.pop("REDIS_URL", None)
    os.environ.update(DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="realestate.settings")
    import django

    django.setup()
    from realestate.dev.devserver import free_port
    from realestate.dev.localredis import RedisProcess

    subprocess.run(turns.manage("migrate", "--noinput", "-v", "0"), cwd=ROOT, env=env,
                         check=True)
    subprocess.run(turns.manage("seed_demo"), cwd=ROOT, env=env, check=True,
                         stdout=subprocess.DEVNULL)
    folder = Path(tempfile.mkdtemp(prefix="bench-load-"))
    print(f"cores: {os.cpu_count()}; open-file limit: {limit}; logs: {folder}", flush=True)
    standin_port = free_port()
    standin_command = [sys.executable, "-c", turns.STANDIN_LAUNCHER, "--port",
                       str(standin_port), "--latency-ms", f"{args.latency_ms:g}"]
    redis = RedisProcess(free_port(), folder / "redis")
    redis.start()
    postmaster = postmaster_pid(database_url)
    try:
        with turns.started(standin_command, env, standin_port, folder / "standin.log") as llm:
            env["LLM_BASE_URL"] = f"http://127.0.0.1:{standin_port}/v1"
            shared = {
                "redis": lambda: tree(redis.process.pid if redis.process else None),
                "postgres": lambda: tree(postmaster),
                "stand-in": lambda: tree(llm.pid),
                "client": lambda: [psutil.Process()],
            }
            for scenario in args.scenario:
                run_scenario(scenario, args, env, folder, redis, shared, database_url)
    finally:
        redis.stop()
    shutil.rmtree(folder)  # kept when something failed
    return 0


def run_scenario(scenario: str, args, env: dict, folder: Path, redis, shared: dict,
                 database_url: str) -> None:
    if scenario == "turns":
        print(f"\n## turns: {args.turns} per visitor, stand-in {args.latency_ms:g} ms per call",
              flush=True)
        print(HEADER, flush=True)
        for setup in args.setup:
            with running(setup, env, folder, redis, shared) as stack:
                for chats in args.chats:
                    for _ in range(args.repeat):
                        clear_staff_queue()
                        print(f"# {SETUPS[setup]}, C = {chats}; {load_average()}", flush=True)
                        print(asyncio.run(turns_run(stack, chats, args.turns, database_url)),
                              flush=True)
    elif scenario == "idle":
        print(f"\n## idle: {args.idle_chats} open chats, no turns", flush=True)
        for setup in args.setup:
            with running(setup, env, folder, redis, shared) as stack:
                clear_staff_queue()
                print(f"# {SETUPS[setup]}; {load_average()}", flush=True)
                print(asyncio.run(idle_run(stack, args.idle_chats)), flush=True)
    else:
        print(f"\n## kill: {args.kill_chats} chats x {args.turns} turns on nginx-2; "
              f"{load_average()}", flush=True)
        with running("nginx-2", env, folder, redis, shared) as stack:
            clear_staff_queue()
            crowd, lines = asyncio.run(kill_run(stack, args.kill_chats, args.turns,
                                                args.kill_at, args.restart_after,
                                                args.answer_wait))
        print("\n".join(lines + kill_report(crowd)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
