"""The chat in Spanish: replies in the conversation's language, which follows the visitor's;
dates, times and prices as Spanish writes them; the Spanish booking email and its .ics."""

import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.urls import reverse

from agent.chat import language
from agent.chat.router import route_turn
from agent.llm.classifiers import ListingQuestion, Pricing, Scheduling
from agent.llm.fanout import Outcome
from agent.llm.standin import rules
from agent.models import Conversation, Message, Route
from listings.models import Appointment

NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=NY)  # a Monday, noon

pytestmark = pytest.mark.django_db


def outcomes(pricing=None, scheduling=None, listing_question=None):
    said = {
        "pricing": pricing or Pricing(False, None),
        "scheduling": scheduling or Scheduling(False, None, None),
        "listing_question": listing_question or ListingQuestion(False),
    }
    return [Outcome(name, "m", output, "{}", 5) for name, output in said.items()]


def turn(conversation, text, said):
    message = Message.objects.store(conversation.id, Message.Role.USER, text)
    return route_turn(conversation, message, said, NOW)


def test_a_spanish_price_question_gets_the_price_in_spanish(conversation, listings):
    reply = turn(conversation, "¿Cuánto cuesta la propiedad 123456?",
                 outcomes(Pricing(True, "123456")))
    assert reply.route == Route.PRICE
    assert reply.text == "El precio de la propiedad 123456 es 350.000 US$."
    conversation.refresh_from_db()
    assert conversation.language == "es"


def test_the_agencys_currency_stays_its_own_in_spanish(conversation, listings):
    listings["123456"].currency = "EUR"
    listings["123456"].save()
    reply = turn(conversation, "¿Cuánto cuesta la propiedad 123456?",
                 outcomes(Pricing(True, "123456")))
    assert "350.000 €" in reply.text


def test_the_language_follows_the_visitor_both_ways_mid_chat(conversation, listings):
    english = turn(conversation, "How much is listing 123456?", outcomes(Pricing(True, "123456")))
    assert english.text == "The price for listing 123456 is $350,000."
    spanish = turn(conversation, "¿Y cuánto cuesta la 654321?", outcomes(Pricing(True, "654321")))
    assert spanish.text == "El precio de la propiedad 654321 es 450.000 US$."
    back = turn(conversation, "And how much is 112233, please?", outcomes(Pricing(True, "112233")))
    assert back.text == "The price for listing 112233 is $550,000."
    assert Conversation.objects.get(pk=conversation.pk).language == "en"


def test_a_short_message_keeps_the_language(conversation, listings):
    conversation.language = "es"
    conversation.save()
    reply = turn(conversation, "ok 123456", outcomes(Pricing(True, "123456")))
    assert reply.text.startswith("El precio")


def test_manana_a_las_3_books_tomorrow_at_three_pm_in_spanish(
    conversation, realtors, django_capture_on_commit_callbacks
):
    text = "Quiero una cita mañana a las 3"
    said = rules.scheduling(text, "", NOW.date())
    assert said == {"wants_call": True, "date": "2026-11-24", "time": "15:00"}
    conversation.visitor_email = "ana@example.com"
    conversation.save()
    with django_capture_on_commit_callbacks(execute=True):
        reply = turn(conversation, text, outcomes(scheduling=Scheduling(True, said["date"],
                                                                         said["time"])))
    assert reply.route == Route.BOOKING
    assert reply.text == (
        "Su llamada con Anna Novak está reservada para el martes, 24 de noviembre a las 15:00 "
        "EST. Le estamos enviando una confirmación a ana@example.com."
        "\n¿Busca comprar, alquilar o vender?"  # the lead's question, in Spanish too
    )
    assert Appointment.objects.get().starts_at == datetime(2026, 11, 24, 15, 0, tzinfo=NY)
    [email] = mail.outbox
    assert email.subject == "Su llamada con Anna Novak el martes, 24 de noviembre a las 15:00 EST"
    assert email.body.startswith("Su llamada está reservada. Anna Novak le llamará.\n\n"
                                 "Cuándo: martes, 24 de noviembre a las 15:00 EST (30 minutos)\n"
                                 "Agente: Anna Novak\n")
    [(name, ics, kind)] = email.attachments
    assert "SUMMARY:Llamada con Anna Novak" in ics and kind == "text/calendar"


def test_a_day_without_calls_is_refused_in_spanish_with_the_hours(conversation, realtors):
    conversation.language = "es"
    conversation.save()
    reply = turn(conversation, "una llamada el sábado a las 10",
                 outcomes(scheduling=Scheduling(True, "2026-11-28", "10:00")))
    assert reply.route == Route.BOOKING_UNAVAILABLE
    assert reply.text.startswith("Lo siento, no puedo reservar esa llamada: no atendemos "
                                 "llamadas los sábados.")
    assert "3) viernes, 27 de noviembre a las 16:30 EST." in reply.text


def test_a_call_without_a_time_asks_for_one_in_spanish(conversation, realtors):
    reply = turn(conversation, "Me gustaría agendar una cita con un agente",
                 outcomes(scheduling=Scheduling(True, None, None)))
    assert reply.route == Route.BOOKING_NEEDS_TIME
    assert reply.text == (
        "Con gusto le organizo una llamada con uno de nuestros agentes. ¿Qué día y hora le "
        "vienen bien? Normalmente atendemos llamadas de lunes a viernes, 09:00-17:00."
    )


def test_picking_an_offered_time_in_spanish(conversation, realtors):
    conversation.language = "es"
    conversation.save()
    turn(conversation, "una llamada el miércoles",
         outcomes(scheduling=Scheduling(True, "2026-11-25", None)))
    conversation.refresh_from_db()
    reply = turn(conversation, "la segunda, por favor", outcomes())
    assert reply.route == Route.BOOKING
    assert "miércoles, 25 de noviembre a las 09:30 EST" in reply.text


def test_a_handoff_in_spanish_says_when_staff_answer(conversation):
    reply = turn(conversation, "Hola, buenos días, ¿qué tal están?", outcomes())
    assert reply.route == Route.FALLBACK
    assert reply.text == (
        "Permítame pasarle con una persona de nuestro equipo. Alguien de nuestro equipo le "
        "responderá aquí en breve."
    )


def test_dateparser_reads_a_spanish_weekday_or_time_when_picking():
    from agent.chat.dialogue import mentioned_in as _mentioned  # the window Spanish opens too

    assert _mentioned("el jueves me va bien", NOW) == (date(2026, 11, 26), None)
    day, clock = _mentioned("mejor a las 10:30", NOW)
    assert clock.isoformat() == "10:30:00"


def test_a_new_conversation_takes_the_pages_language_else_the_browsers(client):
    page = client.post(reverse("chat-session"), json.dumps({"token": None, "lang": "es-MX"}),
                       content_type="application/json", HTTP_ORIGIN="http://testserver")
    assert Conversation.objects.get(pk=page.json()["conversation"]).language == "es"
    other = type(client)()
    browser = other.post(reverse("chat-session"), json.dumps({"token": None}),
                         content_type="application/json", HTTP_ORIGIN="http://testserver",
                         HTTP_ACCEPT_LANGUAGE="es-ES,es;q=0.9,en;q=0.5")
    assert Conversation.objects.get(pk=browser.json()["conversation"]).language == "es"
    third = type(client)().post(reverse("chat-session"), json.dumps({"token": None,
                                                                      "lang": "fr"}),
                                content_type="application/json", HTTP_ORIGIN="http://testserver")
    assert Conversation.objects.get(pk=third.json()["conversation"]).language == "en"


def test_the_session_refuses_a_lang_that_is_not_a_string(client):
    response = client.post(reverse("chat-session"), json.dumps({"token": None, "lang": 3}),
                           content_type="application/json", HTTP_ORIGIN="http://testserver")
    assert response.status_code == 400
    assert not Conversation.objects.exists()


def test_the_widget_labels_come_in_the_pages_language(client):
    spanish = client.get(reverse("chat-labels"), {"lang": "es"})
    assert spanish.json()["Send"] == "Enviar"
    offline = "Offline, reconnecting in {n} s…"
    assert spanish.json()[offline] == "Sin conexión; reconectando en {n} s…"
    assert spanish["Access-Control-Allow-Origin"] == "*"
    assert client.get(reverse("chat-labels"), {"lang": "en-US"}).json() == {}


def test_detection_is_bounded_and_deterministic():
    text = "Busco una casa con jardín en Port Ellis. " * 1000
    assert [language.detect(text, "en") for _ in range(5)] == ["es"] * 5
    assert language.detect("sí", "en") == "en"  # too short to tell
    assert language.detect("Bonjour, je cherche une maison", "es") == "es"  # not supported


def test_staff_joining_is_announced_in_the_conversations_language():
    from agent.staff.handoffs import notice_frame

    assert notice_frame("joined", "Anna", "es")["text"] == "Anna se ha unido al chat"
    assert notice_frame("left", "Anna", "es")["text"] == "Anna ha salido del chat"
    assert notice_frame("joined", "Anna", "en")["text"] == "Anna has joined the chat"


def test_detection_weighs_only_the_supported_languages_and_the_common_others():
    # langdetect's 55 profiles cost 8 ms a message; six cost 1.8 (issue 16).
    assert sorted(language._factory().get_lang_list()) == ["de", "en", "es", "fr", "it", "pt"]
    assert language.detect("Quisiera ver la casa el sábado por la mañana", "en") == "es"


@pytest.mark.parametrize("text, written", [
    ("Agencia inmobiliaria con licencia", "es"),
    ("Let me transfer you to a human representative.", "en"),
])
def test_three_trials_tell_what_seven_left_unsure(text, written):
    # 0.35 ms a message instead of 0.96, no other answer changed on 269 messages (issue 16).
    assert language.guess(text) == written


@pytest.mark.parametrize("text, written", [
    ("apartments", "en"),
    ("Open houses", "en"),
    ("¿Busca comprar, alquilar o vender?", "es"),
])
def test_fasttext_tells_what_langdetect_left_unsure(text, written):
    # langdetect alone gave "" for these; fastText is sure of them, in ~10 µs (issue 16).
    assert language._fasttext().detect(text, k=1)[0]["score"] >= language.MIN_PROBABILITY
    assert language.guess(text) == written


def test_langdetect_decides_where_fasttext_is_unsure():
    assert language._fasttext().detect("Hello there!", k=1)[0]["score"] < language.MIN_PROBABILITY
    assert language.guess("Hello there!") == "en"


def test_the_busy_reply_is_in_the_conversations_language():
    from agent.chat.turn import store_busy

    conversation = Conversation.objects.create(language="es")
    message, _ = Message.objects.store_visitor(conversation.id, "¿Cuánto cuesta la 654321?")
    assert store_busy(message, "es").text.startswith("Tenemos mucho trabajo")
    assert store_busy(message).text.startswith("We're very busy")
