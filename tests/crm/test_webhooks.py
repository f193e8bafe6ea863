"""Webhook deliveries in-process: the signed POST (checked by the example receiver's own
``verify``), retries, pausing with a notice to staff, held deliveries, the URL rules, the
backoff schedule and the admin's masked secret."""

import json
import time

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core import mail

from agent.crm import delivery as sender
from agent.crm import outbox, signing
from agent.crm.models import Delivery
from agent.crm.urls import UnsafeURL, check_addresses, check_url
from tests.crm.helpers import SECRET, endpoint, receiver_module

pytestmark = pytest.mark.django_db


def client(answers: list[int], seen: list):
    """An httpx client whose server answers the given status codes in turn."""
    def handle(request):
        seen.append(request)
        return httpx.Response(answers.pop(0))
    return httpx.Client(transport=httpx.MockTransport(handle))


@pytest.fixture
def pending(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    hook = endpoint()
    event = outbox.emit("handoff.queued", None, {"handoff": {"id": 1}})
    return Delivery.objects.get(event=event, endpoint=hook)


def test_a_delivery_is_signed_so_the_example_receiver_accepts_it(pending):
    seen = []
    status = sender.send(pending.pk, last_try=False, client=client([200], seen))
    assert status == Delivery.Status.DELIVERED
    request = seen[0]
    receiver = receiver_module()
    header = request.headers["Chat-Signature"]
    assert receiver.verify(SECRET, header, request.content, time.time())
    assert not receiver.verify("whsec_other_secret_000000", header, request.content, time.time())
    assert not receiver.verify(SECRET, header, request.content + b" ", time.time())
    assert not receiver.verify(SECRET, header, request.content, time.time() + 301)  # a replay
    body = json.loads(request.content)
    assert body["id"] == request.headers["Chat-Event-Id"] == str(pending.event.event_id)
    assert body["type"] == "handoff.queued" and body["version"] == 1
    # delivered once; running the job again sends nothing
    assert sender.send(pending.pk, last_try=False, client=client([], seen)) == "delivered"
    assert len(seen) == 1


def test_a_failure_is_retried_and_the_last_one_pauses_the_endpoint(pending):
    user = get_user_model().objects.create_user("ops", email="ops@agency.example", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="change_webhookendpoint"))
    get_user_model().objects.create_user("other", email="other@agency.example", is_staff=True)
    seen = []
    with pytest.raises(sender.DeliveryFailed):
        sender.send(pending.pk, last_try=False, client=client([503], seen))
    pending.refresh_from_db()
    assert (pending.status, pending.attempts, pending.response_code) == ("retrying", 1, 503)
    assert sender.send(pending.pk, last_try=True, client=client([500], seen)) == "failed"
    pending.endpoint.refresh_from_db()
    assert pending.endpoint.paused_at is not None
    assert [m.to for m in mail.outbox] == [["ops@agency.example"]]
    later = outbox.emit("handoff.queued", None, {})
    held = Delivery.objects.get(event=later)
    assert sender.send(held.pk, last_try=False, client=client([], seen)) == "held"
    assert len(seen) == 2


def test_the_backoff_lasts_a_day_with_the_defaults():
    waits = sender.waits()
    assert waits[:3] == [10, 20, 40] and max(waits) == 3600
    assert sum(waits) >= 24 * 3600 > sum(waits[:-1])


def test_urls_need_https_and_a_public_address_unless_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    for url in ("http://crm.example/", "https://127.0.0.1/", "https://10.1.2.3/x",
                "https://[::1]/", "https://169.254.169.254/", "ftp://crm.example/",
                "https://user:pw@crm.example/"):
        with pytest.raises(UnsafeURL):
            check_url(url)
    check_url("https://crm.example/hook")
    with pytest.raises(UnsafeURL):  # a name that resolves to loopback is refused at send time
        check_addresses("https://localhost/hook")
    settings.WEBHOOK_ALLOW_PRIVATE = True
    check_addresses("http://127.0.0.1:9000/")


def test_a_refused_url_fails_the_attempt_without_a_request(pending, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    seen = []
    with pytest.raises(sender.DeliveryFailed):
        sender.send(pending.pk, last_try=False, client=client([], seen))
    pending.refresh_from_db()
    assert pending.last_error.startswith("refused:") and seen == []


def test_signing_round_trip():
    header = signing.signature(SECRET, 1_700_000_000, b"{}")
    assert signing.verify(SECRET, header, b"{}", 1_700_000_100)
    assert not signing.verify(SECRET, header, b"{}", 1_700_000_400)
    assert not signing.verify(SECRET, "garbage", b"{}", 1_700_000_000)


def test_the_admin_never_shows_the_secret_in_full(admin_client, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    hook = endpoint()
    page = admin_client.get(f"/admin/agent/webhookendpoint/{hook.pk}/change/").content.decode()
    assert SECRET not in page and SECRET[-4:] in page
    listing = admin_client.get("/admin/agent/webhookendpoint/").content.decode()
    assert SECRET not in listing
    # saving with the secret left blank keeps it
    response = admin_client.post(
        f"/admin/agent/webhookendpoint/{hook.pk}/change/",
        {"name": "CRM 2", "url": hook.url, "secret": "", "events": ["lead.created"],
         "active": "on"},
    )
    assert response.status_code == 302
    hook.refresh_from_db()
    assert (hook.name, hook.secret, hook.events) == ("CRM 2", SECRET, ["lead.created"])


def test_the_admin_refuses_a_private_url_in_production(admin_client, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    response = admin_client.post(
        "/admin/agent/webhookendpoint/add/",
        {"name": "x", "url": "http://10.0.0.5/", "secret": "", "events": ["lead.created"]},
    )
    assert response.status_code == 200 and b"must use https" in response.content


def test_the_staff_pages_list_leads_and_deliveries_and_export_csv(admin_client, conversation):
    from tests.chat.test_booking_chat import say

    endpoint()
    say(conversation, "=cmd ann@example.com")
    assert b"ann@example.com" in admin_client.get("/admin/agent/lead/").content
    assert b"lead.created" in admin_client.get("/admin/agent/delivery/").content
    from agent.crm.models import Lead

    lead = Lead.objects.get()
    page = admin_client.get(f"/admin/agent/lead/{lead.pk}/change/").content.decode()
    assert str(conversation.id)[:8] in page
    csv = admin_client.post(
        "/admin/agent/lead/", {"action": "export_csv", "_selected_action": [lead.pk]}
    )
    assert csv["Content-Type"] == "text/csv" and b"ann@example.com" in csv.content
    admin_client.post(
        "/admin/agent/lead/", {"action": "set_stage_won", "_selected_action": [lead.pk]}
    )
    lead.refresh_from_db()
    assert lead.stage == "won"
    chosen = list(Delivery.objects.values_list("pk", flat=True))
    redo = admin_client.post(
        "/admin/agent/delivery/", {"action": "redeliver", "_selected_action": chosen}
    )
    assert redo.status_code == 302
