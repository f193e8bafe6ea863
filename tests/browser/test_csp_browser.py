"""The Content-Security-Policy in Chromium (issue 13, section 5): every page of the app's own
(chat page, staff screens, admin) carries it and runs without a single violation, and the
widget still works on an allowed site's page."""

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from agent.models import Conversation, Handoff, Message, Route

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "csp-test-password-1"
# Records each violation the page reports, from before its first script runs.
LISTEN = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


@pytest.fixture
def watched(page):
    """The page, with a list of the CSP violations it reported (events and console lines)."""
    console = []
    page.add_init_script(LISTEN)
    page.on(
        "console",
        lambda message: console.append(message.text)
        if "Content Security Policy" in message.text
        else None,
    )
    return page, console


def violations(page, console) -> list[str]:
    return [*page.evaluate("window.__violations"), *console]


def visit(page, url: str) -> None:
    response = page.goto(url)
    assert response.status == 200, url
    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, url
    page.wait_for_load_state("networkidle")


def test_the_chat_page_runs_the_widget_without_a_violation(watched, app, listings):
    page, console = watched
    visit(page, app.url + "/")
    page.locator(".launcher").click()
    expect(page.locator(".status")).to_have_text("Online")  # the socket passed connect-src
    page.locator("textarea").fill("How much is listing 123456?")
    page.locator("textarea").press("Enter")
    expect(page.locator(".msg.assistant .text")).to_have_count(1)
    assert violations(page, console) == []
    # The listener hears a violation: an inline script, as an injected one would be, is refused.
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.ran = 1'; document.body.append(s); }"
    )
    expect(page.locator("body")).to_be_visible()
    assert page.evaluate("window.ran") is None
    assert any(v.startswith("script-src") for v in page.evaluate("window.__violations"))


def test_every_staff_screen_and_admin_page_runs_without_a_violation(watched, app):
    page, console = watched
    get_user_model().objects.create_superuser("boss", "boss@agency.example", PASSWORD)
    conversation = Conversation.objects.create(visitor_name="Vera Visitor")
    question = Message.objects.store(conversation.id, Message.Role.USER, "Is there a garage?")
    Message.objects.store(
        conversation.id, Message.Role.ASSISTANT, "Good question!", route=Route.HANDOFF
    )
    handoff = Handoff.objects.create(
        conversation=conversation, message=question, reason="listing question"
    )
    page.goto(app.url + "/admin/login/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text("boss")
    for path in [
        "/admin/",
        "/admin/agent/conversation/",
        f"/admin/agent/conversation/{conversation.id}/change/",
        "/admin/agent/conversation/dashboard/",
        "/admin/agent/classifierconfig/",
        "/admin/agent/classifierconfig/add/",
        "/admin/listings/appointment/",
        "/admin/handoffs/",
        f"/admin/handoffs/{handoff.pk}/",
    ]:
        visit(page, app.url + path)
        assert violations(page, console) == [], path


def test_the_widget_still_embeds_on_an_allowed_site(watched, sites):
    page, console = watched
    page.goto(sites["allowed"].origin + "/")
    page.locator(".launcher").click()
    expect(page.locator(".status")).to_have_text("Online")
    assert violations(page, console) == []
