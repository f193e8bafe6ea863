"""Benchmark of the LLM client: CPU per streamed classifier call, old (httpx) against new.

    .venv/bin/python bench/llmclient.py                  # every case, about a minute
    .venv/bin/python bench/llmclient.py --calls 600 --concurrency 1 50

A script, not a test: it prints a table. The stand-in (``manage.py llm_standin``, as
bench/turns.py launches it) runs in a subprocess, so only the client's CPU is counted:
``cpu ms/call`` is this process's ``time.process_time()`` over a run divided by the calls made
(cancelled ones included), ``calls/s`` the calls over the wall time.

Clients, each on a fresh event loop and a fresh client (a warm-up round first, not counted):

* ``httpx``: the client as it was before issue 16 (``LLMClient._post`` on one shared
  ``httpx.AsyncClient``, ``max_keepalive_connections=100``, a new ``httpx.Timeout`` per call);
* ``httpx-pool``: the same with the keep-alive pool unbounded, the tuning option for httpx;
* ``aiohttp``: ``agent.llm.client.LLMClient`` as it is now;
* ``bare``: a plain ``aiohttp.ClientSession`` streamed post read to the end, no parsing or
  checks: aiohttp's floor;
* ``proto``: a sketch of the third option, a minimal HTTP/1.1 client on ``asyncio.Protocol``
  (keep-alive pool, chunked bodies, the same SSE parsing and checks; no TLS, timeouts or
  error handling): that option's floor, to weigh against writing and keeping one.

Cases: ``C`` workers each making calls one after another (C = 1, 50, and 300 = 50 chats x 6
calls), and ``early-exit``: C chats each sending the six classifiers at once, where two answer
at 0 ms and four would take 200 ms and are cancelled when the two have answered, as the fan-out's
early exit cancels its losers (4 of 6 calls cancelled mid-stream). ``fan-out``: the same turns
through ``agent.llm.fanout.fan_out`` itself with a ten-message history (``LONG_HISTORY``), so the
request bodies are built as a turn builds them; pricing says yes at 0 ms and the rest are
cancelled (``aiohttp`` only: the fan-out takes the client the product uses).
"""

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realestate.settings")

import aiohttp  # noqa: E402
import django  # noqa: E402
import httpx  # noqa: E402

from realestate.dev.devserver import free_port, wait_for_port  # noqa: E402
from realestate.dev.localkey import KEY_FILE, use_local_secret_key  # noqa: E402

if KEY_FILE.exists():
    use_local_secret_key()
django.setup()

from agent.llm import client as llm  # noqa: E402
from agent.llm.classifiers import CLASSIFIERS  # noqa: E402
from agent.llm.fanout import fan_out  # noqa: E402
from bench.turns import STANDIN_LAUNCHER  # noqa: E402

TODAY = date(2026, 11, 22)
HISTORY = [{"role": "user", "content": "How much is listing 654321?"}]
# A turn's context at its longest (``HISTORY_MESSAGES``), the visitor's price question last.
LONG_HISTORY = [
    {"role": "user", "content": "Hello, I am looking for a flat near the harbour."},
    {"role": "assistant", "content": "Hello! I can help with that. Do you have a budget in "
     "mind, or a number of bedrooms? You can also give me a listing's 6-digit id."},
    {"role": "user", "content": "Two bedrooms, with a balcony if possible, under 300,000."},
    {"role": "assistant", "content": "Here are three listings that fit: 654321 (2 bedrooms, "
     "balcony, 289,000), 654322 (2 bedrooms, 275,000) and 654330 (2 bedrooms, garden)."},
    {"role": "user", "content": "Does 654321 have a garage?"},
    {"role": "assistant", "content": "Listing 654321 has no garage, but there is street "
     "parking and a public car park two minutes away."},
    {"role": "user", "content": "Can I see it on Friday?"},
    {"role": "assistant", "content": "Of course. What time on Friday suits you? An agent "
     "can call you to arrange the visit."},
    {"role": "user", "content": "Maybe later. ¿Y cuánto cuesta exactamente?"},
    {"role": "user", "content": "How much is listing 654321?"},
]
FAST = ("pricing", "appointment_change")  # answer at once; the others take SLOW_MS
SLOW_MS = 200
TIMEOUT = 10.0


class HttpxClient(llm.LLMClient):
    """The LLM client as it was on httpx (its ``complete_json`` body, line for line)."""

    def __init__(self, keepalive: int | None = 100):
        super().__init__()
        self.http = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=keepalive)
        )

    async def _post(self, url, data, headers, timeout, api_style, timed_reads=True):
        try:
            async with self.http.stream(
                "POST", url, content=data, headers=headers, timeout=httpx.Timeout(timeout)
            ) as response:
                chunks = response.aiter_bytes()
                if response.status_code != 200:
                    raw = (await llm._read_bounded(chunks)).decode(errors="replace")
                    raise llm.LLMError(f"HTTP {response.status_code}", permanent=False, raw=raw)
                if response.headers.get("content-type", "").startswith("text/event-stream"):
                    return await llm._openai_stream(chunks)
                return llm._openai_completion(await llm._read_bounded(chunks))
        except httpx.TimeoutException as exc:
            raise llm.LLMError("timed out", permanent=False, timeout=True) from exc
        except httpx.HTTPError as exc:
            raise llm.LLMError(f"connection failed: {exc!r}", permanent=False) from exc

    async def aclose(self):
        await self.http.aclose()


class BareClient:
    """A plain shared aiohttp session: post, read the stream to its end, nothing else."""

    def __init__(self):
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def complete_json(self, server, body, timeout, timed_reads=True):
        data = json.dumps({**body, "stream": True}).encode()
        headers = {"Content-Type": "application/json"}
        async with self.session.post(
            f"{server.base_url}/chat/completions", data=data, headers=headers
        ) as response:
            async for _ in response.content.iter_any():
                pass
        return {}, ""

    async def aclose(self):
        await self.session.close()


class _Connection(asyncio.Protocol):
    """One keep-alive connection of ``ProtoClient``: bytes received wait in ``buffer``."""

    def __init__(self):
        self.transport = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.lost = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buffer += data
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def connection_lost(self, exc):
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def more(self):
        if self.lost:
            raise ConnectionError("connection lost")
        self.waiter = asyncio.get_running_loop().create_future()
        await self.waiter

    async def chunks(self):
        """The pieces of a chunked body, to its end."""
        buffer = self.buffer
        while True:
            while (eol := buffer.find(b"\r\n")) < 0:
                await self.more()
            size = int(bytes(buffer[:eol]).split(b";")[0], 16)
            while len(buffer) < eol + 4 + size:
                await self.more()
            piece = bytes(buffer[eol + 2 : eol + 2 + size])
            del buffer[: eol + 4 + size]
            if not size:
                return
            yield piece


class ProtoClient(llm.LLMClient):
    """The sketch of a minimal HTTP/1.1 client on ``asyncio.Protocol`` (plain HTTP only)."""

    def __init__(self):
        super().__init__()
        self.idle: dict[tuple[str, int], list[_Connection]] = {}

    async def _post(self, url, data, headers, timeout, api_style, timed_reads=True):
        parts = urlsplit(url)
        where = (parts.hostname, parts.port or 80)
        idle = self.idle.setdefault(where, [])
        if idle:
            conn = idle.pop()
        else:
            _, conn = await asyncio.get_running_loop().create_connection(_Connection, *where)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        conn.transport.write(
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}"
            f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        try:
            while (end := conn.buffer.find(b"\r\n\r\n")) < 0:
                await conn.more()
            status = int(conn.buffer[9:12])
            del conn.buffer[: end + 4]
            chunks = conn.chunks()
            if status != 200:
                raise llm.LLMError(f"HTTP {status}", permanent=False)
            content = await llm._openai_stream(chunks)
            async for _ in chunks:  # the body's end: the connection can be reused
                pass
        except BaseException:
            conn.transport.abort()
            raise
        idle.append(conn)
        return content

    async def aclose(self):
        for conns in self.idle.values():
            for conn in conns:
                conn.transport.close()


CLIENTS = {
    "httpx": HttpxClient,
    "httpx-pool": lambda: HttpxClient(keepalive=None),
    "aiohttp": llm.LLMClient,
    "bare": BareClient,
    "proto": ProtoClient,
}


def bodies() -> dict[str, dict]:
    return {c.name: c.request_body("standin", HISTORY, TODAY) for c in CLASSIFIERS}


async def steady(client, server, concurrency: int, calls: int) -> int:
    """``concurrency`` workers sharing ``calls`` calls of the pricing classifier."""
    body = bodies()["pricing"]
    left = [calls]

    async def worker():
        while left[0] > 0:
            left[0] -= 1
            await client.complete_json(server, body, TIMEOUT)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return calls


async def early_exit(client, server, chats: int, calls: int) -> int:
    """``chats`` chats, each turn six calls at once, the four slow ones cancelled once the
    two fast ones have answered; returns the calls made."""
    by_name = bodies()
    turns = max(calls // (6 * chats), 1)

    async def chat():
        for _ in range(turns):
            tasks = {
                name: asyncio.ensure_future(client.complete_json(server, body, TIMEOUT))
                for name, body in by_name.items()
            }
            await asyncio.gather(*(tasks[name] for name in FAST))
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)

    await asyncio.gather(*(chat() for _ in range(chats)))
    return turns * 6 * chats


async def fan_out_turns(client, server, chats: int, calls: int) -> int:
    """``chats`` chats, each turn ``fan_out`` of the six built-in classifiers on
    ``LONG_HISTORY``; returns the calls made (cancelled ones included)."""
    classifiers = [replace(c, server=server) for c in CLASSIFIERS]
    turns = max(calls // (6 * chats), 1)

    async def chat():
        for _ in range(turns):
            await fan_out(client, classifiers, LONG_HISTORY, TODAY)

    await asyncio.gather(*(chat() for _ in range(chats)))
    return turns * 6 * chats


async def measure(make, case, server, concurrency: int, calls: int) -> tuple[float, float]:
    """``(cpu ms per call, calls per second)`` of one client on one case."""
    client = make()
    try:
        await case(client, server, concurrency, min(calls, 6 * concurrency))  # warm-up
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        made = await case(client, server, concurrency, calls)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await client.aclose()
    return cpu * 1000 / made, made / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1200, help="calls per run (300 at C=1)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50, 300])
    parser.add_argument(
        "--chats", type=int, nargs="+", default=[50], help="chats of the early-exit case"
    )
    parser.add_argument("--clients", nargs="+", default=list(CLIENTS), choices=list(CLIENTS))
    args = parser.parse_args()

    port = free_port()
    latency = [f"{c.name}={0 if c.name in FAST else SLOW_MS}" for c in CLASSIFIERS]
    command = [sys.executable, "-c", STANDIN_LAUNCHER, "--port", str(port), "--latency", *latency]
    standin = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, standin, seconds=30)
        server = llm.Server(f"http://127.0.0.1:{port}/v1", max_in_flight=1000)
        cases = [(f"C={c}", steady, c, args.calls if c > 1 else 300) for c in args.concurrency]
        cases += [(f"early-exit {c}x6", early_exit, c, args.calls) for c in args.chats]
        cases += [(f"fan-out {c}x6", fan_out_turns, c, args.calls) for c in args.chats]
        print(f"{'case':<18}{'client':<12}{'cpu ms/call':>12}{'calls/s':>10}{'cpu vs httpx':>14}")
        for label, case, concurrency, calls in cases:
            figures = {}
            for name in args.clients:
                if case is fan_out_turns and name != "aiohttp":
                    continue
                figures[name] = asyncio.run(
                    measure(CLIENTS[name], case, server, concurrency, calls)
                )
            old = figures.get("httpx", (None,))[0]
            for name, (cpu, rate) in figures.items():
                ratio = f"{cpu / old:.2f}" if old else "-"
                print(f"{label:<18}{name:<12}{cpu:>12.3f}{rate:>10.0f}{ratio:>14}")
    finally:
        standin.terminate()
        standin.wait(timeout=10)


if __name__ == "__main__":
    main()
