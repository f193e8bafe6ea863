"""The stand-in's HTTP side: the request handler, and the OpenAI wire format it reads and
writes (request checks, completion and error bodies). ``agent.llm.standin.server`` runs it;
the answers come from ``StandinServer.answer`` and ``agent.llm.standin.rules``."""

import json
import logging
import select
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agent.llm.standin.rules import detect, text_of

logger = logging.getLogger(__name__)

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



def hang_up(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class Handler(BaseHTTPRequestHandler):
    """One HTTP connection to the stand-in: ``GET /v1/models`` and ``POST /v1/chat/completions``,
    with the latency and fault of the ``StandinServer`` it belongs to."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the product's pooled client expects
    server_version = "llm-standin"
    # TCP_NODELAY: with Nagle's algorithm each small SSE frame waited ~40 ms for the client's ACK.
    disable_nagle_algorithm = True
    server: ThreadingHTTPServer  # the server's ``_HTTPServer``, which has ``standin``

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
        hang_up(self.connection)

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
