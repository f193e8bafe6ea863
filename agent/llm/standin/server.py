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
import socket
import threading
import time
from collections import Counter
from http.server import ThreadingHTTPServer

from agent.llm.standin.handler import STEP, Handler, completion, hang_up
from agent.llm.standin.rules import classify

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "standin"
FAULTS = ("429", "503", "hang", "garbage", "truncated", "garbage-stream")
OUTAGES = ("down", *FAULTS)  # what ``StandinServer.outage`` takes


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
        self._httpd = _HTTPServer((self.host, self.requested_port), Handler, self)
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
            hang_up(connection)
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
            hang_up(connection)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Listen backlog: the default 5 made a burst of clients wait for 1 s SYN retries.
    request_queue_size = 1024

    def __init__(self, address, handler, standin: StandinServer):
        self.standin = standin
        super().__init__(address, handler)

    def handle_error(self, request, client_address) -> None:
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)

