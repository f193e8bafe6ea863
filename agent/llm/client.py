"""The one seam for calls to LLM servers: chat requests over one shared aiohttp session.

Two API styles, chosen per server:

- "openai": ``POST {base_url}/chat/completions`` with ``stream: false``; the answer is one
  ``chat.completion`` object (a server that streams anyway, server-sent events of
  ``chat.completion.chunk`` frames then ``data: [DONE]``, is read as well). vLLM, OpenAI,
  llama.cpp and Ollama speak it.
- "anthropic": ``POST {base_url}/messages`` (Anthropic's Messages API) with ``stream: true``;
  the system prompt goes apart and the JSON answer comes as the input of a forced tool call.

Closing a call (on cancel) reaches the server either way: vLLM aborts a request whose client
disconnects, streamed or not (``with_cancellation`` on its chat-completions route,
``vllm/entrypoints/utils.py``). A classifier's answer is a few dozen tokens parsed only when
whole, so OpenAI-style calls are not streamed: one body instead of an event a token halves the
client's CPU per call (bench/llmclient.py, issue 16). Every failure becomes ``LLMError``:
``permanent`` when retrying cannot help (a 4xx other than 429, an answer that is not what the
API promises), transient otherwise (timeouts, connection errors, cut streams, 429, 5xx).
"""

import asyncio
import atexit
import functools
import json
import logging
import os
import ssl
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from time import time

import aiohttp
import certifi
from django.conf import settings

from agent.llm.guard import EndpointRefused, check_base_url, check_key_variable

logger = logging.getLogger(__name__)

API_STYLES = ("openai", "anthropic")
ANTHROPIC_VERSION = "2023-06-01"  # the ``anthropic-version`` header the Messages API requires
RAW_LIMIT = 2000  # characters of a server's answer kept for the log
# Bytes of one answer read from the server: a classifier's streamed answer is a few KiB.
READ_LIMIT = 64 * 1024
# Levels of nesting a classifier's answer may have: theirs are flat objects of lists (issue 13).
MAX_JSON_DEPTH = 16


class LLMError(Exception):
    """A chat call failed; ``raw`` holds what the server sent, if anything.

    ``retry_after`` is the server's Retry-After in seconds (None when absent), ``timeout``
    whether the call ran out of time.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        raw: str = "",
        retry_after: float | None = None,
        timeout: bool = False,
    ):
        super().__init__(message)
        self.permanent = permanent
        self.raw = raw
        self.retry_after = retry_after
        self.timeout = timeout


@dataclass(frozen=True)
class Server:
    """An LLM server as the client sees it.

    Args:
        base_url: e.g. ``http://gpu-host:8000/v1`` or ``https://api.anthropic.com/v1``.
        api_style: "openai" or "anthropic".
        api_key_env: the name of the environment variable that holds the API key ("" for
            none); the key itself is read at call time and never stored.
        max_in_flight: calls in flight at once to this server from this process; more wait
            for a slot.
    """

    base_url: str
    api_style: str = "openai"
    api_key_env: str = ""
    max_in_flight: int = 16

    def api_key(self) -> str:
        """The key from the environment, or "" when unset.

        Raises:
            EndpointRefused: ``api_key_env`` is not in the ``LLM_KEY_VARIABLES`` setting.
        """
        check_key_variable(self.api_key_env)
        return os.environ.get(self.api_key_env, "").strip() if self.api_key_env else ""


def default_server() -> Server:
    """The server of the settings: ``LLM_BASE_URL``, OpenAI style, key from ``LLM_API_KEY``."""
    return Server(settings.LLM_BASE_URL, "openai", "LLM_API_KEY", settings.LLM_MAX_IN_FLIGHT)


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header (seconds, or an HTTP date) into seconds from now, or None."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time(), 0.0)
    except (TypeError, ValueError):
        return None


def to_json(value) -> bytes:
    """``value`` as compact UTF-8 JSON, the way every request body is sent."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def anthropic_body(body: dict) -> dict:
    """Turn a chat-completions request body into a Messages API one.

    System messages (wherever they are) join into ``system``; the ``response_format`` schema
    becomes the one tool the model must call, whose input is the answer. Consecutive messages
    of one role are merged, and a leading assistant message is dropped: the conversation must
    start with the user.
    """
    system, messages = [], []
    for message in body["messages"]:
        if message["role"] == "system":
            system.append(message["content"])
        elif messages and messages[-1]["role"] == message["role"]:
            messages[-1]["content"] += "\n\n" + message["content"]
        elif messages or message["role"] == "user":
            messages.append({"role": message["role"], "content": message["content"]})
    spec = body["response_format"]["json_schema"]
    return {
        "model": body["model"],
        "max_tokens": body["max_tokens"],
        "temperature": body["temperature"],
        "system": "\n\n".join(system),
        "messages": messages,
        "tools": [
            {
                "name": spec["name"],
                "description": "Record the answer to the question.",
                "input_schema": spec["schema"],
            }
        ],
        "tool_choice": {"type": "tool", "name": spec["name"]},
        "stream": True,
    }


class LLMClient:
    """One shared ``aiohttp.ClientSession`` for every LLM server, and each server's call slots.

    The session is made on the first call, on the running event loop, and bound to it: one
    client per loop (``get_client``). Its pool has no cap (the per-server slots bound the
    connections in flight) and keeps every connection handed back whole for
    ``KEEPALIVE_SECONDS``, so a busy server's connections are reused rather than opened and
    closed each turn; a call cancelled or failed mid-answer closes its connection instead.
    aiohttp, not httpx, because it costs about a fifth of the CPU per call (bench/llmclient.py).
    """

    def __init__(self):
        self._session: aiohttp.ClientSession | None = None
        self._slots: dict[Server, asyncio.Semaphore] = {}

    def slot(self, server: Server) -> asyncio.Semaphore:
        """The semaphore that caps this server's calls in flight (``server.max_in_flight``)."""
        if server not in self._slots:
            self._slots[server] = asyncio.Semaphore(max(server.max_in_flight, 1))
        return self._slots[server]

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=0, keepalive_timeout=KEEPALIVE_SECONDS, ssl=_tls_context()
                ),
                cookie_jar=aiohttp.DummyCookieJar(),  # no server's cookie goes to another
                trust_env=False,  # no proxy from the environment: calls go where the row says
            )
        return self._session

    async def complete_json(
        self, server: Server, body: dict | bytes, timeout: float, *, timed_reads: bool = True
    ) -> tuple[dict, str]:
        """Send one chat request whose answer must be one JSON object.

        Args:
            server: where to send it, and in which API style.
            body: a chat-completions request body (``model``, ``messages``,
                ``response_format`` with a json_schema, ``max_tokens``, ``temperature``); or,
                for an "openai" style server only, that body with ``"stream": false`` already
                serialized (``to_json``; ``Classifier.request_json`` makes it from pieces).
            timeout: seconds allowed for each network step (connect, each read).
            timed_reads: False leaves the reads untimed, for a caller whose own deadline
                cancels the call (the fan-out): aiohttp resets the read timer on every piece
                it reads, 2% of daphne's GIL time at 50 chats (issue 16).
        Returns:
            ``(decoded object, raw answer text)``.
        Raises:
            LLMError: the call failed, or the answer is not a JSON object; permanent, with no
                request sent, when the settings refuse the server's URL or key variable
                (``agent.llm.guard``).
            TypeError: a serialized body for a server of another style.
        """
        try:
            check_base_url(server.base_url)
            key = server.api_key()
        except EndpointRefused as exc:
            logger.error("LLM endpoint %s refused: %s", server.base_url, exc)
            raise LLMError(f"endpoint refused: {exc}", permanent=True) from exc
        base = server.base_url.rstrip("/")
        headers = {"Content-Type": "application/json"}
        if server.api_style == "anthropic":
            if isinstance(body, bytes):
                raise TypeError("a serialized body is for an openai style server only")
            url, data = f"{base}/messages", to_json(anthropic_body(body))
            headers["anthropic-version"] = ANTHROPIC_VERSION
            if key:
                headers["x-api-key"] = key
        else:
            url = f"{base}/chat/completions"
            data = body if isinstance(body, bytes) else to_json({**body, "stream": False})
            if key:
                headers["Authorization"] = f"Bearer {key}"
        content = await self._post(url, data, headers, timeout, server.api_style, timed_reads)
        return decode_answer(content)

    async def _post(
        self,
        url: str,
        data: bytes,
        headers: dict[str, str],
        timeout: float,
        api_style: str,
        timed_reads: bool = True,
    ) -> str:
        """POST ``data`` to ``url`` and return the answer's content text (``complete_json``).

        Redirects are not followed (a 3xx is an ``HTTP 3xx`` error): an LLM endpoint must not
        send our key elsewhere. A call that ends before its answer is whole (cancelled, an
        error) closes its connection, which the server sees as the client going away.
        """
        steps = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_read=timeout if timed_reads else None
        )
        try:
            response = await self._http().post(
                url, data=data, headers=headers, timeout=steps, allow_redirects=False
            )
            try:
                chunks = response.content.iter_any()
                if response.status != 200:
                    raw = (await _read_bounded(chunks)).decode(errors="replace")[:RAW_LIMIT]
                    status = response.status
                    raise LLMError(
                        f"HTTP {status}",
                        permanent=400 <= status < 500 and status != 429,
                        raw=raw,
                        retry_after=retry_after_seconds(response.headers.get("Retry-After")),
                    )
                if api_style == "anthropic":
                    content = await _anthropic_stream(chunks)
                elif response.headers.get("Content-Type", "").startswith("text/event-stream"):
                    content = await _openai_stream(chunks)  # a server that streams anyway
                else:
                    content = _openai_completion(await _read_bounded(chunks))
                await _finish(response)
            except BaseException:
                response.close()  # mid-answer: never back to the pool
                raise
        except TimeoutError as exc:  # aiohttp's connect and read timeouts are TimeoutErrors
            raise LLMError(
                f"timed out: {type(exc).__name__}", permanent=False, timeout=True
            ) from exc
        except aiohttp.ClientError as exc:
            raise LLMError(f"connection failed: {exc!r}", permanent=False) from exc
        return content

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None


# Seconds an idle connection to an LLM server is kept for reuse (aiohttp's default too).
KEEPALIVE_SECONDS = 15.0
# Seconds allowed, once the answer is whole, for the rest of the body (the chunked terminator
# that follows ``[DONE]`` at once); a slower server's connection is closed, its answer kept.
DRAIN_SECONDS = 0.05
DRAIN_LIMIT = 4096  # bytes of body after the answer read to save the connection


async def _finish(response: aiohttp.ClientResponse) -> None:
    """Hand the connection back to the pool once the body is read to its end, else close it.

    After ``[DONE]`` or ``message_stop`` only the end of the chunked body is left; reading it
    keeps the connection for the next call instead of opening a new one.
    """
    if not response.content.is_eof():
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                rest = await response.content.read(DRAIN_LIMIT + 1)
                if len(rest) > DRAIN_LIMIT or not response.content.is_eof():
                    response.close()
                    return
        except (TimeoutError, aiohttp.ClientError):
            response.close()
            return
    response.release()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The TLS context of https endpoints: certificates verified against certifi's roots (as
    httpx does), host names checked."""
    return ssl.create_default_context(cafile=certifi.where())


def decode_answer(content: str) -> tuple[dict, str]:
    """The answer's content decoded: ``(JSON object, raw text for the log)``.

    Raises:
        LLMError: permanent, the content is not a JSON object or nests too deep.
    """
    content = content[:READ_LIMIT]
    try:
        data = json.loads(content)
    except (ValueError, RecursionError) as exc:
        raise LLMError("content is not JSON", permanent=True, raw=content[:RAW_LIMIT]) from exc
    if not isinstance(data, dict):
        raise LLMError("content is not a JSON object", permanent=True, raw=content[:RAW_LIMIT])
    if not _shallow(data):
        raise LLMError(
            f"content nests deeper than {MAX_JSON_DEPTH} levels",
            permanent=True,
            raw=content[:RAW_LIMIT],
        )
    return data, content[:RAW_LIMIT]


def _too_long() -> LLMError:
    return LLMError(f"answer over {READ_LIMIT} bytes", permanent=True)


async def _read_bounded(chunks: AsyncIterator[bytes]) -> bytes:
    """The body from ``chunks`` (its pieces as they arrive), read up to ``READ_LIMIT`` bytes.

    Raises:
        LLMError: the body is longer (permanent); what was read is not kept.
    """
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > READ_LIMIT:
            raise _too_long()
    return bytes(body)


class _Events:
    """The ``data:`` payloads of a server-sent-events body fed piece by piece, reading at most
    ``READ_LIMIT`` bytes of it (``LLMError`` past that, as from ``_read_bounded``).

    Lines are split from the raw bytes (``\n``, ``\r\n``; a payload is UTF-8 JSON or
    ``[DONE]``, per the SSE spec and OpenAI's stream format), with no text decoder or line
    splitter of the HTTP library in the way, in one pass over each piece and no generator
    per call (issue 16). Payloads come as bytes, stripped.
    """

    __slots__ = ("seen", "rest")

    def __init__(self):
        self.seen = 0
        self.rest = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """The payloads of the lines ``chunk`` completes (the last, unfinished line is kept)."""
        self.seen += len(chunk)
        if self.seen > READ_LIMIT:
            raise _too_long()
        lines = (self.rest + chunk if self.rest else chunk).split(b"\n")
        self.rest = lines.pop()
        return [line[5:].strip() for line in lines if line.startswith(b"data:")]

    def end(self) -> list[bytes]:
        """The payload of a last line the body ended without a newline, if any."""
        rest, self.rest = self.rest, b""
        return [rest[5:].strip()] if rest.startswith(b"data:") else []


def _shallow(data) -> bool:
    """Whether decoded JSON nests at most ``MAX_JSON_DEPTH`` levels (checked without
    recursion, so any depth is safe to ask about)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return False
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return True


def _not_a_stream(what: str, raw: list[str]) -> LLMError:
    return LLMError(f"not a {what} stream", permanent=True, raw="\n".join(raw)[:RAW_LIMIT])


async def _openai_stream(chunks: AsyncIterator[bytes]) -> str:
    """The message content of a streamed chat completion.

    Raises:
        LLMError: a frame is not a ``chat.completion.chunk`` (permanent), the server sent an
            error frame, or the stream ended before ``[DONE]`` (transient).
    """
    return await _read_stream(chunks, _openai_frame, "[DONE]")


async def _read_stream(chunks: AsyncIterator[bytes], frame, last: str) -> str:
    """Feed each ``data:`` payload of a server-sent-events body to ``frame(data, parts, raw)``
    until it returns True, then return the joined ``parts``.

    Raises:
        LLMError: what ``frame`` raises, or (transient) the stream ended before ``last``.
    """
    parts, raw, events = [], [], _Events()
    async for chunk in chunks:
        for data in events.feed(chunk):
            if frame(data, parts, raw):
                return "".join(parts)
    for data in events.end():
        if frame(data, parts, raw):
            return "".join(parts)
    raise LLMError(
        f"stream ended before {last}", permanent=False, raw="".join(parts)[:RAW_LIMIT]
    )


def _openai_frame(data: bytes, parts: list[str], raw: list[str]) -> bool:
    """Add one ``data:`` payload's content to ``parts``; True when it is ``[DONE]``."""
    if data == b"[DONE]":
        return True
    text = data.decode(errors="replace")
    raw.append(text)
    try:
        chunk = json.loads(text)
        if "error" in chunk:
            raise LLMError("error in stream", permanent=False, raw=text[:RAW_LIMIT])
        choices = chunk["choices"]
        delta = choices[0]["delta"] if choices else {}
    except (ValueError, KeyError, IndexError, TypeError, RecursionError) as exc:
        raise _not_a_stream("chat-completion", raw) from exc
    content = delta.get("content") if isinstance(delta, dict) else None
    if isinstance(content, str):
        parts.append(content)
    return False


def _openai_completion(body: bytes) -> str:
    """The message content of a non-streamed chat completion."""
    raw = body.decode(errors="replace")
    try:
        content = json.loads(raw)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError, RecursionError) as exc:
        raise LLMError("not a chat completion", permanent=True, raw=raw[:RAW_LIMIT]) from exc
    if not isinstance(content, str):
        raise LLMError("message content is not text", permanent=True, raw=raw[:RAW_LIMIT])
    return content


async def _anthropic_stream(chunks: AsyncIterator[bytes]) -> str:
    """The forced tool call's input JSON, from a streamed Messages API response.

    Raises:
        LLMError: an event is not JSON (permanent), an ``error`` event (e.g. overloaded), or
            the stream ended before ``message_stop`` (transient).
    """
    return await _read_stream(chunks, _anthropic_event, "message_stop")


def _anthropic_event(data: bytes, parts: list[str], raw: list[str]) -> bool:
    """Add one event's tool-input piece to ``parts``; True when it is ``message_stop``."""
    text = data.decode(errors="replace")
    raw.append(text)
    try:
        event = json.loads(text)
        kind = event["type"]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise _not_a_stream("Messages API", raw) from exc
    if kind == "error":
        raise LLMError("error in stream", permanent=False, raw=text[:RAW_LIMIT])
    if kind == "content_block_delta" and isinstance(event.get("delta"), dict):
        if event["delta"].get("type") == "input_json_delta":
            parts.append(str(event["delta"].get("partial_json", "")))
    return kind == "message_stop"


_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LLMClient]" = (
    weakref.WeakKeyDictionary()
)


def get_client() -> LLMClient:
    """The ``LLMClient`` shared by every turn on the running event loop (a connection pool
    cannot cross loops)."""
    loop = asyncio.get_running_loop()
    if loop not in _clients:
        _clients[loop] = LLMClient()
    return _clients[loop]


@atexit.register
def _close_at_exit() -> None:
    """Close the clients whose event loop has stopped but is not closed (daphne's, at Ctrl-C
    or SIGTERM), so the process ends without aiohttp's "Unclosed client session" warnings."""
    for loop, client in list(_clients.items()):
        if client._session is None or loop.is_closed() or loop.is_running():
            continue
        try:
            loop.run_until_complete(client.aclose())
        except Exception:  # exiting anyway: a pool that cannot close cleanly is dropped
            logger.debug("could not close an LLM client at exit", exc_info=True)


async def close_clients() -> None:
    """Close the client of the running event loop (at shutdown, and after each test)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()
