"""Benchmark of chat turns: the app under daphne against the LLM stand-in, and two naive peers.

    .venv/bin/python bench/turns.py                      # every scenario, a few minutes
    .venv/bin/python bench/turns.py --scenario parallel --concurrency 1 50 200 --turns 10
    .venv/bin/python bench/turns.py --scenario early-exit
    .venv/bin/python bench/turns.py --scenario idle --idle-chats 2000
    .venv/bin/python bench/turns.py --scenario parallel --concurrency 50 --turns 20 \
        --no-peers --before f9e2012 --repeat 3    # against the app as issue 16 found it

A script, not a test: it prints tables of figures. Everything runs on loopback:

* the database is a fresh ``realestate_bench`` database on the embedded PostgreSQL of
  ``.pgdata/`` (or ``DATABASE_URL`` when set: it then writes rows there), migrated and seeded
  with ``seed_demo``;
* the LLM is ``manage.py llm_standin`` with the scenario's latency per classifier;
* the app is ``daphne realestate.asgi:application`` on a free port, a real subprocess;
* with ``--before REV``, the app of that commit too, on its own database, by turns with this
  one against the same stand-in; its CPU per turn is the peer of this one's (the machine's
  speed drifts by 30% within minutes here, so only a ratio from the same run means much).

Each of C visitors does what a browser does: ``GET /`` for the session cookie, then the
websocket ``/ws/chat/`` with that cookie and an Origin header, and T turns one after another
(the next message is sent when the reply has arrived). A turn's latency is from sending the
visitor's frame to receiving the assistant's message frame.

The naive peers send the same three classifier requests to the same stand-in, without
database, router or websocket (which flatters them):

* ``sequential``: the three calls one after another, on one pooled ``httpx.AsyncClient``;
* ``tutorial``: the tutorial's code as written: ``asyncio.gather`` of the three calls, each
  with a new ``aiohttp.ClientSession``, run by ``asyncio.run`` once per turn, each visitor on a
  thread of its own as a threaded web server would, prices from a dict.

``over ideal`` is the p50 turn latency minus what a perfect parallel engine would take: the
slowest classifier's latency, or with early exit the deciding (pricing) classifier's.
"""

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx
import psutil
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from realestate.dev import devdb  # noqa: E402

BENCH_DATABASE = "realestate_bench"
BEFORE_DATABASE = "realestate_bench_before"  # the --before peer's
SESSION_COOKIE = "sessionid"
REPLY_TIMEOUT = 60.0  # seconds a turn may take before it counts as an error
# Chats opened at once: twisted listens with a backlog of 50, and a burst beyond it waits for
# the kernel's SYN retries; browsers of a real crowd don't arrive in the same millisecond.
OPEN_AT_ONCE = 50

# What visitors say, in turn: a price, a listing question (a handoff), a call without a time
# (no appointment is booked) and small talk (a fallback).
MIXED_MESSAGES = (
    "How much is listing 123456?",
    "Does 654321 have a garden?",
    "Can I book a call with an agent?",
    "Hello there!",
)
PRICE_MESSAGES = ("How much is listing 123456?", "What is the price of 654321?")

# The peers' requests: what agent.llm.classifiers sends, shortened (the stand-in reads the
# json_schema name and the latest user message; prompt length costs it nothing).
PEER_CLASSIFIERS = {
    "pricing": {"asks_price": {"type": "boolean"}, "listing_id": {"type": ["string", "null"]}},
    "scheduling": {"wants_call": {"type": "boolean"}, "date": {"type": ["string", "null"]},
                   "time": {"type": ["string", "null"]}},
    "listing_question": {"is_listing_question": {"type": "boolean"}},
}


@dataclass(frozen=True)
class Scenario:
    """A stand-in latency per classifier (ms), what visitors say, and the ideal turn (ms)."""

    name: str
    latency_ms: dict[str, float]
    messages: tuple[str, ...]
    ideal_ms: float


SCENARIOS = {
    "parallel": Scenario(
        "L = 300 ms for every classifier", {"*": 300}, MIXED_MESSAGES, 300
    ),
    "early-exit": Scenario(
        "early exit: pricing 150 ms, the others 600 ms, price questions only",
        # Every classifier but pricing: three of the six answered at once before (issue 16).
        {"pricing": 150, "*": 600},
        PRICE_MESSAGES,
        150,
    ),
}


@dataclass
class Run:
    """The figures of one engine at one concurrency."""

    engine: str
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    wall_s: float = 0.0
    server_cpu_ms: float | None = None  # daphne's CPU time (user + system) during the run
    pg_cpu_ms: float | None = None  # PostgreSQL's (postmaster and backends) during the run
    standin_cpu_ms: float | None = None  # the stand-in's during the run
    load: float = 0.0  # the 1-minute load average before the run
    routes: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # error text: count

    def failed(self, failure: BaseException) -> None:
        """Count a turn or chat that failed with ``failure``."""
        self.errors += 1
        key = repr(failure)[:120]
        self.failures[key] = self.failures.get(key, 0) + 1

    async def timed_turn(self, socket_, text: str) -> bool:
        """One turn (``turn``) of a chat, its latency and route recorded; False when the
        chat's socket failed (the chat then ends)."""
        try:
            latency, route = await turn(socket_, text)
        except (TimeoutError, websockets.ConnectionClosed) as exc:
            self.failed(exc)
            return False
        if route is None:
            self.errors += 1
        else:
            self.latencies_ms.append(latency)
            self.routes[route] = self.routes.get(route, 0) + 1
        return True

    def row(self, ideal_ms: float) -> str:
        turns = len(self.latencies_ms)
        if turns:
            p50, p95, p99 = percentiles(self.latencies_ms)
            figures = (f"{p50:7.0f} {p95:7.0f} {p99:7.0f} {turns / self.wall_s:8.1f} "
                       f"{p50 - ideal_ms:+9.0f}")
        else:
            figures = f"{'-':>7} {'-':>7} {'-':>7} {'-':>8} {'-':>9}"
        cpu = " ".join(
            f"{ms / turns:9.1f}" if ms is not None and turns else f"{'-':>9}"
            for ms in (self.server_cpu_ms, self.pg_cpu_ms, self.standin_cpu_ms)
        )
        return (f"{self.engine:<10} {self.concurrency:>4} {self.load:>5.1f} {turns:>6} "
                f"{self.errors:>6} {figures} {cpu}")


HEADER = (f"{'engine':<10} {'C':>4} {'load':>5} {'turns':>6} {'errors':>6} {'p50 ms':>7} "
          f"{'p95 ms':>7} {'p99 ms':>7} {'turns/s':>8} {'over ideal':>9} {'app ms/t':>9} "
          f"{'PG ms/t':>9} {'stand-in':>9}")


def tree_cpu_ms(pids: list[int | None]) -> float:
    """CPU ms (user + system) the processes ``pids`` and their descendants have spent; gone
    or None ones count 0."""
    total = 0.0
    for pid in pids:
        if pid is None:
            continue
        if pid == SELF:
            times = psutil.Process().cpu_times()
            total += (times.user + times.system) * 1000
            continue
        try:
            root = psutil.Process(pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            total += (times.user + times.system) * 1000
    return total


class Meter:
    """CPU of the app, PostgreSQL and the stand-in over a block: ``with Meter(run, pids):``."""

    def __init__(self, run: "Run", app: int | None, standin: int | None):
        self.run, self.app, self.standin = run, app, standin

    def __enter__(self):
        self.run.load = os.getloadavg()[0]
        self.before = [tree_cpu_ms([p]) for p in (self.app, POSTMASTER[0], self.standin)]
        return self

    def __exit__(self, *exc):
        after = [tree_cpu_ms([p]) for p in (self.app, POSTMASTER[0], self.standin)]
        spent = [a - b for a, b in zip(after, self.before, strict=True)]
        if self.app is not None:
            self.run.server_cpu_ms = spent[0]
        if POSTMASTER[0] is not None:
            self.run.pg_cpu_ms = spent[1]
        self.run.standin_cpu_ms = spent[2]


SELF = -1  # Meter's app pid meaning "this process alone" (the tutorial peer's threads)


def metered(app: int | None, drive) -> "Run":
    """``drive()``'s Run with the CPU of ``app``, PostgreSQL and the stand-in meanwhile."""
    holder = Run("", 0)
    with Meter(holder, app, STANDIN[0]):
        run = drive()
    run.load, run.server_cpu_ms = holder.load, holder.server_cpu_ms
    run.pg_cpu_ms, run.standin_cpu_ms = holder.pg_cpu_ms, holder.standin_cpu_ms
    return run


POSTMASTER: list[int | None] = [None]  # the bench database's server, when on this machine


def find_postmaster(database_url: str) -> int | None:
    """The PostgreSQL server's main process, when it runs on this machine."""
    import psycopg

    with psycopg.connect(database_url) as conn:  # ask while the backend lives
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        try:
            return psutil.Process(backend).ppid()
        except psutil.Error:
            return None


def percentiles(values: list[float]) -> tuple[float, float, float]:
    """p50, p95 and p99 of ``values`` (inclusive method; a single value is all three)."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


# ---------------------------------------------------------------------------------------------
# Processes


# Every visitor of a benchmark comes from 127.0.0.1: the abuse limits would refuse most.
NO_ABUSE_LIMITS = {"CHAT_RATE_LIMIT_CONNECTION": "off", "CHAT_RATE_LIMIT_IP": "off",
                   "CHAT_MAX_SOCKETS_PER_IP": "0"}


def raise_file_limit() -> int:
    """Raise this process's open-file limit to its hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port() -> int:
    """A TCP port that nothing listens on at the moment."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_database() -> str:
    """A database URL for the run: ``DATABASE_URL``, else a new, empty ``realestate_bench``
    database on the embedded server (started if need be, stopped at exit if we started it)."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    return devdb.fresh_database(BENCH_DATABASE)


def manage(*args: str, root: Path = ROOT) -> list[str]:
    """The command line of a ``manage.py`` command of the tree at ``root``."""
    return [sys.executable, str(root / "manage.py"), *args]


@contextmanager
def started(command: list[str], env: dict, port: int, log: Path, cwd: Path = ROOT):
    """Run ``command`` in ``cwd`` until the block ends; wait until it listens on ``port``
    first."""
    with open(log, "ab") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process, log)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_port(port: int, process: subprocess.Popen, log: Path, seconds: float = 30) -> None:
    """Wait until 127.0.0.1:port accepts connections; raise with the log's tail if not."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"{process.args[:3]} did not listen on port {port}:\n{tail}")


# ``manage.py llm_standin`` with two socket options that http.server lacks, so that the figures
# are the app's and not the stand-in's:
# * a listen backlog of 4,096 instead of 5: a burst of new connections from the app (up to 100
#   at once) overflows an accept queue of 5, and the kernel's SYN retries add 1 s or more;
# * TCP_NODELAY: http.server sends the headers and the body in two writes, so Nagle's algorithm
#   holds the body until the client's delayed ACK, 40 ms on Linux, on every call.
STANDIN_LAUNCHER = """
import os, socketserver, sys
socketserver.TCPServer.request_queue_size = 4096
socketserver.StreamRequestHandler.disable_nagle_algorithm = True
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realestate.settings")
from django.core.management import execute_from_command_line
execute_from_command_line(["manage.py", "llm_standin", *sys.argv[1:]])
"""


STANDIN: list[int | None] = [None]


@contextmanager
def stack(scenario_latency: dict[str, float], env: dict, logs: Path):
    """The stand-in and daphne, started for one scenario: yields (base URL, daphne process,
    stand-in base URL); the stand-in's pid is left in ``STANDIN``."""
    standin_port = free_port()
    latency = [f"{name}={ms:g}" for name, ms in scenario_latency.items() if name != "*"]
    standin_command = [sys.executable, "-c", STANDIN_LAUNCHER, "--port", str(standin_port),
                       "--latency-ms", f"{scenario_latency.get('*', 0):g}"]
    if latency:
        standin_command += ["--latency", *latency]
    standin_url = f"http://127.0.0.1:{standin_port}/v1"
    with started(standin_command, env, standin_port, logs / "standin.log") as standin, \
            daphne(env, standin_url, logs / "daphne.log") as (base_url, app):
        STANDIN[0] = standin.pid
        yield base_url, app, standin_url


@contextmanager
def daphne(env: dict, standin_url: str, log: Path, root: Path = ROOT):
    """The app of the tree at ``root`` under daphne on a free port, asking the stand-in at
    ``standin_url``: yields (base URL, daphne process)."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1", "-p",
               str(port), "realestate.asgi:application"]  # daphne imports it from its cwd
    with started(command, {**env, "LLM_BASE_URL": standin_url}, port, log, cwd=root) as app:
        yield f"http://127.0.0.1:{port}", psutil.Process(app.pid)


@dataclass(frozen=True)
class Before:
    """The app as it was at an earlier commit, run beside this one as a peer: its tree and
    the environment its processes run in (its own database)."""

    revision: str
    root: Path
    env: dict


def check_out_before(revision: str, env: dict) -> Before:
    """Unpack ``revision``'s tree (``git archive``) into a temporary folder, and give it a
    fresh database of its own on the embedded server, migrated by its own migrations and
    seeded by its own ``seed_demo``. It runs on this checkout's virtualenv, so its
    dependencies must be installed there (true of every earlier commit so far: packages were
    only ever added).

    Raises:
        SystemExit: ``DATABASE_URL`` is set (the peer needs a database of its own).
        subprocess.CalledProcessError: git, the migration or the seeding failed.
    """
    if os.environ.get("DATABASE_URL"):
        raise SystemExit("--before needs the embedded PostgreSQL: unset DATABASE_URL")
    root = Path(tempfile.mkdtemp(prefix="bench-before-"))
    tree = subprocess.run(["git", "-C", str(ROOT), "archive", revision], check=True,
                          capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=tree, check=True)
    before = Before(revision, root, {**env, "DATABASE_URL": devdb.fresh_database(
        BEFORE_DATABASE)})
    for command in (["migrate", "--noinput", "-v", "0"], ["seed_demo"]):
        subprocess.run(manage(*command, root=root), cwd=root,
                       env=before.env, check=True, stdout=subprocess.DEVNULL)
    return before


# ---------------------------------------------------------------------------------------------
# Visitors


async def open_chat(base_url: str):
    """Open a chat as a new visitor: GET / for the session cookie, then the websocket.

    Returns:
        The open websocket, its history frame already read.
    """
    async with httpx.AsyncClient(base_url=base_url, timeout=REPLY_TIMEOUT) as http:
        page = await http.get("/")
        page.raise_for_status()
        session_key = page.cookies[SESSION_COOKIE]
    ws_url = base_url.replace("http", "ws", 1) + "/ws/chat/"
    headers = {"Cookie": f"{SESSION_COOKIE}={session_key}", "Origin": base_url}
    socket_ = await websockets.connect(ws_url, additional_headers=headers,
                                       open_timeout=REPLY_TIMEOUT)
    history = json.loads(await asyncio.wait_for(socket_.recv(), REPLY_TIMEOUT))
    if history.get("type") != "history":
        raise RuntimeError(f"expected the history frame, got {history}")
    return socket_


async def open_chats(base_url: str, count: int, run: "Run", at_once: int = OPEN_AT_ONCE) -> list:
    """Open ``count`` chats, ``at_once`` at a time; count the failures in ``run``."""
    gate = asyncio.Semaphore(at_once)

    async def one():
        async with gate:
            return await open_chat(base_url)

    opened = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    for failure in (o for o in opened if isinstance(o, BaseException)):
        run.failed(failure)
    return [o for o in opened if not isinstance(o, BaseException)]


BUSY_SEEN = [0]  # "busy, one moment" replies seen by turn(); the answer follows each


async def turn(socket_, text: str) -> tuple[float, str | None]:
    """Send one visitor message; return (ms until the assistant's reply, its route or None
    when the server sent an error frame instead). A ``busy`` reply is counted in
    ``BUSY_SEEN`` and the wait goes on for the answer that follows it."""
    started_at = time.perf_counter()
    await socket_.send(json.dumps({"type": "message", "text": text}))
    latency, route = None, None
    while True:
        frame = json.loads(await asyncio.wait_for(socket_.recv(), REPLY_TIMEOUT))
        if frame.get("route") == "busy":
            BUSY_SEEN[0] += 1
        elif frame["type"] == "message" and frame["role"] == "assistant":
            latency, route = (time.perf_counter() - started_at) * 1000, frame["route"]
        elif frame["type"] == "error":
            latency = (time.perf_counter() - started_at) * 1000
        elif frame == {"type": "typing", "active": False}:
            return latency, route


async def drive_app(base_url: str, server: psutil.Process, concurrency: int, turns: int,
                    messages: tuple[str, ...], engine: str = "app") -> Run:
    """C visitors, each with T turns, against the app; timed from when all have connected."""
    run = Run(engine, concurrency)
    sockets = await open_chats(base_url, concurrency, run)

    async def visitor(index: int, socket_) -> None:
        for number in range(turns):
            if not await run.timed_turn(socket_, messages[(index + number) % len(messages)]):
                return

    with Meter(run, server.pid, STANDIN[0]):
        started_at = time.perf_counter()
        await asyncio.gather(*(visitor(i, s) for i, s in enumerate(sockets)))
        run.wall_s = time.perf_counter() - started_at
    await asyncio.gather(*(s.close() for s in sockets))
    return run


# ---------------------------------------------------------------------------------------------
# The naive peers


def peer_body(name: str, text: str) -> dict:
    """A chat-completions request for classifier ``name`` about the visitor's ``text``."""
    properties = PEER_CLASSIFIERS[name]
    return {
        "model": "standin",
        "messages": [
            {"role": "system", "content": f"You classify messages for a real-estate agency. "
                                          f"Today is {date.today():%A, %Y-%m-%d}. Answer with "
                                          f"JSON only: {json.dumps(list(properties))}."},
            {"role": "user", "content": text},
        ],
        "response_format": {"type": "json_schema", "json_schema": {
            "name": name, "strict": True,
            "schema": {"type": "object", "properties": properties,
                       "required": list(properties), "additionalProperties": False}}},
        "temperature": 0,
        "max_tokens": 64,
    }


def answer_of(response: httpx.Response) -> dict:
    """The classifier's JSON answer in a chat completion; raises on anything else."""
    response.raise_for_status()
    return json.loads(response.json()["choices"][0]["message"]["content"])


async def sequential_peer(standin_url: str, concurrency: int, turns: int,
                          messages: tuple[str, ...]) -> Run:
    """C visitors whose turns ask the tutorial's three classifiers one after another."""
    run = Run("sequential", concurrency)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=standin_url, timeout=REPLY_TIMEOUT,
                                 limits=limits) as client:

        async def visitor(index: int) -> None:
            for number in range(turns):
                text = messages[(index + number) % len(messages)]
                started_at = time.perf_counter()
                try:
                    for name in PEER_CLASSIFIERS:
                        answer_of(await client.post("/chat/completions",
                                                    json=peer_body(name, text)))
                except (httpx.HTTPError, ValueError, KeyError):
                    run.errors += 1
                    continue
                run.latencies_ms.append((time.perf_counter() - started_at) * 1000)

        started_at = time.perf_counter()
        await asyncio.gather(*(visitor(i) for i in range(concurrency)))
        run.wall_s = time.perf_counter() - started_at
    return run


def tutorial_peer(standin_url: str, concurrency: int, turns: int,
                  messages: tuple[str, ...]) -> Run:
    """The tutorial's code as written: C threads (a threaded web server's), each running its
    visitor's turns with ``asyncio.run``; a turn is an ``asyncio.gather`` of the three calls,
    each on a new ``aiohttp.ClientSession``, and the price comes from a dict.
    """
    import aiohttp

    run = Run("tutorial", concurrency)
    lock = threading.Lock()
    prices = {"123456": 350_000, "654321": 450_000, "112233": 550_000}
    url = f"{standin_url}/chat/completions"

    async def call(name: str, text: str) -> dict:
        timeout = aiohttp.ClientTimeout(total=REPLY_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(url, json=peer_body(name, text)) as response:
                response.raise_for_status()
                body = await response.json()
        return json.loads(body["choices"][0]["message"]["content"])

    async def one_turn(text: str) -> str:
        pricing, _, _ = await asyncio.gather(*(call(name, text) for name in PEER_CLASSIFIERS))
        if pricing.get("asks_price") and pricing.get("listing_id") in prices:
            return f"That listing is ${prices[pricing['listing_id']]:,}."
        return "Let me find someone who can help."

    def visitor(index: int) -> None:
        for number in range(turns):
            text = messages[(index + number) % len(messages)]
            started_at = time.perf_counter()
            try:
                asyncio.run(one_turn(text))
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
                with lock:
                    run.errors += 1
                continue
            with lock:
                run.latencies_ms.append((time.perf_counter() - started_at) * 1000)

    started_at = time.perf_counter()
    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.wall_s = time.perf_counter() - started_at
    return run


# ---------------------------------------------------------------------------------------------
# Scenarios


async def classifier_failures(base_url: str) -> int:
    """Classifier calls the app counted as anything but ok, read from its /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    async with httpx.AsyncClient(base_url=base_url) as http:
        text = (await http.get("/metrics")).text
    return int(sum(
        s.value for family in text_string_to_metric_families(text)
        if family.name == "chat_classifier_call_duration_seconds"
        for s in family.samples
        if s.name.endswith("_count") and s.labels.get("outcome") != "ok"
    ))


def run_scenario(key: str, args, env: dict, logs: Path,
                 before: Before | None = None) -> list[Run]:
    """One table: the app and both peers at each concurrency of ``args.concurrency``; with
    ``before``, that app too, run by turns with this one (``args.repeat`` times each)."""
    scenario = SCENARIOS[key]
    concurrencies = args.concurrency if key == "parallel" else args.early_exit_concurrency
    runs = []
    print(f"\n## {scenario.name}; T = {args.turns} turns per visitor of the app, "
          f"{args.peer_turns} of the peers", flush=True)
    with ExitStack() as servers:
        base_url, server, standin_url = servers.enter_context(
            stack(scenario.latency_ms, env, logs))
        apps = [("app", base_url, server)]
        if before is not None:  # the same stand-in answers both
            apps.append(("before", *servers.enter_context(
                daphne(before.env, standin_url, logs / "before.log", before.root))))
        for _, url, process in apps:
            asyncio.run(drive_app(url, process, 2, 2, scenario.messages))  # warm-up
        for concurrency in concurrencies:
            for _ in range(args.repeat):
                for engine, url, process in apps:  # by turns: the machine's speed drifts
                    runs.append(asyncio.run(drive_app(url, process, concurrency, args.turns,
                                                      scenario.messages, engine)))
            if not args.no_peers:
                runs.append(metered(None, lambda c=concurrency: asyncio.run(sequential_peer(
                    standin_url, c, args.peer_turns, scenario.messages))))
                runs.append(metered(SELF, lambda c=concurrency: tutorial_peer(
                    standin_url, c, args.peer_turns, scenario.messages)))
        failures = asyncio.run(classifier_failures(base_url))
    print(HEADER)
    for run in runs:
        print(run.row(scenario.ideal_ms))
    print(f"app routes: {routes_of(runs, 'app')}; classifier calls not ok (from /metrics): "
          f"{failures}")
    if before is not None:
        print(f"before routes: {routes_of(runs, 'before')}")
        print_cpu_ratios(runs, before.revision)
    for run in runs:
        for failure, count in run.failures.items():
            print(f"{run.engine} C={run.concurrency}: {count} x {failure}")
    return runs


def routes_of(runs: list[Run], engine: str) -> dict[str, int]:
    """How many turns of ``engine``'s runs took each route."""
    routes: dict[str, int] = {}
    for run in runs:
        if run.engine == engine:
            for route, count in run.routes.items():
                routes[route] = routes.get(route, 0) + count
    return routes


def print_cpu_ratios(runs: list[Run], revision: str) -> None:
    """The app's CPU per turn over the ``before`` peer's, pair by pair (each app run with the
    ``before`` run that followed it), per concurrency, and their median."""
    ratios: dict[int, list[float]] = {}
    app = None
    for run in runs:
        if run.engine == "app":
            app = run
        elif run.engine == "before" and app is not None and app.latencies_ms \
                and run.latencies_ms and app.server_cpu_ms and run.server_cpu_ms:
            mine = app.server_cpu_ms / len(app.latencies_ms)
            theirs = run.server_cpu_ms / len(run.latencies_ms)
            ratios.setdefault(run.concurrency, []).append(mine / theirs)
            app = None
    for concurrency, found in ratios.items():
        figures = ", ".join(f"{r:.2f}" for r in found)
        print(f"app ms/t over before ({revision}) ms/t at C={concurrency}: {figures} "
              f"(median {statistics.median(found):.2f})")


async def idle(base_url: str, server: psutil.Process, chats: int) -> None:
    """Open ``chats`` websocket chats, hold them, and report daphne's RSS and a few turns."""
    warm = await open_chat(base_url)
    await turn(warm, "How much is listing 123456?")
    await asyncio.sleep(1)
    before = server.memory_info().rss
    opening = Run("idle", chats)
    started_at = time.perf_counter()
    sockets = await open_chats(base_url, chats, opening)
    errors = opening.errors
    opening_s = time.perf_counter() - started_at
    await asyncio.sleep(2)
    after = server.memory_info().rss
    latencies = []
    for index in range(0, len(sockets), max(1, len(sockets) // 20)):
        latency, _ = await turn(sockets[index], "How much is listing 123456?")
        latencies.append(latency)
    print(f"chats open: {len(sockets)} (errors: {errors}), opened in {opening_s:.1f} s "
          f"({len(sockets) / opening_s:.0f}/s)")
    print(f"daphne RSS: {before / 2**20:.1f} MiB before, {after / 2**20:.1f} MiB with the chats "
          f"open: {(after - before) / max(1, len(sockets)) / 1024:.1f} KiB per chat; "
          f"{server.num_fds()} open files")
    for failure, count in opening.failures.items():
        print(f"{count} x {failure}")
    if latencies:
        p50, _, worst = *percentiles(latencies)[:2], max(latencies)
        print(f"{len(latencies)} turns one at a time while they are open: p50 {p50:.0f} ms, "
              f"max {worst:.0f} ms")
    await asyncio.gather(*(s.close() for s in sockets), warm.close())


async def overload(base_url: str, server: psutil.Process, database_url: str, chats: int,
                   think_s: float, seconds: float) -> None:
    """``chats`` visitors asking prices for ``seconds``, each ``think_s`` after its answer
    (twice what the process can answer, when chats ÷ (think_s + a turn) is 2 × its turns/s);
    then whether every message was stored once and answered, how many handoffs the spike
    queued, and how soon after it a new visitor's turn is back to normal."""
    import psycopg

    def db(sql: str) -> int:
        with psycopg.connect(database_url, autocommit=True) as conn:
            return conn.execute(sql).fetchone()[0]

    probe = await open_chat(base_url)
    normal = sorted([(await turn(probe, PRICE_MESSAGES[0]))[0] for _ in range(5)])[2]
    run = Run("overload", chats)
    sockets = await open_chats(base_url, chats, run)
    since = db("SELECT now()::text")
    handoffs_before = db("SELECT count(*) FROM agent_handoff")
    BUSY_SEEN[0] = 0
    sent = [0]
    end = time.monotonic() + seconds

    async def visitor(index: int, socket_) -> None:
        while time.monotonic() < end:
            sent[0] += 1
            if not await run.timed_turn(socket_, PRICE_MESSAGES[index % 2]):
                return
            await asyncio.sleep(think_s)

    with Meter(run, server.pid, STANDIN[0]):
        started_at = time.perf_counter()
        await asyncio.gather(*(visitor(i, s) for i, s in enumerate(sockets)))
        run.wall_s = time.perf_counter() - started_at
    stopped = time.monotonic()
    after = []
    while time.monotonic() - stopped < 15:
        latency, _ = await turn(probe, PRICE_MESSAGES[1])
        after.append((time.monotonic() - stopped, latency))
        if latency is not None and latency <= 1.5 * normal:
            break
    stored = db(f"SELECT count(*) FROM agent_message WHERE role = 'user' "
                f"AND created_at >= '{since}'")
    unanswered = db(f"SELECT count(*) FROM agent_message WHERE role = 'user' "
                    f"AND created_at >= '{since}' AND answered_at IS NULL")
    print(HEADER)
    print(run.row(SCENARIOS["parallel"].ideal_ms))
    print(f"sent {sent[0]}, stored {stored} (probe turns after included: {len(after)}), "
          f"unanswered {unanswered}; busy replies {BUSY_SEEN[0]}; routes {run.routes}; "
          f"handoffs queued during the spike: "
          f"{db('SELECT count(*) FROM agent_handoff') - handoffs_before}")
    print(f"a new visitor's price turn: {normal:.0f} ms before; after the load stopped: "
          + ", ".join(f"{t:.1f} s: {ms:.0f} ms" for t, ms in after))
    for failure, count in run.failures.items():
        print(f"{count} x {failure}")
    await asyncio.gather(*(s.close() for s in sockets), probe.close())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=["parallel", "early-exit", "idle", "overload",
                                               "all"], default="all")
    parser.add_argument("--overload-chats", type=int, default=120,
                        help="visitors of scenario overload")
    parser.add_argument("--think", type=float, default=2.0,
                        help="seconds an overload visitor waits after each answer")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the overload")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50, 200],
                        metavar="C", help="visitors at once, scenario parallel")
    parser.add_argument("--early-exit-concurrency", type=int, nargs="+", default=[1, 50],
                        metavar="C", help="visitors at once, scenario early-exit")
    parser.add_argument("--turns", type=int, default=10, metavar="T",
                        help="turns per visitor")
    parser.add_argument("--peer-turns", type=int, default=3, metavar="T",
                        help="turns per visitor of the peers (the tutorial's is slow)")
    parser.add_argument("--idle-chats", type=int, default=2000)
    parser.add_argument("--no-peers", action="store_true", help="time the app only")
    parser.add_argument("--before", metavar="REVISION",
                        help="also run the app as it was at this git revision (a commit an "
                             "issue was filed against), by turns with this one")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="runs of the app (and of --before's) at each concurrency")
    args = parser.parse_args()

    limit = raise_file_limit()
    database_url = bench_database()
    env = {**os.environ, "DATABASE_URL": database_url, "DEBUG": "false",
           "LOG_LEVEL": "WARNING", "METRICS_ALLOWED_IPS": "127.0.0.1,::1", **NO_ABUSE_LIMITS}
    subprocess.run(manage("migrate", "--noinput", "-v", "0"), cwd=ROOT, env=env, check=True)
    subprocess.run(manage("seed_demo"), cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    POSTMASTER[0] = find_postmaster(database_url)
    before = check_out_before(args.before, env) if args.before else None
    logs = Path(tempfile.mkdtemp(prefix="bench-turns-"))
    print(f"cores: {os.cpu_count()}; open-file limit: {limit}; "
          f"server logs: {logs}", flush=True)
    keys = ["parallel", "early-exit", "idle"] if args.scenario == "all" else [args.scenario]
    for key in keys:
        if key == "overload":
            print(f"\n## overload: {args.overload_chats} visitors asking prices for "
                  f"{args.seconds:g} s, {args.think:g} s after each answer; L = 300 ms",
                  flush=True)
            with stack({"*": 300}, env, logs) as (base_url, server, _):
                asyncio.run(overload(base_url, server, database_url, args.overload_chats,
                                     args.think, args.seconds))
        elif key == "idle":
            print(f"\n## idle: {args.idle_chats} open websocket chats", flush=True)
            with stack({"*": 0}, env, logs) as (base_url, server, _):
                asyncio.run(idle(base_url, server, args.idle_chats))
        else:
            run_scenario(key, args, env, logs, before)
    shutil.rmtree(logs)  # kept when something failed
    if before is not None:
        shutil.rmtree(before.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
