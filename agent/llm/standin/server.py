"""A rule-based stand-in for the LLM server, so the product runs without a GPU.

It speaks the OpenAI chat-completions protocol (``POST /v1/chat/completions``,
``GET /v1/models``) and answers the four classifiers of ``agent.llm.classifiers`` with the
keyword rules of ``agent.llm.standin.rules``: deterministic, instant, and wrong wherever a
keyword list is. It is for local runs, tests and benchmarks, never for judging the classifiers'
accuracy.

Standard library only: ``StandinServer`` runs a ``ThreadingHTTPServer`` in a background thread,
on an ephemeral port in tests. ``python manage.py llm_standin`` runs it from the command line.
Latency (per classifier) and faults (429, 503, hang, garbage, truncated and garbage streams) can
be switched on while it runs, and ``outage()`` takes it down altogether (port closed) and back.

With ``"stream": true`` it answers as vLLM does: server-sent events, one ``chat.completion.chunk``
frame per piece of the answer, then ``data: [DONE]``; the headers go out at once and the latency
is spent before the first content frame. It watches the connection while it waits or writes:
a client that hangs up before the end is counted in ``abandoned``, the way vLLM aborts a
request whose client went away.
"""

import json
import logging
import select
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agent.llm.standin.rules import classify, detect, text_of

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "standin"
FAULTS = ("429", "503", "hang", "garbage", "truncated", "garbage-stream")
OUTAGES = ("down", *FAULTS)  # what ``StandinServer.outage`` takes
GARBAGE = "Sure! The answer is yes."
HANG_LIMIT = 600.0  # seconds a "hang" lasts at most when the client never gives up
STEP = 0.05  # seconds between checks of the stop flag and the client while sleeping
PIECE = 12  # characters of the answer per streamed chunk


class BadRequest(ValueError):
    """The request body is not a chat-completions request."""


def parse_request(raw: bytes) -> dict:
    """Decode a chat-completions request body.

    Returns:
        The body as a dict with a non-empty ``messages`` list of dicts.
    Raises:
        BadRequest: not JSON, not an object, or no usable ``messages``.
    """
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list")
    if not all(isinstance(message, dict) for message in messages):
        raise BadRequest("every message must be an object")
    return body


def completion(model: str, content: str, messages: list[dict], number: int) -> dict:
    """An OpenAI ``chat.completion`` object whose one choice says ``content``.

    Token counts in ``usage`` are words, a rough stand-in for tokens.
    """
    prompt_tokens = sum(len(text_of(message).split()) for message in messages)
    completion_tokens = len(content.split())
    return {
        "id": f"chatcmpl-standin-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def error_body(message: str, kind: str, code: str | None = None) -> dict:
    """An OpenAI-style error body: ``{"error": {"message", "type", "code"}}``."""
    return {"error": {"message": message, "type": kind, "code": code}}


class StandinServer:
    """The stand-in LLM server, run in a background thread.

    Args:
        host: the address to listen on.
        port: the TCP port; 0 picks a free one (see ``port`` and ``base_url`` once started).
        latency_ms: milliseconds to wait before answering: one number for every classifier, or
            a dict by classifier name, where the key "*" covers the names not listed.
        fault: None, or one of ``FAULTS``: "429" (with ``Retry-After: retry_after``) and "503"
            answer with that status, "hang" never answers (until the client goes away or the
            server stops), "garbage" answers 200 with a content that is not JSON, "truncated"
            sends the first part of the answer and closes the connection, "garbage-stream"
            answers 200 with a body that is not a chat completion (not SSE frames when
            streamed).
        fault_classifier: limit the fault to this classifier's requests; None means all.
        fault_times: the fault hits only the next N matching requests, then clears itself
            (e.g. one 503, then success); None means every request.
        model: the model name listed by ``GET /v1/models`` and used when a request names none.

    ``latency_ms``, ``fault``, ``fault_classifier``, ``fault_times`` and ``retry_after`` (the
    429's header value) may be changed while it runs. ``requests`` counts the chat-completion
    requests received, by classifier name ("unknown" when not recognised), faulted ones
    included; ``abandoned`` counts those whose client hung up before the answer was complete.
    Use it as a context manager, or call ``start()`` and ``stop()``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 latency_ms: dict[str, float] | float = 0, fault: str | None = None,
                 fault_classifier: str | None = None, fault_times: int | None = None,
                 model: str = DEFAULT_MODEL):
        self.host = host
        self.requested_port = port
        self.latency_ms = latency_ms
        self.fault = fault
        self.fault_classifier = fault_classifier
        self.fault_times = fault_times
        self.retry_after = "1"
        self.model = model
        self.requests: Counter[str] = Counter()
        self.abandoned: Counter[str] = Counter()
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._served = 0

    @property
    def fault(self) -> str | None:
        """The fault in force: None or one of ``FAULTS``."""
        return self._fault

    @fault.setter
    def fault(self, value: str | int | None) -> None:
        value = None if value is None else str(value)
        if value is not None and value not in FAULTS:
            raise ValueError(f"fault must be one of {', '.join(FAULTS)} or None, not {value!r}")
        self._fault = value

    @property
    def port(self) -> int:
        """The port it listens on; with ``port=0``, known once started."""
        if self._httpd is not None:
            return self._httpd.server_address[1]
        if not self.requested_port:
            raise RuntimeError("the stand-in has not started yet")
        return self.requested_port

    @property
    def base_url(self) -> str:
        """The OpenAI base URL to give clients, e.g. ``http://127.0.0.1:8001/v1``."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self) -> "StandinServer":
        """Bind the port and serve in a daemon thread; return self.

        After a ``stop()``, it starts again on the same port, as a restarted server would.
        """
        if self._httpd is not None:
            raise RuntimeError("the stand-in is already started")
        self.stopping.clear()
        self._httpd = _HTTPServer((self.host, self.requested_port), _Handler, self)
        self.requested_port = self.port
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": STEP},
            name=f"llm-standin-{self.port}", daemon=True,
        )
        self._thread.start()
        logger.debug("rule-based LLM stand-in listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving: end sleeping and hanging requests, close every connection and the
        port, and wait for the threads. Safe to call twice."""
        if self._httpd is None:
            return
        self.stopping.set()
        self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            _hang_up(connection)
        self._httpd.server_close()  # joins the request threads
        self._thread.join()
        self._httpd = self._thread = None
        logger.debug("rule-based LLM stand-in stopped")

    def __enter__(self) -> "StandinServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def outage(self, mode: str | None) -> None:
        """Begin an outage of the LLM server, or end it (fault tests, ``bench/faults.py``).

        Args:
            mode: "down" closes the port, as when the server's process is gone: new
                connections are refused, open ones hung up. One of ``FAULTS`` answers every
                request of every classifier that way until further notice. None ends the
                outage: the fault is cleared, and the port opened again on the same number.
        Raises:
            ValueError: ``mode`` is not one of ``OUTAGES`` or None.
        """
        if mode is not None and mode not in OUTAGES:
            raise ValueError(f"mode must be one of {', '.join(OUTAGES)} or None, not {mode!r}")
        if mode == "down":
            self.stop()
            return
        with self._lock:
            self.fault, self.fault_classifier, self.fault_times = mode, None, None
        if self._httpd is None:
            self.start()

    def latency_for(self, name: str | None) -> float:
        """The latency for a classifier, in seconds."""
        latency = self.latency_ms
        if isinstance(latency, dict):
            latency = latency.get(name, latency.get("*", 0))
        return max(float(latency), 0.0) / 1000

    def fault_for(self, name: str | None) -> str | None:
        """The fault to apply to a request for classifier ``name``, or None; counts it against
        ``fault_times``."""
        with self._lock:
            if self.fault is None or self.fault_classifier not in (None, name):
                return None
            fault = self.fault
            if self.fault_times is not None:
                self.fault_times -= 1
                if self.fault_times <= 0:
                    self.fault, self.fault_times = None, None
            return fault

    def sleep(self, seconds: float) -> bool:
        """Sleep ``seconds``, waking when the server stops; return False if it did."""
        return not self.stopping.wait(seconds)

    def reply(self, body: dict, name: str | None) -> dict:
        """The ``chat.completion`` answering a parsed request for classifier ``name`` (no
        latency, no fault)."""
        messages = body["messages"]
        response_format = body.get("response_format")
        spec = response_format.get("json_schema") if isinstance(response_format, dict) else None
        schema = spec.get("schema") if isinstance(spec, dict) else None
        content = json.dumps(classify(name, messages, schema))
        with self._lock:
            self._served += 1
            number = self._served
        model = body.get("model") if isinstance(body.get("model"), str) else self.model
        return completion(model, content, messages, number)

    def count(self, name: str) -> None:
        """Count one request for classifier ``name``."""
        with self._lock:
            self.requests[name] += 1

    def count_abandoned(self, name: str) -> None:
        """Count one request for classifier ``name`` whose client hung up before the end."""
        with self._lock:
            self.abandoned[name] += 1
        logger.debug("client hung up on a %s request", name)

    def wait_for_abandoned(self, total: int, timeout: float = 2.0) -> bool:
        """Wait until ``abandoned`` adds up to at least ``total``; False if ``timeout``
        seconds pass first (the stand-in notices a hang-up within ``STEP`` seconds)."""
        deadline = time.monotonic() + timeout
        while sum(self.abandoned.values()) < total:
            if time.monotonic() > deadline:
                return False
            time.sleep(STEP / 5)
        return True

    def track(self, connection: socket.socket, open_: bool) -> None:
        """Remember an open connection, so ``stop()`` can hang it up, or forget a closed one."""
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)
        if open_ and self.stopping.is_set():
            _hang_up(connection)


def _hang_up(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Listen backlog: the default 5 made a burst of clients wait for 1 s SYN retries.
    request_queue_size = 1024

    def __init__(self, address, handler, standin: StandinServer):
        self.standin = standin
        super().__init__(address, handler)

    def handle_error(self, request, client_address) -> None:
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the product's pooled client expects
    server_version = "llm-standin"
    # TCP_NODELAY: with Nagle's algorithm each small SSE frame waited ~40 ms for the client's ACK.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.standin.track(self.connection, True)

    def finish(self) -> None:
        self.server.standin.track(self.connection, False)
        super().finish()

    def log_message(self, format: str, *args) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            model = {"id": self.server.standin.model, "object": "model",
                     "created": 0, "owned_by": "standin"}
            self._send(200, {"object": "list", "data": [model]})
        else:
            self._send(404, error_body(f"no route {self.path}", "not_found_error"))

    def do_POST(self) -> None:
        standin = self.server.standin
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._discard_body()
            self._send(404, error_body(f"no route {self.path}", "not_found_error"))
            return
        try:
            body = parse_request(self._read_body())
        except BadRequest as exc:
            self._send(400, error_body(str(exc), "invalid_request_error"))
            return
        name = detect(body["messages"], body.get("response_format"))
        standin.count(name or "unknown")
        fault = standin.fault_for(name)
        if fault == "429":
            self._send(429, error_body("rate limited by the stand-in", "rate_limit_error",
                                       "rate_limit_exceeded"), {"Retry-After": standin.retry_after})
            return
        if fault == "503":
            self._send(503, error_body("the stand-in is unavailable", "server_error"))
            return
        if fault == "hang":
            if not self._wait(HANG_LIMIT) and not standin.stopping.is_set():
                standin.count_abandoned(name or "unknown")
            self.close_connection = True
            return
        stream = body.get("stream") is True
        try:
            if stream:
                self._start_stream()
            if not self._wait(standin.latency_for(name)):
                raise ConnectionAbortedError
            reply = standin.reply(body, name)
            if fault == "garbage":
                reply["choices"][0]["message"]["content"] = GARBAGE
            if stream:
                self._stream(reply, fault)
            elif fault == "truncated":
                data = json.dumps(reply).encode()
                self._write_head(200, "application/json", {"Content-Length": str(len(data))})
                self.wfile.write(data[: len(data) // 2])
                self._cut()
            elif fault == "garbage-stream":
                self._send_raw(200, "application/json", b"<html>not a chat completion</html>")
            else:
                self._send(200, reply)
        except (ConnectionAbortedError, BrokenPipeError, ConnectionResetError):
            if not standin.stopping.is_set():
                standin.count_abandoned(name or "unknown")
            self.close_connection = True

    def _start_stream(self) -> None:
        """Send the headers of a streamed answer: SSE in HTTP/1.1 chunks."""
        self._write_head(200, "text/event-stream", {"Transfer-Encoding": "chunked",
                                                    "Cache-Control": "no-cache"})
        self.wfile.flush()

    def _stream(self, reply: dict, fault: str | None) -> None:
        """Send ``reply`` as chat.completion.chunk frames and ``[DONE]``, or as the fault says.

        Raises:
            BrokenPipeError, ConnectionResetError: the client hung up.
        """
        if fault == "garbage-stream":
            self._chunk(b"data: {not json at all\n\n")
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")
            return
        content = reply["choices"][0]["message"]["content"]
        base = {key: reply[key] for key in ("id", "created", "model")}
        base["object"] = "chat.completion.chunk"
        deltas = [{"role": "assistant", "content": ""}]
        deltas += [{"content": content[i:i + PIECE]} for i in range(0, len(content), PIECE)]
        if fault == "truncated":
            for delta in deltas[:2]:
                self._event({**base, "choices": [{"index": 0, "delta": delta,
                                                  "finish_reason": None}]})
            self._cut()
            return
        for delta in deltas:
            if not self._wait(0):
                raise ConnectionAbortedError
            self._event({**base, "choices": [{"index": 0, "delta": delta,
                                              "finish_reason": None}]})
        self._event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                     "usage": reply["usage"]})
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    def _event(self, payload: dict) -> None:
        self._chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _chunk(self, data: bytes) -> None:
        """Write one HTTP/1.1 chunk (an empty one ends the body)."""
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _cut(self) -> None:
        """Close the connection in the middle of a body."""
        self.wfile.flush()
        self.close_connection = True
        _hang_up(self.connection)

    def _wait(self, seconds: float) -> bool:
        """Wait ``seconds`` while watching the client; False if it hung up or the server is
        stopping."""
        deadline = time.monotonic() + seconds
        stopping = self.server.standin.stopping
        while True:
            if stopping.is_set() or self._client_gone():
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, STEP))

    def _client_gone(self) -> bool:
        """Whether the client closed its end (a read would give end-of-file at once)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True  # whatever follows cannot be framed
            raise BadRequest("a Content-Length header is required")
        return self.rfile.read(int(length))

    def _discard_body(self) -> None:
        try:
            self._read_body()
        except BadRequest:
            pass

    def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, "application/json", json.dumps(payload).encode(), headers)

    def _send_raw(self, status: int, content_type: str, data: bytes,
                  headers: dict[str, str] | None = None) -> None:
        length = {"Content-Length": str(len(data))}
        self._write_head(status, content_type, length | (headers or {}))
        self.wfile.write(data)

    def _write_head(self, status: int, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in headers.items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
