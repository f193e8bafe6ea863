"""The lead questions (agent/crm/qualify.py): one short question after a search or a booking,
never two turns in a row, never again once answered or asked twice, never while staff hold
the conversation; the answer fills the lead and sends lead.updated."""

import time

import pytest

from agent.chat.router import route_turn
from agent.chat.turn import finish_turn
from agent.crm import qualify
from agent.crm.models import Event, Lead
from agent.llm.classifiers import Scheduling
from agent.models import Handoff, Message, Route
from tests.chat import test_booking_chat as booking_chat
from tests.chat import test_homes as homes

pytestmark = pytest.mark.django_db

SEARCH = {"search": homes.find(max_price=500000)}


def search(conversation, text="homes under $500k"):
    """A search turn that finds the tutorial's listings."""
    return homes.turn(conversation, text, **SEARCH)


def plain(conversation, text):
    """A turn no classifier routes."""
    return homes.turn(conversation, text)


def book(conversation, text="book Tuesday 10:00"):
    return booking_chat.say(conversation, text, Scheduling(True, "2026-11-24", "10:00"))


def test_a_search_reply_ends_with_the_intent_question(conversation, listings):
    reply = search(conversation)
    assert reply.route == Route.LISTING_SEARCH
    assert reply.text.endswith("\n" + str(qualify.QUESTIONS["intent"]))
    assert conversation.qualification["pending"] == "intent"


def test_the_answer_fills_the_lead_sends_lead_updated_and_is_thanked(conversation, listings):
    search(conversation)
    before = Event.objects.filter(type="lead.updated").count()
    reply = plain(conversation, "We want to buy, hopefully")
    assert (reply.route, reply.text) == (Route.QUALIFY_ANSWER, str(qualify.THANKS))
    assert Lead.objects.get().intent == "buy"
    updated = Event.objects.filter(type="lead.updated").order_by("id")
    assert updated.count() == before + 1
    assert updated.last().payload["data"]["changed"] == ["intent"]
    assert updated.last().payload["data"]["intent"] == "buy"


def test_not_two_turns_in_a_row_and_not_again_once_answered(conversation, listings):
    search(conversation)
    # The next turn, a search again, answers too: it is not asked anything.
    reply = search(conversation, "I'd buy one under $500k")
    assert reply.route == Route.LISTING_SEARCH
    assert not any(q in reply.text for q in map(str, qualify.QUESTIONS.values()))
    assert Lead.objects.get().intent == "buy"
    # The turn after: the next fact the lead lacks (a phone or email), never intent again.
    reply = search(conversation)
    assert reply.text.endswith("\n" + str(qualify.QUESTIONS["contact"]))
    plain(conversation, "ann@example.com")
    reply = search(conversation)
    assert reply.text.endswith("\n" + str(qualify.QUESTIONS["timeline"]))
    plain(conversation, "in about 3 months")
    reply = search(conversation)
    assert reply.text.endswith("\n" + str(qualify.QUESTIONS["preapproved"]))
    plain(conversation, "not yet")
    lead = Lead.objects.get()
    assert (lead.email, lead.timeline, lead.preapproved) == ("ann@example.com", "3 months", False)
    reply = search(conversation)  # nothing left to ask
    assert "pending" not in conversation.qualification
    assert not any(q in reply.text for q in map(str, qualify.QUESTIONS.values()))


def test_a_question_asked_twice_without_an_answer_is_not_asked_again(conversation, listings):
    asked = []
    for _ in range(6):
        reply = search(conversation)
        asked += [fact for fact, q in qualify.QUESTIONS.items() if reply.text.endswith(str(q))]
    # every other turn asks (never two in a row), each fact twice at most
    assert asked == ["intent", "intent", "contact"]
    assert conversation.qualification["asked"] == {"intent": 2, "contact": 1}
    assert Lead.objects.get().intent == ""


def test_a_booking_reply_asks_once_a_contact_is_known(conversation, realtors):
    reply = book(conversation)  # no contact: the booking reply asks for it itself
    assert reply.route == Route.BOOKING
    assert not reply.text.endswith(str(qualify.QUESTIONS["intent"]))
    assert conversation.qualification == {}
    booking_chat.say(conversation, "ann@example.com")
    reply = booking_chat.say(
        conversation, "move it to Wednesday 11:00", Scheduling(True, "2026-11-25", "11:00"),
        change="move",
    )
    assert reply.route == Route.BOOKING
    assert reply.text.endswith("\n" + str(qualify.QUESTIONS["intent"]))
    booking_chat.say(conversation, "Renting, for now")
    assert Lead.objects.get().intent == "rent"


def test_no_question_while_staff_hold_the_conversation(conversation, listings, realtors):
    Handoff.objects.create(conversation=conversation, reason="r", status=Handoff.Status.CLAIMED)
    message = Message.objects.store(conversation.id, Message.Role.USER, "homes under $500k")
    assert finish_turn(message, homes.outcomes(**SEARCH), time.perf_counter()) is None
    conversation.refresh_from_db()
    assert conversation.qualification == {}
    assert Message.objects.filter(role=Message.Role.ASSISTANT).count() == 0


def test_an_answer_is_read_only_right_after_the_question(conversation, listings):
    search(conversation)
    conversation.refresh_from_db()
    message = Message.objects.store(conversation.id, Message.Role.USER, "buy")
    message.seq += qualify.ANSWER_WITHIN  # as if more had been said in between
    route_turn(conversation, message, homes.outcomes(), booking_chat.NOW)
    assert Lead.objects.get().intent == ""
    assert "pending" not in conversation.qualification


@pytest.mark.parametrize(("fact", "text", "expected"), [
    ("intent", "buying", {"intent": "buy"}),
    ("intent", "looking to lease", {"intent": "rent"}),
    ("intent", "we're selling our house", {"intent": "sell"}),
    ("intent", "buy and sell", {}),
    ("intent", "no idea", {}),
    ("timeline", "within 6 months", {"timeline": "6 months"}),
    ("timeline", "a year or so", {"timeline": "1 year"}),
    ("timeline", "ASAP please", {"timeline": "asap"}),
    ("timeline", "next spring", {"timeline": "next spring"}),
    ("timeline", "just browsing", {"timeline": "no rush"}),
    ("timeline", "hmm", {}),
    ("preapproved", "Yes we are", {"preapproved": True}),
    ("preapproved", "paying cash", {"preapproved": True}),
    ("preapproved", "no, not yet", {"preapproved": False}),
    ("preapproved", "we haven't", {"preapproved": False}),
    ("preapproved", "not sure", {}),
    ("preapproved", "I want a garden", {}),
    ("contact", "ann@example.com", {}),
])
def test_parse(fact, text, expected):
    assert qualify.parse(fact, text) == expected
