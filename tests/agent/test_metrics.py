"""/metrics: who may read it, and what it shows after real turns through the stand-in."""

import ipaddress
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import User
from django.test import AsyncClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent import metrics
from agent.llm.classifiers import CLASSIFIERS
from agent.models import Handoff

LOOPBACK = (ipaddress.ip_network("127.0.0.1"), ipaddress.ip_network("::1"))


def sample(name, **labels):
    """A sample's current value in the product's registry (0 when it has no series yet)."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def samples_of(text):
    """{(sample name, frozenset of label items): value} of a Prometheus text page."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# Access control. The test client's address is 127.0.0.1 unless REMOTE_ADDR says otherwise.


@pytest.mark.django_db
def test_nobody_reads_the_metrics_by_default_not_even_from_loopback(client):
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 404


@pytest.mark.django_db
def test_a_logged_in_visitor_who_is_not_staff_gets_404(client):
    client.force_login(User.objects.create_user("visitor"))
    assert client.get("/metrics").status_code == 404


@pytest.mark.django_db
def test_an_inactive_staff_user_gets_404(client):
    client.force_login(User.objects.create_user("former", is_staff=True, is_active=False))
    assert client.get("/metrics").status_code == 404


@pytest.mark.django_db
def test_staff_read_the_metrics_in_prometheus_text_format(client):
    client.force_login(User.objects.create_user("anna", is_staff=True))
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.7")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    families = {f.name for f in text_string_to_metric_families(response.content.decode())}
    assert {
        "chat_turn_duration_seconds",
        "chat_classifier_call_duration_seconds",
        "chat_classifier_retries",
        "chat_classifier_slot_wait_seconds",
        "chat_handoffs_queued",
    } <= families


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("allowed", "address", "status"),
    [
        (LOOPBACK, "127.0.0.1", 200),
        (LOOPBACK, "::1", 200),
        (LOOPBACK, "::ffff:127.0.0.1", 200),  # IPv4 loopback on a dual-stack socket
        (LOOPBACK, "10.0.0.5", 404),
        ((ipaddress.ip_network("10.0.0.0/8"),), "10.20.30.40", 200),
        ((ipaddress.ip_network("10.0.0.0/8"),), "11.0.0.1", 404),
        ((ipaddress.ip_network("10.0.0.0/8"),), "not-an-address", 404),
    ],
)
def test_an_allow_listed_address_reads_the_metrics_without_logging_in(
    client, settings, allowed, address, status
):
    settings.METRICS_ALLOWED_IPS = allowed
    assert client.get("/metrics", REMOTE_ADDR=address).status_code == status


@pytest.mark.django_db
def test_the_metrics_only_answer_get_and_head(client, settings):
    settings.METRICS_ALLOWED_IPS = LOOPBACK
    assert client.head("/metrics").status_code == 200
    assert client.post("/metrics").status_code == 405


# Content


@dataclass(frozen=True)
class EngineOutcome:
    """An outcome as the production fan-out engine reports it."""

    classifier: str
    model: str
    status: str
    latency_ms: int
    retries: int
    wait_ms: int
    error: str = ""


def test_record_turn_reads_status_retries_and_slot_wait_when_the_engine_gives_them():
    model = "engine-test-model"
    before_retries = sample("chat_classifier_retries_total", classifier="pricing", model=model)
    metrics.record_turn(
        "price",
        180,
        [
            EngineOutcome("pricing", model, "ok", 150, retries=2, wait_ms=40),
            EngineOutcome("scheduling", model, "cancelled", 152, retries=0, wait_ms=0),
        ],
    )
    pricing = {"classifier": "pricing", "model": model}
    assert sample("chat_classifier_retries_total", **pricing) == before_retries + 2
    assert sample("chat_classifier_slot_wait_seconds_sum", **pricing) == pytest.approx(0.04)
    assert sample("chat_classifier_call_duration_seconds_count", outcome="ok", **pricing) == 1
    assert sample(
        "chat_classifier_call_duration_seconds_count",
        classifier="scheduling", model=model, outcome="cancelled",
    ) == 1
    # 150 ms lands in the 150 ms bucket and above, not below.
    ok = {"outcome": "ok", **pricing}
    assert sample("chat_classifier_call_duration_seconds_bucket", le="0.1", **ok) == 0
    assert sample("chat_classifier_call_duration_seconds_bucket", le="0.15", **ok) == 1


async def say(communicator, text):
    """Send a visitor message and wait for the end of its turn (typing: false)."""
    await communicator.send_json_to({"type": "message", "text": text})
    while await communicator.receive_json_from(timeout=5) != {"type": "typing", "active": False}:
        pass


async def staff_metrics(settings) -> dict:
    """/metrics as a logged-in staff user sees it, parsed."""
    user = await User.objects.acreate(username="metrics-staff", is_staff=True)
    client = AsyncClient()
    await client.aforce_login(user)
    response = await client.get("/metrics")  # METRICS_ALLOWED_IPS is empty: staff only
    assert response.status_code == 200
    return samples_of(response.content.decode())


@pytest.mark.django_db(transaction=True)
async def test_a_price_turn_through_the_stand_in_shows_on_the_metrics_page(
    connect, standin, listings, settings
):
    model = settings.CLASSIFIER_MODELS["pricing"]

    def call(name, outcome):
        labels = {"classifier": name, "outcome": outcome,
                  "model": settings.CLASSIFIER_MODELS.get(name, settings.LLM_MODEL)}
        return ("chat_classifier_call_duration_seconds_count", frozenset(labels.items()))

    price_turns = ("chat_turn_duration_seconds_count", frozenset({"route": "price"}.items()))
    before = samples_of(generate_latest(metrics.REGISTRY).decode())

    communicator, _ = await connect()
    await say(communicator, "How much is listing 123456?")
    await communicator.disconnect()

    after = await staff_metrics(settings)
    assert after[price_turns] == before.get(price_turns, 0) + 1
    assert after[call("pricing", "ok")] == before.get(call("pricing", "ok"), 0) + 1
    # The others answered "no" or were cancelled by the early exit, depending on timing.
    for name in [c.name for c in CLASSIFIERS if c.name != "pricing"]:
        counted = [after.get(call(name, o), 0) - before.get(call(name, o), 0)
                   for o in ("ok", "cancelled")]
        assert sum(counted) == 1, name
    # The stand-in answers at once, so the calls took well under the 2 s bucket's bound.
    pricing_sum = ("chat_classifier_call_duration_seconds_sum",
                   frozenset({"classifier": "pricing", "model": model, "outcome": "ok"}.items()))
    assert 0 < after[pricing_sum] - before.get(pricing_sum, 0) < 2


@pytest.mark.django_db(transaction=True)
async def test_a_failed_turn_counts_errors_and_one_queued_handoff(connect, standin, settings):
    standin.fault = "503"
    errors = {
        name: sample("chat_classifier_call_duration_seconds_count", classifier=name,
                     model=settings.CLASSIFIER_MODELS[name], outcome="error")
        for name in ("pricing", "scheduling", "listing_question")
    }
    fallbacks = sample("chat_turn_duration_seconds_count", route="fallback")
    handoffs = sample("chat_handoffs_queued_total")

    communicator, _ = await connect()
    await say(communicator, "How much is listing 123456?")
    await say(communicator, "Hello?")  # the conversation already waits: no second handoff
    await communicator.disconnect()

    assert await Handoff.objects.acount() == 1
    assert sample("chat_handoffs_queued_total") == handoffs + 1
    assert sample("chat_turn_duration_seconds_count", route="fallback") == fallbacks + 2
    for name, count in errors.items():
        assert sample(
            "chat_classifier_call_duration_seconds_count", classifier=name,
            model=settings.CLASSIFIER_MODELS[name], outcome="error",
        ) == count + 2
