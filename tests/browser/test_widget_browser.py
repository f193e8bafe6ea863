"""The chat widget in Chromium: what a visitor sees and does, against the app served by daphne.

Locators pierce the widget's open shadow root. Replies come from the LLM stand-in.
"""


import pytest
from playwright.sync_api import expect

from agent.models import ClassifierConfig, Conversation, Message
from tests import ROOT
from tests.servers import AppServer, app_env, free_port

ARTIFACTS = ROOT / "test-artifacts"  # git-ignored

pytestmark = pytest.mark.django_db(transaction=True)

PRICE_QUESTION = "How much is listing 123456?"
RECONNECT_TIMEOUT = 20_000  # ms: a restart plus the widget's backoff (at most 10 s a wait)


def open_chat(page, url):
    """Load ``url`` and open the widget with the mouse; wait until it is online."""
    page.goto(url)
    page.locator(".launcher").click()
    expect(page.locator(".status")).to_have_text("Online")


def say(page, text):
    """Type a message and press Enter."""
    page.locator("textarea").fill(text)
    page.locator("textarea").press("Enter")


def texts(page, selector=".msg"):
    """The texts of the transcript's messages (``selector`` narrows them), in order."""
    return page.locator(f"{selector} .text").all_text_contents()


def stored():
    """Every stored message as (role, text), by conversation and seq."""
    return [(m.role, m.text) for m in Message.objects.order_by("conversation_id", "seq")]


def test_a_visitor_sends_a_message_and_sees_the_reply_as_text(page, app, listings, llm):
    llm.latency_ms = 600  # long enough to see the typing indicator
    try:
        open_chat(page, app.url + "/")
        say(page, PRICE_QUESTION)
        expect(page.locator(".typing")).to_be_visible()
        expect(page.locator(".msg.assistant .text")).to_have_text(
            ["The price for listing 123456 is $350,000."]
        )
        expect(page.locator(".typing")).to_be_hidden()
    finally:
        llm.latency_ms = 0

    markup = '<b id="bold">hi</b><img src=x onerror="document.title=\'owned\'">'
    say(page, markup)
    expect(page.locator(".msg.assistant")).to_have_count(2)
    assert texts(page, ".msg.user") == [PRICE_QUESTION, markup]
    assert page.locator("#bold").count() == 0 and page.title() != "owned"
    assert stored()[0] == ("user", PRICE_QUESTION) and len(stored()) == 4


def test_a_reload_shows_the_history_once(page, app, listings):
    open_chat(page, app.url + "/")
    say(page, PRICE_QUESTION)
    expect(page.locator(".msg.assistant")).to_have_count(1)

    page.reload()  # the panel stays open in this tab
    expect(page.locator(".status")).to_have_text("Online")
    assert texts(page) == [PRICE_QUESTION, "The price for listing 123456 is $350,000."]
    assert Conversation.objects.count() == 1


def test_a_reply_that_came_while_the_network_was_down_appears_once(
    page, network, listings, llm
):
    open_chat(page, network.url + "/")
    llm.latency_ms = 1500
    try:
        say(page, PRICE_QUESTION)
        expect(page.locator(".msg.user:not(.pending)")).to_have_count(1)  # stored
        network.cut()
        expect(page.locator(".status")).to_contain_text("Offline")
        for _ in range(100):  # the turn goes on and finishes on the server meanwhile
            if Message.objects.filter(role="assistant").exists():
                break
            page.wait_for_timeout(100)
        assert page.locator(".msg.assistant").count() == 0
    finally:
        llm.latency_ms = 0
    network.restore()
    expect(page.locator(".status")).to_have_text("Online", timeout=RECONNECT_TIMEOUT)
    expect(page.locator(".msg.assistant")).to_have_count(1)
    assert texts(page) == [PRICE_QUESTION, "The price for listing 123456 is $350,000."]


def test_the_server_goes_away_and_comes_back_and_the_missed_staff_reply_appears_once(
    page, app, listings
):
    open_chat(page, app.url + "/")
    say(page, PRICE_QUESTION)
    expect(page.locator(".msg.assistant")).to_have_count(1)

    app.stop(kill=True)
    expect(page.locator(".status")).to_contain_text("Offline")
    conversation = Conversation.objects.get()
    Message.objects.store(conversation.id, Message.Role.STAFF, "Anna here: it is still available.")
    app.start()

    expect(page.locator(".msg.staff")).to_have_count(1, timeout=RECONNECT_TIMEOUT)
    expect(page.locator(".status")).to_have_text("Online")
    assert texts(page) == [
        PRICE_QUESTION,
        "The price for listing 123456 is $350,000.",
        "Anna here: it is still available.",
    ]


def test_messages_typed_while_offline_are_delivered_once_in_order(page, app, listings):
    open_chat(page, app.url + "/")
    app.stop(kill=True)
    expect(page.locator(".status")).to_contain_text("Offline")

    say(page, "Hello?")
    say(page, PRICE_QUESTION)
    expect(page.locator(".msg.pending .text")).to_have_text(["Hello?", PRICE_QUESTION])
    app.start()

    expect(page.locator(".msg.assistant")).to_have_count(2, timeout=RECONNECT_TIMEOUT)
    expect(page.locator(".msg.pending")).to_have_count(0)
    assert texts(page, ".msg.user") == ["Hello?", PRICE_QUESTION]
    # Both are stored on arrival, in order, once; their turns then run one after the other.
    assert stored()[:2] == [("user", "Hello?"), ("user", PRICE_QUESTION)]
    assert [role for role, _ in stored()[2:]] == ["assistant", "assistant"]


def test_messages_queued_in_a_closed_tab_are_sent_by_the_next_one(context, page, app, listings):
    open_chat(page, app.url + "/")
    app.stop(kill=True)
    expect(page.locator(".status")).to_contain_text("Offline")
    say(page, PRICE_QUESTION)
    expect(page.locator(".msg.pending")).to_have_count(1)
    page.close()
    app.start()

    later = context.new_page()
    later.goto(app.url + "/")
    later.locator(".launcher").click()
    expect(later.locator(".msg.assistant")).to_have_count(1)
    assert texts(later) == [PRICE_QUESTION, "The price for listing 123456 is $350,000."]
    assert [role for role, _ in stored()] == ["user", "assistant"]


def test_the_widget_works_embedded_on_another_origin_without_cookies(
    page, context, app, sites, listings
):
    site = sites["allowed"].origin
    open_chat(page, site + "/")
    launcher = page.locator(".launcher").bounding_box()
    assert launcher["x"] < 100  # data-position="left"
    expect(page.locator("h2")).to_have_text("Talk to us")  # data-title
    say(page, PRICE_QUESTION)
    expect(page.locator(".msg.assistant")).to_have_count(1)

    assert context.cookies(app.url) == []  # the token, not a cookie, holds the conversation
    keys = page.evaluate("Object.keys(localStorage)")
    assert f"chat-widget:{app.url}:token" in keys

    page.reload()
    expect(page.locator(".msg")).to_have_count(2)
    assert Conversation.objects.count() == 1


def test_a_site_that_is_not_allowed_gets_no_chat(page, sites):
    page.goto(sites["other"].origin + "/")
    page.locator(".launcher").click()
    expect(page.locator(".status")).to_have_text("The chat is not available on this site.")
    assert Conversation.objects.count() == 0


def test_the_minimised_widget_counts_unread_replies(page, app, listings, llm):
    open_chat(page, app.url + "/")
    llm.latency_ms = 1000
    try:
        say(page, PRICE_QUESTION)
        page.keyboard.press("Escape")  # minimise while the turn runs
        expect(page.locator(".panel")).to_be_hidden()
        expect(page.locator(".badge")).to_have_text("1")
        expect(page.locator(".launcher")).to_have_attribute(
            "aria-label", "Chat with Harbor & Oak, 1 unread"
        )
    finally:
        llm.latency_ms = 0
    page.keyboard.press("Enter")  # the launcher has the focus back
    expect(page.locator(".panel")).to_be_visible()
    expect(page.locator(".badge")).to_be_hidden()


FOCUSED = "document.querySelector('[data-chat-widget]').shadowRoot.activeElement"


def test_the_widget_works_with_the_keyboard_alone(page, app, listings):
    page.goto(app.url + "/")
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate(f"{FOCUSED}?.className") == "launcher":
            break
    else:
        pytest.fail("Tab never reached the chat button")
    outline = page.evaluate(f"getComputedStyle({FOCUSED}).outlineStyle")
    assert outline == "solid"  # visible focus

    page.keyboard.press("Enter")
    expect(page.locator(".panel")).to_be_visible()
    assert page.evaluate(f"{FOCUSED}.tagName") == "TEXTAREA"
    expect(page.locator(".status")).to_have_text("Online")
    page.keyboard.type(PRICE_QUESTION)
    page.keyboard.press("Enter")
    expect(page.locator(".msg.assistant")).to_have_count(1)

    page.keyboard.press("Escape")
    expect(page.locator(".panel")).to_be_hidden()
    assert page.evaluate(f"{FOCUSED}.className") == "launcher"
    expect(page.locator(".launcher")).to_have_attribute("aria-expanded", "false")


@pytest.fixture
def strict_app(django_db_setup, llm, tmp_path):
    """The app with tight abuse limits, for one test: two turns of four classifiers per
    connection every 3 s, one socket per address."""
    env = app_env(
        LLM_BASE_URL=llm.base_url,
        CHAT_RATE_LIMIT_CONNECTION="8/3 seconds",
        CHAT_MAX_SOCKETS_PER_IP="1",
    )
    server = AppServer(free_port(), env, tmp_path / "daphne.log")
    server.start()
    yield server
    server.stop()


def test_messages_over_the_rate_limit_wait_then_go_out_once_in_order(
    context, strict_app, listings
):
    # Four classifiers, as the limit counts them: the listing ones would make a turn cost 6
    # and refuse the second message too (a flake once there were six).
    ClassifierConfig.objects.filter(name__in=["listing_facts", "listing_search"]).update(
        enabled=False
    )
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    open_chat(page, strict_app.url + "/")
    sent = ["Hello?", PRICE_QUESTION, "And listing 654321?"]
    for text in sent:
        say(page, text)

    expect(page.locator(".note.error")).to_contain_text("faster than we can answer")
    expect(page.locator(".note.error")).to_contain_text("we will send it again in")
    expect(page.locator(".msg.pending .who")).to_have_text(["You · not sent yet"])
    expect(page.locator(".msg.pending .text")).to_have_text([sent[2]])

    expect(page.locator(".msg.assistant")).to_have_count(3, timeout=15_000)
    expect(page.locator(".msg.pending")).to_have_count(0)
    assert texts(page, ".msg.user") == sent
    assert [text for role, text in stored() if role == "user"] == sent
    assert errors == []


def test_a_tab_over_the_socket_cap_says_why_it_is_not_connected(context, strict_app):
    first = context.new_page()
    open_chat(first, strict_app.url + "/")
    second = context.new_page()
    errors = []
    second.on("pageerror", lambda error: errors.append(str(error)))
    second.goto(strict_app.url + "/")
    second.locator(".launcher").click()
    expect(second.locator(".status")).to_contain_text(
        "Too many chats are open from your network. Trying again in"
    )
    expect(second.locator(".note")).to_have_count(0)  # the status says it, once
    expect(first.locator(".status")).to_have_text("Online")
    assert errors == []


def test_screenshots_of_the_open_widget_at_desktop_and_phone_width(page, app, listings):
    ARTIFACTS.mkdir(exist_ok=True)
    open_chat(page, app.url + "/")
    say(page, PRICE_QUESTION)
    expect(page.locator(".msg.assistant")).to_have_count(1)
    page.screenshot(path=ARTIFACTS / "widget-desktop.png")

    page.set_viewport_size({"width": 360, "height": 740})
    panel = page.locator(".panel").bounding_box()
    assert panel["x"] >= 0 and panel["x"] + panel["width"] <= 360
    assert panel["y"] >= 0 and panel["y"] + panel["height"] <= 740
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    expect(page.locator("textarea")).to_be_in_viewport()
    page.screenshot(path=ARTIFACTS / "widget-360px.png")
