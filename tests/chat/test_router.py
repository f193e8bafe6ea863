"""Every route of the router, called directly with classifier outcomes."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from agent.chat.router import listing_to_read, route_turn
from agent.llm.classifiers import ListingQuestion, Pricing, Scheduling
from agent.llm.fanout import Outcome
from agent.models import Handoff, Message, Route
from listings.models import Appointment, Listing

NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=NY)  # a Monday, noon

pytestmark = pytest.mark.django_db


def outcomes(pricing=None, scheduling=None, listing_question=None, errors=()):
    """Outcomes as the fan-out returns them; a classifier named in ``errors`` failed."""
    said = {
        "pricing": pricing or Pricing(False, None),
        "scheduling": scheduling or Scheduling(False, None, None),
        "listing_question": listing_question or ListingQuestion(False),
    }
    return [
        Outcome(name, "m", None, "", 5, "timed out")
        if name in errors
        else Outcome(name, "m", output, "{}", 5)
        for name, output in said.items()
    ]


@pytest.fixture
def message(conversation):
    return Message.objects.store(conversation.id, Message.Role.USER, "hello")


def test_a_price_question_with_a_known_listing_gives_its_price(conversation, message, listings):
    reply = route_turn(conversation, message, outcomes(Pricing(True, "123456")), NOW)
    assert reply.route == Route.PRICE
    assert reply.text == "The price for listing 123456 is $350,000."


def test_the_listing_a_route_reads_is_the_deciding_price_questions(message):
    assert listing_to_read(outcomes(Pricing(True, "123456")), message) == "123456"
    assert listing_to_read(outcomes(Pricing(True, None)), message) is None
    said = outcomes(scheduling=Scheduling(True, None, None), listing_question=ListingQuestion(True))
    assert listing_to_read(said, message) is None  # a call request decides: no listing read


def test_a_listing_read_with_the_mark_is_not_read_again(conversation, message, listings):
    # The caller's read (agent.chat.turn.mark_answered) found no 123456: the route goes by it.
    said = outcomes(Pricing(True, "123456"))
    reply = route_turn(conversation, message, said, NOW, read_listings={"123456": None})
    assert reply.route == Route.PRICE_UNKNOWN_LISTING
    assert route_turn(conversation, message, said, NOW).route == Route.PRICE


def test_a_price_question_beats_a_call_request(conversation, message, listings, realtors):
    said = outcomes(Pricing(True, "654321"), Scheduling(True, "2026-11-24", "10:00"))
    assert route_turn(conversation, message, said, NOW).route == Route.PRICE
    assert not Appointment.objects.exists()


def test_a_price_question_for_an_unknown_listing_says_so(conversation, message, listings):
    reply = route_turn(conversation, message, outcomes(Pricing(True, "999999")), NOW)
    assert reply.route == Route.PRICE_UNKNOWN_LISTING
    assert "999999" in reply.text


def test_a_price_question_without_a_listing_asks_for_it(conversation, message):
    reply = route_turn(conversation, message, outcomes(Pricing(True, None)), NOW)
    assert reply.route == Route.PRICE_NEEDS_LISTING
    assert "listing ID" in reply.text


def test_a_sold_listing_says_it_is_sold(conversation, message, listings):
    Listing.objects.filter(listing_id="112233").update(status=Listing.Status.SOLD)
    reply = route_turn(conversation, message, outcomes(Pricing(True, "112233")), NOW)
    assert reply.route == Route.PRICE
    assert "sold" in reply.text and "$550,000" in reply.text


def test_a_call_request_with_date_and_time_books_a_real_appointment(
    conversation, message, realtors
):
    reply = route_turn(
        conversation, message, outcomes(scheduling=Scheduling(True, "2026-11-24", "10:00")), NOW
    )
    assert reply.route == Route.BOOKING
    appointment = Appointment.objects.get()
    assert appointment.conversation == conversation
    assert appointment.starts_at == datetime(2026, 11, 24, 10, 0, tzinfo=NY)
    assert (appointment.ends_at - appointment.starts_at).total_seconds() == 30 * 60
    assert "Tuesday, November 24 at 10:00" in reply.text
    assert str(appointment.realtor) in reply.text


def test_two_calls_at_one_time_go_to_two_realtors_and_a_third_is_refused(
    conversation, message, realtors, settings
):
    settings.BOOKING_MAX_UPCOMING = 3  # one conversation books them all here
    said = outcomes(scheduling=Scheduling(True, "2026-11-24", "10:00"))
    first = route_turn(conversation, message, said, NOW)
    second = route_turn(conversation, message, said, NOW)
    third = route_turn(conversation, message, said, NOW)
    assert [first.route, second.route, third.route] == [
        Route.BOOKING,
        Route.BOOKING,
        Route.BOOKING_UNAVAILABLE,
    ]
    assert {a.realtor for a in Appointment.objects.all()} == set(realtors)
    assert "busy" in third.text


def test_a_realtor_with_fewer_calls_that_day_gets_the_next_one(conversation, message, realtors):
    route_turn(
        conversation, message, outcomes(scheduling=Scheduling(True, "2026-11-24", "10:00")), NOW
    )
    route_turn(
        conversation, message, outcomes(scheduling=Scheduling(True, "2026-11-24", "11:00")), NOW
    )
    assert Appointment.objects.values("realtor").distinct().count() == 2


@pytest.mark.parametrize(
    ("day", "clock", "why"),
    [
        ("2026-11-20", "10:00", "in the past"),
        ("2026-11-29", "11:00", "Sundays"),
        ("2026-11-24", "08:30", "outside our hours"),
        ("2026-11-24", "16:45", "outside our hours"),
        ("2027-02-30", "10:00", "not a valid date"),
        ("2026-11-24", "25:00", "not a valid time"),
    ],
)
def test_a_call_that_cannot_be_booked_says_why(conversation, message, realtors, day, clock, why):
    reply = route_turn(
        conversation, message, outcomes(scheduling=Scheduling(True, day, clock)), NOW
    )
    assert reply.route == Route.BOOKING_UNAVAILABLE
    assert why in reply.text
    assert not Appointment.objects.exists()


def test_a_call_with_no_realtor_at_all_is_unavailable(conversation, message):
    reply = route_turn(
        conversation, message, outcomes(scheduling=Scheduling(True, "2026-11-24", "10:00")), NOW
    )
    assert reply.route == Route.BOOKING_UNAVAILABLE


@pytest.mark.parametrize(("day", "clock"), [(None, None), ("2026-11-24", None), (None, "10:00")])
def test_a_call_request_without_date_and_time_asks_for_them(conversation, message, day, clock):
    reply = route_turn(
        conversation, message, outcomes(scheduling=Scheduling(True, day, clock)), NOW
    )
    assert reply.route == Route.BOOKING_NEEDS_TIME
    assert "What day and time" in reply.text


def test_a_listing_question_queues_a_handoff(conversation, message):
    reply = route_turn(conversation, message, outcomes(listing_question=ListingQuestion(True)), NOW)
    assert reply.route == Route.HANDOFF
    handoff = Handoff.objects.get()
    assert (handoff.conversation, handoff.message, handoff.status) == (
        conversation,
        message,
        Handoff.Status.QUEUED,
    )


def test_anything_else_falls_back_to_a_person(conversation, message):
    reply = route_turn(conversation, message, outcomes(), NOW)
    assert reply.route == Route.FALLBACK
    assert "human representative" in reply.text
    assert Handoff.objects.get().reason == "no classifier matched"


def test_a_failed_classifier_counts_as_no(conversation, message, listings):
    said = outcomes(
        Pricing(True, "123456"), listing_question=ListingQuestion(True), errors=["pricing"]
    )
    assert route_turn(conversation, message, said, NOW).route == Route.HANDOFF


def test_when_every_classifier_fails_the_handoff_says_so(conversation, message):
    said = outcomes(errors=["pricing", "scheduling", "listing_question"])
    reply = route_turn(conversation, message, said, NOW)
    assert reply.route == Route.FALLBACK
    assert Handoff.objects.get().reason.startswith("every classifier failed: pricing: timed out")


def test_a_conversation_waiting_for_a_person_is_queued_once(conversation, message):
    route_turn(conversation, message, outcomes(), NOW)
    route_turn(conversation, message, outcomes(listing_question=ListingQuestion(True)), NOW)
    assert Handoff.objects.count() == 1


def test_the_first_yes_in_the_outcomes_priority_order_decides(conversation, message, realtors):
    said = outcomes(Pricing(True, "654321"), Scheduling(True, "2026-11-24", "10:00"))
    said.reverse()  # staff gave scheduling the higher priority
    assert route_turn(conversation, message, said, NOW).route == Route.BOOKING


def test_a_cancelled_call_is_neither_a_yes_nor_a_failure(conversation, message):
    said = outcomes()
    said[2] = Outcome("listing_question", "m", None, "", 5, status="cancelled")
    reply = route_turn(conversation, message, said, NOW)
    assert "human representative" in reply.text
    assert Handoff.objects.get().reason == "no classifier matched"


def test_when_a_call_failed_and_none_said_yes_the_reply_apologises(conversation, message):
    said = outcomes(errors=["pricing"])
    reply = route_turn(conversation, message, said, NOW)
    assert reply.route == Route.FALLBACK and reply.text.startswith("Sorry")
    assert Handoff.objects.get().reason == "no classifier matched: pricing: timed out"
