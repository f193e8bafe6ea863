"""What one visitor's turn may cost (issue 13, section 4): dateparser reads a bounded part of
the message, off the database thread; the listing lookup is one query; upcoming calls are
capped per conversation and per contact."""

import threading

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agent.chat import dialogue, language, turn
from agent.crm.models import Lead
from agent.llm.classifiers import Scheduling
from agent.models import ClassifierCall, Conversation, Message, Route
from listings.models import Appointment, Listing, Realtor
from tests.chat.test_booking_chat import NOW, outcomes, say

NUMBERS = " ".join(str(n) for n in range(1, 11))
CRAFTED = [
    (NUMBERS + " ") * 100,  # "1 2 3 ... 10" repeated: 2,000 characters
    ("march may june 3pm 4:30 the 5th " * 70)[:2000],  # month names and times
]


@pytest.fixture
def anna(db):
    user = get_user_model().objects.create_user("anna", first_name="Anna", is_staff=True)
    return Realtor.objects.create(user=user)


@pytest.mark.parametrize("text", CRAFTED, ids=["numbers", "months-and-times"])
def test_dateparser_reads_a_couple_of_hundred_characters_at_most(text, monkeypatch):
    read = []
    real = dialogue.search_dates
    monkeypatch.setattr(
        dialogue, "search_dates", lambda part, **kwargs: read.append(part) or real(part, **kwargs)
    )
    dialogue.mentioned_in(text, NOW)
    assert all(len(part) <= dialogue.DATE_TEXT for part in read)


def test_a_message_without_date_words_is_not_given_to_dateparser(monkeypatch):
    monkeypatch.setattr(dialogue, "search_dates", lambda *a, **k: pytest.fail("parsed"))
    assert dialogue.mentioned_in("the second one, please " * 80, NOW) == (None, None)


@pytest.mark.parametrize(
    ("text", "day", "clock"),
    [
        ("Thursday works", "2026-11-26", None),
        ("ok " * 500 + "3pm then", None, "15:00"),  # far into a long message
        ("nice " * 400 + "Thursday works, or 3pm", "2026-11-26", "15:00"),
    ],
    ids=["weekday", "time-far-in", "weekday-and-time-far-in"],
)
def test_days_and_times_are_still_found(text, day, clock):
    found_day, found_clock = dialogue.mentioned_in(text, NOW)
    assert (str(found_day) if found_day else None) == day
    assert (f"{found_clock:%H:%M}" if found_clock else None) == clock


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("text", "on_loop"), [("Thursday works", False), ("Hello there!", True)],
                         ids=["dateparser-in-a-worker", "no-date-words-on-the-loop"])
async def test_the_turn_reads_the_text_off_the_database_thread(
    standin, monkeypatch, chat_client, text, on_loop
):
    threads = {}
    parse, finish = dialogue.mentioned_in, turn.finish_turn

    def mentioned_in(text, now):
        threads["parse"] = threading.get_ident()
        return parse(text, now)

    def finish_turn(*args):
        threads["database"] = threading.get_ident()
        threads["read"] = args[3]  # worked out before the trip: dates and language
        return finish(*args)

    monkeypatch.setattr(dialogue, "mentioned_in", mentioned_in)
    monkeypatch.setattr(turn, "finish_turn", finish_turn)
    conversation = await Conversation.objects.acreate()
    message, _ = await sync_to_async(Message.objects.store_visitor)(conversation.id, text, None)
    await turn.run_turn(message)
    (day, _clock), written = threads["read"]
    assert (day is not None, written) == (not on_loop, language.guess(text))
    assert threads["parse"] != threads["database"]
    # A message naming a day or time is parsed in a worker thread, not on the event loop;
    # one naming none gives dateparser nothing, and saves the thread hop (issue 16).
    assert (threads["parse"] == threading.get_ident()) is on_loop


@pytest.mark.django_db
def test_the_listing_under_discussion_is_one_query_whatever_the_numbers(
    conversation, django_assert_max_num_queries
):
    Listing.objects.create(listing_id="123456", address="14 Maple Court", price=1, bedrooms=3)
    Message.objects.store(conversation.id, Message.Role.USER, "About 123456, please")
    numbers = " ".join(f"{n:06d}" for n in range(200_000, 200_280))  # 280 IDs, none a listing
    Message.objects.store(conversation.id, Message.Role.USER, numbers)
    with django_assert_max_num_queries(2):  # the messages, then the listings
        listing = dialogue._listing_under_discussion(conversation)
    assert listing.listing_id == "123456"


@pytest.mark.django_db
def test_a_conversation_books_at_most_the_cap_of_upcoming_calls(conversation, anna, settings):
    settings.BOOKING_MAX_UPCOMING = 2
    assert say(conversation, "b", Scheduling(True, "2026-11-24", "10:00")).route == Route.BOOKING
    assert say(conversation, "b", Scheduling(True, "2026-11-24", "11:00")).route == Route.BOOKING
    reply = say(conversation, "b", Scheduling(True, "2026-11-24", "12:00"))
    assert reply.route == Route.BOOKING_LIMIT
    assert "cancel or move one of them" in reply.text
    assert Appointment.objects.filter(conversation=conversation).count() == 2
    say(conversation, "cancel", change="cancel")  # one freed: the next one books
    assert say(conversation, "b", Scheduling(True, "2026-11-24", "12:00")).route == Route.BOOKING


@pytest.mark.django_db
def test_an_email_or_phone_holds_at_most_the_cap_of_upcoming_calls_across_chats(
    anna, settings
):
    settings.BOOKING_MAX_UPCOMING = 2
    for contact in ({"visitor_email": "Vera@Example.com"}, {"visitor_phone": "+12015550100"}):
        Appointment.objects.all().delete()
        chats = [Conversation.objects.create(**contact) for _ in range(3)]
        assert say(chats[0], "b", Scheduling(True, "2026-11-24", "10:00")).route == Route.BOOKING
        assert say(chats[1], "b", Scheduling(True, "2026-11-24", "11:00")).route == Route.BOOKING
        chats[2].visitor_email = chats[2].visitor_email.lower()
        chats[2].save()
        reply = say(chats[2], "b", Scheduling(True, "2026-11-24", "12:00"))
        assert reply.route == Route.BOOKING_LIMIT
        assert Appointment.objects.count() == 2


def test_the_calls_are_logged_in_the_statement_that_marks_the_message(conversation, listings):
    message = Message.objects.store(conversation.id, Message.Role.USER, "hello")
    with CaptureQueriesContext(connection) as seen:
        reply = turn.finish_turn(message, outcomes(), 0.0)
    assert reply.route == Route.FALLBACK
    logging = [q["sql"] for q in seen if "INSERT INTO agent_classifiercall" in q["sql"]]
    assert len(logging) == 1 and "UPDATE agent_message" in logging[0]  # one statement, both
    names = ClassifierCall.objects.filter(message=message).order_by("id")
    assert list(names.values_list("classifier", flat=True)) == [o.classifier for o in outcomes()]


def test_the_lead_is_touched_in_the_statement_that_marks_the_message(conversation, listings):
    """One statement a turn fewer: the mark also moves the lead's last contact (issue 16)."""
    first = Message.objects.store(conversation.id, Message.Role.USER, "hello")
    turn.finish_turn(first, outcomes(), 0.0)  # the first turn creates the lead
    lead = Lead.objects.get()
    message = Message.objects.store(conversation.id, Message.Role.USER, "hello again")
    with CaptureQueriesContext(connection) as seen:
        turn.finish_turn(message, outcomes(), 0.0)
    lead_statements = [q["sql"] for q in seen if "agent_lead" in q["sql"]]
    assert len(lead_statements) == 1 and "UPDATE agent_message" in lead_statements[0]
    lead.refresh_from_db()
    message.refresh_from_db()
    assert lead.last_contact_at == lead.updated_at == message.answered_at


def test_the_calls_stay_logged_when_routing_fails(conversation, monkeypatch):
    def broken(*args):
        raise RuntimeError("the router broke")

    monkeypatch.setattr(turn, "route_turn", broken)
    message = Message.objects.store(conversation.id, Message.Role.USER, "hello")
    with pytest.raises(RuntimeError, match="the router broke"):
        turn.finish_turn(message, outcomes(), 0.0)
    assert ClassifierCall.objects.filter(message=message).count() == len(outcomes())
    message.refresh_from_db()
    assert message.answered_at is None  # the mark went with the rolled-back transaction
    assert not Message.objects.filter(role=Message.Role.ASSISTANT).exists()
