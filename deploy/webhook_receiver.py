#!/usr/bin/env python3
"""A webhook receiver for trying the chat's CRM webhooks: verifies each delivery's signature
and prints its event as one JSON line on stdout (standard library only; copy it freely).

    python deploy/webhook_receiver.py --port 9000 --secret whsec_...   # or WEBHOOK_SECRET=...

Then add an endpoint http://127.0.0.1:9000/ with that secret in the admin (Chat > Webhook
endpoints; local runs allow loopback, see WEBHOOK_ALLOW_PRIVATE). A bad or stale signature
gets 401 and a line on stderr. Events are deduplicated by id, as a CRM should: a repeat is
answered 200 and printed with ``"duplicate": true``. How to verify: docs/webhooks.md.
"""

import argparse
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE = 300  # seconds between the signature's timestamp and our clock
MAX_BODY = 1_000_000  # bytes


def verify(secret: str, header: str, body: bytes, now: float) -> bool:
    """Whether ``header`` (``t=<unix seconds>,v1=<hex HMAC-SHA256>``) signs ``body``."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    if not parts.get("t", "").isdigit() or abs(now - int(parts["t"])) > TOLERANCE:
        return False
    signed = parts["t"].encode() + b"." + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def make_handler(secret: str, delay: float = 0):
    """The request handler class, checking signatures with ``secret`` and answering a
    delivery ``delay`` seconds after printing it."""
    seen: set[str] = set()
    lock = threading.Lock()  # requests run in threads: one event line at a time

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                return self._answer(413)
            body = self.rfile.read(length)
            if not verify(secret, self.headers.get("Chat-Signature", ""), body, time.time()):
                print("refused: bad or stale signature", file=sys.stderr, flush=True)
                return self._answer(401)
            event = json.loads(body)
            with lock:
                event["duplicate"] = event["id"] in seen
                seen.add(event["id"])
                sys.stdout.write(json.dumps(event) + "\n")
                sys.stdout.flush()
            time.sleep(delay)
            self._answer(200)

        def _answer(self, code: int):
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format, *args):  # stdout is for events only
            pass

    return Handler


def main() -> None:
    """Serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret", default=os.environ.get("WEBHOOK_SECRET", ""))
    parser.add_argument("--delay", type=float, default=0,
                        help="seconds to wait before answering (to try timeouts and crashes)")
    args = parser.parse_args()
    if not args.secret:
        parser.error("--secret or WEBHOOK_SECRET is required")
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.secret, args.delay))
    print(f"listening on http://127.0.0.1:{args.port}/", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
