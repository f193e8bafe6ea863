"""Webhook delivery through the task queue: throughput and the lag from a booking to its
webhook, against a peer in the same run.

    .venv/bin/python bench/webhooks.py [--events 2000] [--leads 100] [--workers 1 3]

Uses a fresh ``realestate_webhooks`` database on the embedded PostgreSQL (or DATABASE_URL),
the example receiver (deploy/webhook_receiver.py) on loopback, and procrastinate workers
started as ``make run`` starts them (``realestate.dev.devserver.worker_command``).

* throughput: ``--events`` events over ``--leads`` leads written in one transaction, then
  the time from its commit until the receiver printed the last one (events/s). Peer: the same
  number of signed POSTs sent one after another from this process on one httpx client (no
  queue, no database): what one sender achieves at best.
* lag: 20 bookings through the router, one at a time; from the turn's commit to the receiver
  printing ``appointment.booked`` (p50, max). Peer: one signed POST's round trip (p50).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from realestate.dev import devdb  # noqa: E402
from realestate.dev.devserver import free_port, wait_for_port, worker_command  # noqa: E402

DATABASE = "realestate_webhooks"
SECRET = "whsec_bench_secret_0123456789"


class Receiver:
    """The example receiver; ``arrived[event id]`` is when its line was read (monotonic)."""

    def __init__(self, port: int):
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "deploy" / "webhook_receiver.py"), "--port", str(port),
             "--secret", SECRET], stdout=subprocess.PIPE, text=True,
        )
        self.arrived: dict[str, float] = {}
        self.types: dict[str, str] = {}
        threading.Thread(target=self._read, daemon=True).start()
        wait_for_port(port, self.process)

    def _read(self):
        for line in self.process.stdout:
            event = json.loads(line)
            self.arrived.setdefault(event["id"], time.monotonic())
            self.types[event["id"]] = event["type"]

    def wait_for(self, ids, seconds=600):
        deadline = time.monotonic() + seconds
        while not all(i in self.arrived for i in ids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{sum(i in self.arrived for i in ids)} of {len(ids)} arrived")
            time.sleep(0.005)


def throughput(receiver, events: int, leads: int) -> float:
    from django.db import transaction
    from django.utils import timezone

    from agent.crm import leads as crm_leads
    from agent.crm import outbox
    from agent.models import Conversation

    with transaction.atomic():
        rows = [crm_leads.lead_for(Conversation.objects.create(), timezone.now())
                for _ in range(leads)]
        ids = [str(e.event_id) for e in (outbox.emit("lead.updated", rows[n % leads], {"n": n})
                                         for n in range(events - leads))]
    start = time.monotonic()
    receiver.wait_for(ids)
    return len(ids) / (max(receiver.arrived[i] for i in ids) - start)


def peer_throughput(port: int, count: int) -> float:
    import httpx

    from agent.crm import signing

    body = json.dumps({"version": 1, "id": "x", "type": "lead.updated", "data": {}}).encode()
    with httpx.Client() as client:
        start = time.monotonic()
        for n in range(count):
            payload = body.replace(b'"x"', f'"peer-{n}"'.encode())
            client.post(f"http://127.0.0.1:{port}/", content=payload, headers={
                "Chat-Signature": signing.signature(SECRET, int(time.time()), payload)})
        return count / (time.monotonic() - start)


def booking_lags(receiver) -> list[float]:
    from datetime import UTC, datetime, timedelta

    from django.db import transaction

    from agent.chat.router import route_turn
    from agent.crm.models import Event
    from agent.llm.classifiers import AppointmentChange, ListingQuestion, Pricing, Scheduling
    from agent.llm.fanout import Outcome
    from agent.models import Conversation, Message
    from listings.agencytime import local

    lags = []
    day = datetime.now(UTC) + timedelta(days=2)
    for n in range(20):
        when = local(day + timedelta(days=n // 4))
        said = [Outcome("pricing", "m", Pricing(False, None), "{}", 5),
                Outcome("appointment_change", "m", AppointmentChange("none"), "{}", 5),
                Outcome("scheduling", "m", Scheduling(True, f"{when:%Y-%m-%d}",
                                                      f"{10 + n % 4}:00"), "{}", 5),
                Outcome("listing_question", "m", ListingQuestion(False), "{}", 5)]
        conversation = Conversation.objects.create()
        with transaction.atomic():
            message = Message.objects.store(conversation.id, Message.Role.USER, "book")
            route_turn(conversation, message, said, datetime.now(UTC))
        committed = time.monotonic()
        booked = Event.objects.filter(
            type="appointment.booked", lead__links__conversation=conversation
        )
        ids = [str(e) for e in booked.values_list("event_id", flat=True)]
        if not ids:
            continue  # that slot was outside hours or taken; skip it
        receiver.wait_for(ids, 60)
        lags.append(receiver.arrived[ids[0]] - committed)
    return lags


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--leads", type=int, default=100)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 3])
    args = parser.parse_args()
    devdb.bench_django(DATABASE, DEBUG="false", WEBHOOK_ALLOW_PRIVATE="true", LOG_LEVEL="WARNING")
    from django.conf import settings
    from django.core.management import call_command

    from agent.crm.models import WebhookEndpoint
    from agent.crm.outbox import EVENT_TYPES

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"  # booking emails
    call_command("seed_demo", stdout=open(os.devnull, "w"))
    port = free_port()
    receiver = Receiver(port)
    WebhookEndpoint.objects.create(name="bench", url=f"http://127.0.0.1:{port}/",
                                   secret=SECRET, events=list(EVENT_TYPES))
    peer = peer_throughput(port, 500)
    print(f"peer: one sender, signed POSTs in a loop: {peer:,.0f} events/s")
    for count in args.workers:
        workers = [subprocess.Popen(worker_command(), cwd=ROOT, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL) for _ in range(count)]
        time.sleep(5)  # the workers start (Django setup); not part of any figure
        try:
            rate = throughput(receiver, args.events, args.leads)
            print(f"{count} worker(s), {args.events} events over {args.leads} leads: "
                  f"{rate:,.0f} events/s ({rate / peer:.2f} x peer)")
            lags = booking_lags(receiver)
            print(f"{count} worker(s), booking -> webhook lag over {len(lags)} bookings: "
                  f"p50 {statistics.median(lags) * 1000:,.0f} ms, max {max(lags) * 1000:,.0f} ms"
                  f" (peer round trip {1000 / peer:.1f} ms)")
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait()
    receiver.process.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
