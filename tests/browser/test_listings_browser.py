"""A visitor finds homes by criteria in the widget, opens one, asks about it and books a
viewing of it, in Chromium against the app served by daphne; screenshots of the cards at
desktop and 360 px go to test-artifacts/."""

import io

import pytest
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import expect

from agent.ops.evalset import nth_day
from listings.models import Appointment
from tests import ROOT

ARTIFACTS = ROOT / "test-artifacts"  # git-ignored

pytestmark = pytest.mark.django_db(transaction=True)

SEARCH = "Show me 3 bed homes in Cedar Hollow under $500k"


@pytest.fixture
def demo(db):
    call_command("seed_demo", stdout=io.StringIO())


def open_chat(page):
    """Open the widget unless it is open already (it stays open across pages of a tab)."""
    if page.locator(".launcher").get_attribute("aria-expanded") != "true":
        page.locator(".launcher").click()
    expect(page.locator(".status")).to_have_text("Online")


def say(page, text):
    page.locator("textarea").fill(text)
    page.locator("textarea").press("Enter")


def test_find_open_ask_and_book_a_viewing_through_the_widget(page, app, demo):
    page.goto(app.url + "/listings/")
    open_chat(page)
    say(page, SEARCH)
    cards = page.locator(".home")
    expect(cards).to_have_count(3)
    expect(cards.first).to_contain_text("$350,000 · 123456")
    expect(cards.first).to_contain_text("3 bed · 2 bath · Maple Park, Cedar Hollow")
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(".panel").screenshot(path=ARTIFACTS / "listing-cards-desktop.png")

    cards.first.click()  # the card is a link to the listing's page
    page.wait_for_url(app.url + "/listings/123456/")
    expect(page.locator("h1")).to_have_text("14 Maple Court, Cedar Hollow, NJ")
    open_chat(page)
    say(page, "Does it have a garage?")
    expect(page.locator(".msg.assistant").last).to_contain_text("It has a garage.")

    day = nth_day(timezone.localdate(), "weekday", 3)
    say(page, f"Can I see it {day.isoformat()} at 10:00?")
    expect(page.locator(".msg.assistant").last).to_contain_text("booked")
    appointment = Appointment.objects.get()
    assert appointment.listing.listing_id == "123456"
    assert timezone.localtime(appointment.starts_at).strftime("%Y-%m-%d %H:%M") == (
        f"{day.isoformat()} 10:00")


def test_on_a_phone_the_open_panel_takes_the_screen_and_hides_the_launcher(
    browser, app, demo, classifier_rows
):
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True)
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        page.goto(app.url + "/listings/")
        open_chat(page)
        panel = page.locator(".panel").bounding_box()
        assert (panel["x"], panel["y"], panel["width"], panel["height"]) == (0, 0, 360, 740)
        expect(page.locator(".launcher")).to_be_hidden()
        say(page, SEARCH)
        expect(page.locator(".home")).to_have_count(3)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "listing-cards-360px.png")
        page.locator(".close").click()
        expect(page.locator(".launcher")).to_be_visible()
    finally:
        context.close()
