"""A visitor moves their call, then cancels it, from the signed link in their email, in
Chromium against the app served by daphne (the page's forms, CSRF cookie and all)."""

from datetime import datetime, time

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from agent.ops.evalset import nth_day
from listings import booking, links
from listings.agencytime import agency_zone, format_slot
from listings.models import Appointment, Realtor

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_signed_link_moves_then_cancels_the_call(page, app):
    user = get_user_model().objects.create_user("anna", first_name="Anna",
                                                email="anna@agency.example")
    Realtor.objects.create(user=user)
    day = nth_day(timezone.localdate(), "weekday", 3)  # the app reads the real clock
    starts = datetime.combine(day, time(10), tzinfo=agency_zone())
    call = booking.book_call(starts, now=timezone.now())
    url = links.url_for(call).replace("http://127.0.0.1:8000", app.url)

    page.goto(url)
    expect(page.locator("main")).to_contain_text(f"is on {format_slot(call.starts_at)}")
    choice = page.locator("label:has(input[name=slot])").first
    new_time = choice.inner_text().strip()
    choice.locator("input").check()
    page.get_by_role("button", name="Move my call").click()
    expect(page.locator(".message")).to_have_text(f"Your call is moved to {new_time}.")
    moved = Appointment.objects.get(status=Appointment.Status.BOOKED)
    assert format_slot(moved.starts_at) == new_time and moved.calendar_uid == call.calendar_uid

    page.goto(url)  # the same link follows the moved call
    expect(page.locator("main")).to_contain_text(f"is on {new_time}")
    page.get_by_role("button", name="Cancel this call").click()
    expect(page.locator(".message")).to_have_text("Your call is cancelled.")
    assert not Appointment.objects.filter(status=Appointment.Status.BOOKED).exists()

    page.goto(url)  # used up: it does nothing now
    expect(page.locator(".message")).to_contain_text("This link is not valid any more")
    page.goto(url[:-3] + "xx/")  # forged
    expect(page.locator(".message")).to_contain_text("This link is not valid any more")
