"""Signed links to cancel or move a call without logging in: the page offers free times from
the booking rules, acts on a POST with CSRF, and a forged or expired link does nothing."""

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.core import mail, signing
from django.test import Client

from listings import booking, emails, links
from listings.models import Appointment, Realtor

NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=NY)  # a Monday, noon

pytestmark = pytest.mark.django_db


@pytest.fixture
def call(monkeypatch):
    monkeypatch.setattr(links, "clock", lambda: NOW)
    user = get_user_model().objects.create_user(
        "anna", first_name="Anna", email="anna@agency.example"
    )
    Realtor.objects.create(user=user)
    appointment = booking.book_call(datetime(2026, 11, 24, 10, 0, tzinfo=NY), now=NOW)
    Appointment.objects.filter(pk=appointment.pk).update(visitor_email="vera@example.com")
    appointment.refresh_from_db()
    return appointment


def path_of(appointment) -> str:
    return links.url_for(appointment).removeprefix("http://127.0.0.1:8000")


def test_the_confirmation_carries_the_link_and_the_page_offers_free_times(call, client):
    emails.send_confirmation(call)
    visitor = next(m for m in mail.outbox if m.to == ["vera@example.com"])
    (url,) = re.findall(r"To cancel or move this call: (\S+)", visitor.body)
    page = client.get(url.removeprefix("http://127.0.0.1:8000"))
    assert page.status_code == 200
    text = page.content.decode()
    assert "Tuesday, November 24 at 10:00 EST" in text
    assert "Tuesday, November 24 at 09:30 EST" in text  # a free time near the call
    assert 'value="2026-11-24T15:00:00+00:00"' not in text  # not the call's own time
    assert 'value="cancel"' in text and "csrfmiddlewaretoken" in text
    day = client.get(path_of(call), {"day": "2026-11-27"}).content.decode()
    assert "Friday, November 27 at 09:00 EST" in day


def test_a_post_cancels_the_call(call, client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        page = client.post(path_of(call), {"action": "cancel"})
    assert "Your call is cancelled." in page.content.decode()
    call.refresh_from_db()
    assert call.status == Appointment.Status.CANCELLED
    assert {m.subject for m in mail.outbox} == {"Call cancelled: Tuesday, November 24 at 10:00 EST"}
    again = client.post(path_of(call), {"action": "cancel"})  # the link now does nothing
    assert again.status_code == 404


def test_a_post_moves_the_call_and_the_old_link_follows_it(call, client):
    slot = datetime(2026, 11, 25, 11, 0, tzinfo=NY).isoformat()
    page = client.post(path_of(call), {"action": "move", "slot": slot})
    assert "Your call is moved to Wednesday, November 25 at 11:00 EST." in page.content.decode()
    new = Appointment.objects.get(status=Appointment.Status.BOOKED)
    assert new.calendar_uid == call.calendar_uid and new.sequence == call.sequence + 1
    followed = client.get(path_of(call)).content.decode()  # the first email's link
    assert "Wednesday, November 25 at 11:00 EST" in followed


def test_a_time_not_free_is_said_and_nothing_changes(call, client):
    for slot in ("2026-11-29T10:00:00-05:00", "tomorrow", "2026-11-25T11:00:00"):
        page = client.post(path_of(call), {"action": "move", "slot": slot})
        assert page.status_code == 200 and 'role="alert"' in page.content.decode()
    assert list(Appointment.objects.values_list("status", flat=True)) == ["booked"]


def test_a_forged_or_expired_link_does_nothing(call, client, settings, monkeypatch):
    token = links.token_for(call)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    other_salt = signing.dumps(str(call.calendar_uid), salt="another.salt")
    for bad in (forged, other_salt, "x" * 300):
        for response in (client.get(f"/call/{bad}/"),
                         client.post(f"/call/{bad}/", {"action": "cancel"})):
            assert response.status_code == 404
            assert "This link is not valid any more" in response.content.decode()
    settings.APPOINTMENT_LINK_DAYS = 1
    later = datetime.now().timestamp() + 2 * 86400  # signing reads time.time(): 2 days on
    monkeypatch.setattr(signing.time, "time", lambda: later)
    assert client.post(f"/call/{token}/", {"action": "cancel"}).status_code == 404
    call.refresh_from_db()
    assert call.status == Appointment.Status.BOOKED


def test_a_post_without_the_csrf_token_is_refused(call):
    strict = Client(enforce_csrf_checks=True)
    assert strict.post(path_of(call), {"action": "cancel"}).status_code == 403
    call.refresh_from_db()
    assert call.status == Appointment.Status.BOOKED
    assert timedelta(0) < call.starts_at - NOW
