"""A Spanish-speaking visitor, in Chromium against the app served by daphne: the browser asks
for Spanish, so the listing pages, the widget's labels and the chat's replies are Spanish;
an English message switches the replies to English."""

import io

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from agent.models import Conversation
from tests import ROOT

ARTIFACTS = ROOT / "test-artifacts"  # git-ignored

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo(db):
    call_command("seed_demo", stdout=io.StringIO())


def say(page, text):
    page.locator("textarea").fill(text)
    page.locator("textarea").press("Enter")


def test_a_spanish_visitor_reads_the_page_the_widget_and_the_replies_in_spanish(
    browser, app, demo, classifier_rows
):
    context = browser.new_context(locale="es-ES")  # Accept-Language and navigator.language
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        page.goto(app.url + "/listings/")
        expect(page.locator("html")).to_have_attribute("lang", "es")
        expect(page.locator("h1")).to_have_text("Viviendas en venta")
        expect(page.locator(".filters button")).to_have_text("Buscar")
        expect(page.locator(".launcher")).to_contain_text("Chat con Harbor & Oak")
        page.locator(".launcher").click()
        expect(page.locator(".status")).to_have_text("En línea")
        expect(page.locator(".send")).to_have_text("Enviar")
        expect(page.locator("textarea")).to_have_attribute(
            "placeholder", "Pregunte por una propiedad…")

        say(page, "Busco casas en Cedar Hollow por menos de 500.000")
        reply = page.locator(".msg.assistant").last
        expect(reply).to_contain_text("Encontré")
        expect(reply).to_contain_text("casas en Cedar Hollow por menos de 500.000 US$")
        expect(page.locator(".home").first).to_contain_text("US$")
        expect(page.locator(".home").first).to_contain_text("hab. ·")
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(".panel").screenshot(path=ARTIFACTS / "spanish-widget.png")

        say(page, "¿Cuánto cuesta la propiedad 654321?")
        expect(page.locator(".msg.assistant").last).to_contain_text(
            "El precio de la propiedad 654321 es 450.000 US$.")
        say(page, "And how much is 123456, please?")
        expect(page.locator(".msg.assistant").last).to_contain_text(
            "The price for listing 123456 is $350,000.")
        assert Conversation.objects.get().language == "en"
    finally:
        context.close()
