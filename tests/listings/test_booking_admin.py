"""The booking admin: realtors with inline hours and days off, the day view, appointment
filters, and the confirm and cancel actions."""

from datetime import UTC, datetime, time, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from listings.models import Appointment, DayOff, Realtor, WorkingHours

pytestmark = pytest.mark.django_db


@pytest.fixture
def anna():
    user = get_user_model().objects.create_user(
        "anna", first_name="Anna", last_name="Novak", email="anna@agency.example", is_staff=True
    )
    return Realtor.objects.create(user=user)


def call(realtor, starts_at, **fields):
    return Appointment.objects.create(
        realtor=realtor, starts_at=starts_at, ends_at=starts_at + timedelta(minutes=30), **fields
    )


def test_a_realtors_hours_and_days_off_are_edited_inline(admin_client, anna):
    url = reverse("admin:listings_realtor_change", args=[anna.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    assert b"weekly hours" in page.content.lower() and b"days off" in page.content.lower()
    data = {
        "user": anna.user.pk, "phone": "", "is_active": "on", "call_minutes": 45,
        "buffer_minutes": 15,
        "hours-TOTAL_FORMS": 1, "hours-INITIAL_FORMS": 0,
        "hours-0-weekday": 5, "hours-0-starts": "10:00", "hours-0-ends": "14:00",
        "days_off-TOTAL_FORMS": 1, "days_off-INITIAL_FORMS": 0,
        "days_off-0-day": "2026-12-24", "days_off-0-reason": "holiday",
    }
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    anna.refresh_from_db()
    assert (anna.call_minutes, anna.buffer_minutes) == (45, 15)
    hours = WorkingHours.objects.get(realtor=anna)
    assert (hours.weekday, hours.starts, hours.ends) == (5, time(10), time(14))
    assert DayOff.objects.get(realtor=anna).reason == "holiday"


def test_hours_that_end_before_they_start_are_refused(admin_client, anna):
    url = reverse("admin:listings_realtor_change", args=[anna.pk])
    data = {
        "user": anna.user.pk, "is_active": "on", "call_minutes": 30, "buffer_minutes": 0,
        "hours-TOTAL_FORMS": 1, "hours-INITIAL_FORMS": 0,
        "hours-0-weekday": 1, "hours-0-starts": "17:00", "hours-0-ends": "09:00",
        "days_off-TOTAL_FORMS": 0, "days_off-INITIAL_FORMS": 0,
    }
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert not WorkingHours.objects.exists()


def test_the_day_view_shows_the_realtors_hours_and_calls_in_agency_time(admin_client, anna):
    call(anna, datetime(2027, 3, 15, 14, 0, tzinfo=UTC), visitor_email="vera@example.com")
    url = reverse("admin:listings_realtor_day", args=[anna.pk])
    page = admin_client.get(url, {"day": "2027-03-15"})
    assert page.status_code == 200
    text = page.content.decode()
    assert "Anna Novak: Monday, March 15, 2027" in text
    assert "09:00–17:00" in text
    assert "10:00–10:30 EDT" in text and "vera@example.com" in text
    assert 'id="user-tools"' in text  # the admin's own page frame
    assert admin_client.get(url, {"day": "nonsense"}).status_code == 200


def test_the_day_view_needs_staff(client, anna):
    url = reverse("admin:listings_realtor_day", args=[anna.pk])
    assert client.get(url).status_code == 302


def test_appointments_filter_by_upcoming_and_today(admin_client, anna):
    now = timezone.now()
    soon = call(anna, now + timedelta(minutes=1), visitor_name="Soon Visitor")
    later = call(anna, now + timedelta(days=3), visitor_name="Later Visitor")
    past = call(anna, now - timedelta(days=3), visitor_name="Past Visitor")
    url = reverse("admin:listings_appointment_changelist")
    upcoming = admin_client.get(url, {"when": "upcoming"}).content.decode()
    assert "Soon Visitor" in upcoming and "Later Visitor" in upcoming
    assert "Past Visitor" not in upcoming
    today = admin_client.get(url, {"when": "today"}).content.decode()
    local_today = timezone.localdate()
    for appointment in (soon, later, past):
        shown = appointment.visitor_name in today
        assert shown == (timezone.localtime(appointment.starts_at).date() == local_today)
    cancelled = admin_client.get(url, {"status__exact": "cancelled"}).content.decode()
    assert "Soon Visitor" not in cancelled


def test_confirm_and_cancel_actions(admin_client, anna, django_capture_on_commit_callbacks):
    start = timezone.now() + timedelta(days=2)
    first, second = call(anna, start), call(anna, start + timedelta(hours=1))
    url = reverse("admin:listings_appointment_changelist")
    admin_client.post(url, {"action": "confirm", "_selected_action": [first.pk]})
    first.refresh_from_db()
    assert first.status == Appointment.Status.CONFIRMED
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(url, {"action": "cancel", "_selected_action": [first.pk, second.pk]})
    assert set(Appointment.objects.values_list("status", flat=True)) == {"cancelled"}
    assert len(mail.outbox) == 2  # the realtor hears of both
    call(anna, start)  # the slot is free again


def test_a_staff_booking_that_overlaps_is_a_form_error(admin_client, anna):
    call(anna, datetime(2030, 1, 8, 15, 0, tzinfo=UTC))  # 10:00 in New York
    response = admin_client.post(reverse("admin:listings_appointment_add"), {
        "realtor": anna.pk, "status": "booked",
        "starts_at_0": "2030-01-08", "starts_at_1": "10:10:00",
        "ends_at_0": "2030-01-08", "ends_at_1": "10:40:00",
    })
    assert response.status_code == 200
    assert "already has a call then" in str(response.context["adminform"].form.errors)
    assert Appointment.objects.count() == 1


def test_a_staff_edit_of_the_time_is_a_new_sequence_of_the_same_event(admin_client, anna):
    booked = call(anna, datetime(2030, 1, 8, 15, 0, tzinfo=UTC))
    data = {"realtor": anna.pk, "status": "booked",
            "starts_at_0": "2030-01-08", "starts_at_1": "11:00:00",
            "ends_at_0": "2030-01-08", "ends_at_1": "11:30:00"}
    url = reverse("admin:listings_appointment_change", args=[booked.pk])
    assert admin_client.post(url, data).status_code == 302
    edited = Appointment.objects.get()
    assert (edited.calendar_uid, edited.sequence) == (booked.calendar_uid, 1)
    admin_client.post(url, {**data, "visitor_name": "Vera"})  # not the time: same sequence
    assert Appointment.objects.get().sequence == 1
