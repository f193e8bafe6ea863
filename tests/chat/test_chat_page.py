"""The agency page at ``/``: it gives the visitor a session and carries the chat and its assets."""

from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.contrib.staticfiles import finders
from django.templatetags.static import static


@pytest.fixture
def page(client):
    """The page as an anonymous visitor, arriving without cookies, first sees it."""
    return client.get("/")


def _static_text(name: str) -> str:
    path = finders.find(name)
    assert path, f"static file {name} not found"
    return Path(path).read_text(encoding="utf-8")


@pytest.mark.django_db
def test_it_renders_for_an_anonymous_visitor(page):
    assert page.status_code == 200
    assert "Harbor &amp; Oak Realty" in page.content.decode()


@pytest.mark.django_db
def test_it_sets_a_session_cookie_backed_by_a_stored_session(page):
    cookie = page.cookies.get(settings.SESSION_COOKIE_NAME)
    assert cookie is not None and cookie.value
    assert Session.objects.filter(session_key=cookie.value).exists()


@pytest.mark.django_db
def test_it_keeps_the_same_session_on_a_second_visit(client):
    first = client.get("/").cookies[settings.SESSION_COOKIE_NAME].value
    client.get("/")
    assert client.cookies[settings.SESSION_COOKIE_NAME].value == first
    assert Session.objects.count() == 1


@pytest.mark.django_db
def test_it_loads_the_chat_widget_with_one_deferred_script_tag_and_its_settings(page):
    html = page.content.decode()
    src = static("chat/widget.js")
    assert f'<script src="{src}" data-title="Chat with Harbor &amp; Oak"' in html
    assert 'data-colour="#1f4e79" data-position="right" defer></script>' in html
    assert html.count("<script") == 1


@pytest.mark.django_db
def test_it_shows_active_listings_from_the_database(client, listings):
    from listings.models import Listing

    Listing.objects.filter(listing_id="654321").update(status=Listing.Status.SOLD)
    html = client.get("/").content.decode()
    assert "Listing 123456" in html and "$350,000" in html
    assert "Listing 112233" in html and "$550,000" in html
    assert "Listing 654321" not in html


@pytest.mark.django_db
def test_it_links_the_site_stylesheet(page):
    assert f'href="{static("site.css")}"' in page.content.decode()


def test_the_static_files_exist():
    assert _static_text("site.css")
    assert _static_text("chat/widget.js")


def test_the_widget_stays_under_24_kb_unminified():
    # 20 KB until the listing cards and the on-screen listing (issue 14) added 1.4 KB.
    assert len(_static_text("chat/widget.js").encode()) < 24 * 1024


def test_the_widget_never_parses_html():
    js = _static_text("chat/widget.js")
    for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("]:
        assert sink not in js


def test_the_widget_speaks_the_chat_protocol():
    js = _static_text("chat/widget.js")
    assert '"/ws/chat/?token="' in js and '"/chat/session"' in js and "&after=" in js
    for frame_type in ['"history"', '"message"', '"typing"', '"notice"', '"error"']:
        assert frame_type in js
