"""iCalendar from the icalendar library: the booking .ics (time zone, escaping, folding,
METHOD, SEQUENCE, VALARM) and each realtor's private feed, parsed back with icalendar, and the
admin actions that regenerate or revoke it."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from icalendar import Calendar

from listings import booking, feeds, ics
from listings.models import Realtor

NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=NY)  # a Monday, noon

pytestmark = pytest.mark.django_db


@pytest.fixture
def anna():
    user = get_user_model().objects.create_user(
        "anna", first_name="Anna", email="anna@agency.example", is_staff=True
    )
    return Realtor.objects.create(user=user)


def events(text: str):
    return [c for c in Calendar.from_ical(text).walk("VEVENT")]


def feed_url_token(url: str) -> str:
    return url.rsplit("/", 1)[1].removesuffix(".ics")


def test_the_email_ics_has_the_zone_escaping_folding_and_an_alarm(anna):
    call = booking.book_call(datetime(2026, 11, 24, 10, 0, tzinfo=NY), now=NOW)
    summary = "Call, with; Vera\\Ann " + "é" * 60
    text = ics.calendar(call, summary=summary, description="line one\nline two", now=NOW)
    assert "METHOD:REQUEST\r\n" in text and "BEGIN:VTIMEZONE\r\nTZID:America/New_York" in text
    assert "SUMMARY:Call\\, with\\; Vera\\\\Ann" in text
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))
    (event,) = events(text)
    assert str(event["summary"]) == summary and str(event["description"]) == "line one\nline two"
    assert event.decoded("dtstart") == datetime(2026, 11, 24, 10, 0, tzinfo=NY)
    assert event.decoded("dtstart").tzinfo.key == "America/New_York"
    (alarm,) = event.walk("VALARM")
    assert alarm.decoded("trigger") == -timedelta(minutes=15)
    assert str(event["uid"]) == f"{call.calendar_uid}@localhost"


def test_a_cancellation_ics_cancels_the_same_event_with_a_higher_sequence(anna):
    call = booking.book_call(datetime(2026, 11, 24, 10, 0, tzinfo=NY), now=NOW)
    booked = events(ics.calendar(call, summary="s", description="d", now=NOW))[0]
    booking.cancel(call)
    text = ics.calendar(call, summary="s", description="d", now=NOW)
    assert "METHOD:CANCEL\r\n" in text
    (cancelled,) = events(text)
    assert cancelled["uid"] == booked["uid"] and cancelled["status"] == "CANCELLED"
    assert cancelled["sequence"] > booked["sequence"]


def test_the_feed_lists_upcoming_calls_drops_a_cancelled_one_and_moves_a_moved_one(
    anna, client, monkeypatch
):
    monkeypatch.setattr(feeds, "clock", lambda: NOW)
    url = feeds.regenerate(anna)
    assert url.startswith("http://127.0.0.1:8000/calendar/") and url.endswith(".ics")
    path = url.removeprefix("http://127.0.0.1:8000")
    kept = booking.book_call(datetime(2026, 11, 24, 10, 0, tzinfo=NY), now=NOW)
    dropped = booking.book_call(datetime(2026, 11, 25, 10, 0, tzinfo=NY), now=NOW)

    response = client.get(path)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/calendar")
    listed = events(response.content.decode())
    assert [e.decoded("dtstart") for e in listed] == [kept.starts_at, dropped.starts_at]
    first = listed[0]

    booking.cancel(dropped)
    moved = booking.move(kept, datetime(2026, 11, 26, 15, 0, tzinfo=NY), now=NOW)
    (event,) = events(client.get(path).content.decode())
    assert event["uid"] == first["uid"] == f"{moved.calendar_uid}@localhost"
    assert event["sequence"] == first["sequence"] + 1
    assert event.decoded("dtstart") == datetime(2026, 11, 26, 15, 0, tzinfo=NY)
    assert moved.pk != kept.pk


def test_a_regenerated_revoked_or_forged_feed_token_gets_a_404(anna, client):
    old = feeds.regenerate(anna).removeprefix("http://127.0.0.1:8000")
    new = feeds.regenerate(anna).removeprefix("http://127.0.0.1:8000")
    assert client.get(old).status_code == 404
    assert client.get(new).status_code == 200
    assert client.get(new.replace(".ics", "x.ics")).status_code == 404
    assert client.get("/calendar/" + "a" * 500 + ".ics").status_code == 404
    feeds.revoke(anna)
    assert client.get(new).status_code == 404
    anna.refresh_from_db()
    assert anna.calendar_token_hash is None
    assert feed_url_token(new) not in str(Realtor.objects.values_list().get())  # hash only


def test_the_feed_actions_need_their_permission(anna, client):
    staff = get_user_model().objects.create_user("sam", is_staff=True, password="pw")
    staff.user_permissions.add(Permission.objects.get(codename="view_realtor"),
                               Permission.objects.get(codename="change_realtor"))
    client.force_login(staff)
    data = {"action": "regenerate_feed", "_selected_action": [anna.pk]}
    page = client.get("/admin/listings/realtor/")
    assert b"regenerate_feed" not in page.content
    client.post("/admin/listings/realtor/", data)
    anna.refresh_from_db()
    assert anna.calendar_token_hash is None

    staff.user_permissions.add(Permission.objects.get(codename="manage_calendar_feed"))
    response = client.post("/admin/listings/realtor/", data, follow=True)
    anna.refresh_from_db()
    assert anna.calendar_token_hash is not None
    (message,) = [str(m) for m in response.context["messages"]]
    token = feed_url_token(message)
    assert feeds.realtor_for(token) == anna

    client.post("/admin/listings/realtor/", {**data, "action": "revoke_feed"})
    anna.refresh_from_db()
    assert anna.calendar_token_hash is None
