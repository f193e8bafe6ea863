"""The staff queue page in Chromium, kept live by ``queue_change`` frames (README.md, "Staff
socket"): a claim, a new handoff and a resolve change the list and the badge without a
reload, and the page shows the oldest 50 with a "+ k more" count as the server bounds it."""

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from agent.models import Conversation, Handoff, Message

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "queue-test-password-1"
NOBODY_ASKS = "Hello, I have something to ask"  # no classifier says yes: a handoff is queued


def log_in(page, url):
    page.goto(url + "/admin/login/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text("boss")


def queue(n: int) -> list[Handoff]:
    """``n`` queued handoffs, oldest first, each of a conversation with one visitor message."""
    made = []
    for number in range(n):
        conversation = Conversation.objects.create(visitor_name=f"Visitor {number}")
        question = Message.objects.store(conversation.pk, Message.Role.USER, "Is there a garage?")
        made.append(
            Handoff.objects.create(conversation=conversation, message=question, reason="question")
        )
    return made


def test_the_queue_page_follows_claims_new_handoffs_and_resolves_without_a_reload(
    context, browser, app, listings
):
    get_user_model().objects.create_superuser("boss", "boss@agency.example", PASSWORD)
    oldest, *_ = queue(51)  # one more than a queue frame lists
    board = context.new_page()
    log_in(board, app.url)
    board.goto(app.url + "/admin/handoffs/")
    rows = board.locator("#handoff-queue tbody tr:not(.queue-more)")
    more = board.locator("#handoff-queue .queue-more")
    badge = board.locator("#handoff-count")
    expect(badge).to_have_text("51")
    expect(rows).to_have_count(50)
    expect(more).to_have_text("+ 1 more")
    board_loads = []
    board.on("load", lambda page: board_loads.append(page.url))

    screen = context.new_page()  # the same staff member, in another tab
    screen.goto(app.url + f"/admin/handoffs/{oldest.pk}/")
    screen.locator("[data-action=claim]").click()
    expect(screen.locator("#handoff-state")).to_have_text("claimed by boss (you)")
    expect(rows.first.locator("td").nth(1)).to_have_text("claimed by boss")
    expect(badge).to_have_text("50")
    expect(more).to_have_text("+ 1 more")

    visitor = browser.new_context().new_page()
    visitor.goto(app.url + "/")
    visitor.locator(".launcher").click()
    expect(visitor.locator(".status")).to_have_text("Online")
    visitor.locator("textarea").fill(NOBODY_ASKS)
    visitor.locator("textarea").press("Enter")
    # Newer than the 50 listed: counted in "more", not listed.
    expect(badge).to_have_text("51")
    expect(more).to_have_text("+ 2 more")
    expect(rows).to_have_count(50)

    screen.locator("[data-action=resolve]").click()
    expect(screen.locator("#handoff-state")).to_have_text("resolved by boss (you)")
    # The list fell to 49 with more left out: the page asked for the queue again.
    expect(more).to_have_text("+ 1 more")
    expect(rows).to_have_count(50)
    expect(rows.first.locator("td").nth(1)).to_have_text("queued")
    expect(badge).to_have_text("51")
    assert board_loads == []  # all of it live, no reload
    visitor.context.close()
