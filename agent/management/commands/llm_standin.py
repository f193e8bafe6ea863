"""``manage.py llm_standin``: the rule-based LLM stand-in, so the chat runs without a GPU.

    python manage.py llm_standin --port 8001 [--host 127.0.0.1] [--latency-ms N]
        [--latency pricing=300 scheduling=50 ...]
        [--fault 429|503|hang|garbage|truncated|garbage-stream]
        [--fault-classifier NAME] [--model NAME]

Point ``LLM_BASE_URL`` at the URL it prints. Ctrl-C (or SIGTERM) stops it.
"""

import logging
import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from agent.llm.standin.server import DEFAULT_MODEL, FAULTS, StandinServer

logger = logging.getLogger(__name__)


def parse_latencies(items: list[str]) -> dict[str, float]:
    """Turn ``["pricing=300", ...]`` into ``{"pricing": 300.0, ...}`` (milliseconds).

    Raises:
        CommandError: an item is not ``NAME=MILLISECONDS`` with a number of at least 0.
    """
    latencies = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            milliseconds = float(value)
        except ValueError:
            milliseconds = -1.0
        if not sep or not name or milliseconds < 0:
            raise CommandError(f"--latency takes NAME=MILLISECONDS, not {item!r}")
        latencies[name] = milliseconds
    return latencies


class Command(BaseCommand):
    help = "Serve a rule-based, deterministic stand-in for the OpenAI-compatible LLM server."
    requires_system_checks = []  # it touches neither models nor the database

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
        parser.add_argument("--port", type=int, default=8001, help="TCP port (0: any free one)")
        parser.add_argument("--latency-ms", type=float, default=0.0, metavar="N",
                            help="milliseconds to wait before every answer")
        parser.add_argument("--latency", nargs="+", action="extend", default=[],
                            metavar="NAME=MS",
                            help="milliseconds for one classifier, e.g. pricing=300")
        parser.add_argument("--fault", choices=FAULTS,
                            help="answer 429 or 503, hang, send content that is not JSON, cut the "
                                 "answer short, or send a body that is not a chat completion")
        parser.add_argument("--fault-classifier", metavar="NAME",
                            help="apply --fault only to this classifier (e.g. pricing)")
        parser.add_argument("--model", default=DEFAULT_MODEL,
                            help="model name listed by GET /v1/models")

    def handle(self, *args, **options):
        if options["latency_ms"] < 0:
            raise CommandError("--latency-ms must be at least 0")
        latency = {"*": options["latency_ms"], **parse_latencies(options["latency"])}
        server = StandinServer(
            host=options["host"], port=options["port"], latency_ms=latency,
            fault=options["fault"], fault_classifier=options["fault_classifier"],
            model=options["model"],
        )
        done = threading.Event()
        # Both signals set ``done``, so neither can interrupt anything half done: a
        # KeyboardInterrupt could come before the ``try`` below (no stop then), and a parent
        # that ignores SIGINT (its children inherit that) would make Ctrl-C do nothing.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda signum, frame: done.set())
        try:
            server.start()
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {options['host']}:{options['port']}: {exc}"
            ) from exc
        fault = f", fault {server.fault}" if server.fault else ""
        if server.fault and server.fault_classifier:
            fault += f" for {server.fault_classifier} only"
        self.stdout.write(
            f"Rule-based LLM stand-in (keyword rules, not a model) listening on "
            f"{server.base_url}{fault}. Ctrl-C stops it."
        )
        self.stdout.flush()
        try:
            # Polled: a signal the kernel gives another thread is run by the main thread
            # only when it next wakes.
            while not done.wait(0.5):
                pass
        finally:
            server.stop()
        self.stdout.write("LLM stand-in stopped.")
