"""Webhooks end to end: procrastinate workers (``manage.py procrastinate worker``) and the
example receiver (deploy/webhook_receiver.py) as real processes on loopback, on the test
database. The receiver down then up, a worker killed mid-delivery, several workers at once,
and a bad signature.

Waiting: ``wait_until`` polls the database every 0.1 s up to a wide deadline (60 s) for
something that takes well under 5 s here; no test depends on how fast it happens.
"""

import json
import queue
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from agent.crm import leads, outbox
from agent.crm.models import Delivery, Event, Lead
from agent.models import Conversation
from agent.tasks import rescue
from realestate.dev.devserver import free_port, wait_for_port
from tests import ROOT
from tests.chat.test_booking_chat import say
from tests.crm.helpers import SECRET, endpoint
from tests.servers import app_env

pytestmark = pytest.mark.django_db(transaction=True)

DEADLINE = 60  # seconds; each wait below is done in well under 5 s on this machine


class Receiver:
    """The example receiver in a subprocess; its printed events arrive in ``events``."""

    def __init__(self, port: int, delay: float = 0):
        command = [sys.executable, str(ROOT / "deploy" / "webhook_receiver.py"),
                   "--port", str(port), "--secret", SECRET, "--delay", str(delay)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        self.events: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        wait_for_port(port, self.process)

    def _read(self):
        for line in self.process.stdout:
            self.events.put(json.loads(line))

    def take(self, count: int) -> list[dict]:
        """The next ``count`` events printed (each within DEADLINE)."""
        return [self.events.get(timeout=DEADLINE) for _ in range(count)]

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)
        self.process.stdout.close()


def worker(**env: str) -> subprocess.Popen:
    """A procrastinate worker on the test database, retrying quickly (0.2 s, doubling to 1 s)."""
    environment = app_env(
        WEBHOOK_ALLOW_PRIVATE="true", WEBHOOK_RETRY_FIRST="0.2", WEBHOOK_RETRY_MAX_WAIT="1",
        WEBHOOK_TIMEOUT="30", **env,
    )
    return subprocess.Popen(
        [sys.executable, "manage.py", "procrastinate", "worker", "--concurrency", "4",
         "--fetch-job-polling-interval", "0.2"],
        cwd=ROOT, env=environment, stdout=subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen, kill: bool = False) -> None:
    process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until(condition, what: str):
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE} s: {what}")
        time.sleep(0.1)


def chat_events(realtors) -> list[str]:
    """A visitor gives an email, books a call and cancels it: the lead's event ids, in order."""
    conversation = Conversation.objects.create()
    from agent.llm.classifiers import Scheduling

    say(conversation, "I'm ann@example.com")
    say(conversation, "book", Scheduling(True, "2026-11-24", "10:00"))
    say(conversation, "cancel", change="cancel")
    lead = Lead.objects.get()
    return [str(e) for e in Event.objects.filter(lead=lead).order_by("id")
            .values_list("event_id", flat=True)]


def test_the_receiver_down_then_up_gets_every_event_once_in_order(realtors):
    port = free_port()
    endpoint(f"http://127.0.0.1:{port}/")
    process = worker()
    try:
        expected = chat_events(realtors)
        assert list(Event.objects.order_by("id").values_list("type", flat=True)) == [
            "lead.created", "lead.updated", "appointment.booked", "appointment.cancelled"
        ]
        wait_until(lambda: Delivery.objects.filter(attempts__gte=3).exists(), "retries")
        assert not Delivery.objects.filter(status="delivered").exists()
        receiver = Receiver(port)
        try:
            got = receiver.take(len(expected))
            wait_until(lambda: not Delivery.objects.exclude(status="delivered").exists(),
                       "all delivered")
            assert [e["id"] for e in got] == expected
            assert not any(e["duplicate"] for e in got)
            bad = httpx.post(f"http://127.0.0.1:{port}/", content=b"{}",
                             headers={"Chat-Signature": f"t={int(time.time())},v1=00"})
            assert bad.status_code == 401 and receiver.events.empty()
        finally:
            receiver.stop()
    finally:
        stop(process)


def test_a_worker_killed_mid_delivery_loses_nothing(realtors):
    port = free_port()
    endpoint(f"http://127.0.0.1:{port}/")
    receiver = Receiver(port, delay=30)  # answers long after we kill the worker
    process = worker()
    try:
        expected = chat_events(realtors)
        first = receiver.take(1)[0]  # the worker is waiting for the answer now
        stop(process, kill=True)
        assert first["id"] == expected[0]
        receiver.stop()
        receiver = Receiver(port)
        # the killed worker's jobs go back to todo (its delivery, maybe a periodic one too)
        assert async_to_sync(rescue)(0) >= 1
        process = worker()
        got = receiver.take(len(expected))
        wait_until(lambda: not Delivery.objects.exclude(status="delivered").exists(),
                   "all delivered")
        # the first event again (the new receiver process forgot it; a CRM dedupes by its id),
        # then the rest, each once, in order
        assert [e["id"] for e in got] == expected
    finally:
        stop(process)
        receiver.stop()


def test_several_workers_deliver_each_event_once_in_order_per_lead(transactional_db):
    port = free_port()
    endpoint(f"http://127.0.0.1:{port}/")
    receiver = Receiver(port)
    workers = [worker() for _ in range(3)]
    try:
        expected = {}
        for _ in range(10):  # 10 leads, 10 events each, interleaved
            conversation = Conversation.objects.create()
            expected[leads.lead_for(conversation, timezone.now())] = []
        for step in range(9):
            for lead in expected:
                outbox.emit("lead.updated", lead, {"step": step})
        expected = {
            lead.pk: [str(e) for e in Event.objects.filter(lead=lead).order_by("id")
                      .values_list("event_id", flat=True)]
            for lead in expected
        }
        got = receiver.take(100)
        by_lead = {}
        for event in got:
            by_lead.setdefault(event["lead_id"], []).append(event["id"])
        assert by_lead == expected
        assert not any(e["duplicate"] for e in got)
    finally:
        for process in workers:
            stop(process)
        receiver.stop()
