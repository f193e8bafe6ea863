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
def test_it_includes_the_chat_form_with_a_labelled_limited_text_box(page):
    html = page.content.decode()
    assert 'id="chat-form"' in html
    assert '<label for="chat-input"' in html
    assert 'id="chat-input"' in html and 'maxlength="2000"' in html
    assert 'id="chat-send"' in html


@pytest.mark.django_db
def test_it_includes_a_polite_live_transcript_a_typing_indicator_and_a_status(page):
    html = page.content.decode()
    assert 'id="chat-transcript"' in html and 'aria-live="polite"' in html
    assert 'id="chat-typing"' in html
    assert 'id="chat-status"' in html


@pytest.mark.django_db
def test_it_shows_active_listings_from_the_database(client, listings):
    from listings.models import Listing

    Listing.objects.filter(listing_id="654321").update(status=Listing.Status.SOLD)
    html = client.get("/").content.decode()
    assert "Listing 123456" in html and "$350,000" in html
    assert "Listing 112233" in html and "$550,000" in html
    assert "Listing 654321" not in html


@pytest.mark.django_db
def test_it_links_the_stylesheet_and_a_deferred_script(page):
    html = page.content.decode()
    assert f'href="{static("chat/chat.css")}"' in html
    assert f'<script src="{static("chat/chat.js")}" defer>' in html


def test_the_static_files_exist():
    assert _static_text("chat/chat.css")
    assert _static_text("chat/chat.js")


def test_the_script_never_uses_inner_html():
    assert "innerHTML" not in _static_text("chat/chat.js")


def test_the_script_speaks_the_chat_protocol():
    js = _static_text("chat/chat.js")
    assert '"/ws/chat/"' in js and '"wss://"' in js
    for frame_type in ['"history"', '"message"', '"typing"', '"error"']:
        assert frame_type in js
