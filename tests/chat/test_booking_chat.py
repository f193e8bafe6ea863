"""Booking from the chat: alternatives picked by ordinal or time, contact details, cancel and
move, booking emails, and two visitors racing for one slot."""

import logging
import threading
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connections, transaction

from agent.chat.contact import find_contact
from agent.chat.router import route_turn
from agent.llm.classifiers import AppointmentChange, ListingQuestion, Pricing, Scheduling
from agent.llm.fanout import Outcome
from agent.models import Conversation, Message, Route
from listings.models import Appointment, Realtor

NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=NY)  # a Monday, noon


def outcomes(scheduling=None, change="none"):
    """The four classifiers' outcomes in their default priority order, as the fan-out gives."""
    said = {
        "pricing": Pricing(False, None),
        "appointment_change": AppointmentChange(change),
        "scheduling": scheduling or Scheduling(False, None, None),
        "listing_question": ListingQuestion(False),
    }
    return [Outcome(name, "m", output, "{}", 5) for name, output in said.items()]


def say(conversation, text, scheduling=None, change="none", now=NOW):
    """One visitor turn through the router, as ``agent.chat.turn`` runs it."""
    message = Message.objects.store(conversation.id, Message.Role.USER, text)
    conversation.refresh_from_db()
    return route_turn(conversation, message, outcomes(scheduling, change), now)


def local(appointment):
    return f"{appointment.starts_at.astimezone(NY):%Y-%m-%d %H:%M}"


@pytest.fixture
def anna(db):
    user = get_user_model().objects.create_user(
        "anna", first_name="Anna", last_name="Novak", email="anna@agency.example", is_staff=True
    )
    return Realtor.objects.create(user=user)


@pytest.fixture
def taken(anna):
    """Tuesday 10:00 is taken by another visitor."""
    other = Conversation.objects.create()
    say(other, "book", Scheduling(True, "2026-11-24", "10:00"))
    return Appointment.objects.get()


# --- alternatives -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_unavailable_time_offers_the_three_nearest_free_times(conversation, taken):
    reply = say(conversation, "Tuesday at 10 please", Scheduling(True, "2026-11-24", "10:00"))
    assert reply.route == Route.BOOKING_UNAVAILABLE
    assert "all our realtors are busy" in reply.text
    assert "1) Tuesday, November 24 at 09:00 EST; 2) Tuesday, November 24 at 09:30 EST; " \
           "3) Tuesday, November 24 at 10:30 EST" in reply.text
    conversation.refresh_from_db()
    assert len(conversation.offer["slots"]) == 3


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("text", "scheduling", "booked"),
    [
        ("the second one", None, "2026-11-24 09:30"),
        ("2", None, "2026-11-24 09:30"),
        ("option 3 please", None, "2026-11-24 10:30"),
        ("the last one", None, "2026-11-24 10:30"),
        ("10:30 works", None, "2026-11-24 10:30"),  # dateparser finds the time
        ("9am", Scheduling(True, None, "09:00"), "2026-11-24 09:00"),  # the classifier does
    ],
)
def test_an_offered_time_is_picked_by_ordinal_or_by_time(
    conversation, taken, text, scheduling, booked
):
    say(conversation, "Tuesday at 10", Scheduling(True, "2026-11-24", "10:00"))
    reply = say(conversation, text, scheduling)
    assert reply.route == Route.BOOKING
    mine = Appointment.objects.get(conversation=conversation)
    assert local(mine) == booked
    conversation.refresh_from_db()
    assert conversation.offer == {}


@pytest.mark.django_db
def test_an_offered_day_is_picked_by_its_weekday(conversation, anna):
    # Friday is full from 09:00 to 16:00; the nearest free times fall on Thursday and Friday.
    for hour in range(9, 16):
        for minute in ("00", "30"):  # other visitors, each with a call
            other = Conversation.objects.create()
            say(other, "book", Scheduling(True, "2026-11-27", f"{hour:02d}:{minute}"))
    reply = say(conversation, "Friday at noon", Scheduling(True, "2026-11-27", "12:00"))
    assert reply.route == Route.BOOKING_UNAVAILABLE
    assert "Thursday, November 26 at 16:30" in reply.text
    reply = say(conversation, "Thursday works")
    assert reply.route == Route.BOOKING
    assert local(Appointment.objects.get(conversation=conversation)) == "2026-11-26 16:30"


@pytest.mark.django_db
def test_a_day_without_a_time_offers_that_days_first_free_times(conversation, taken):
    reply = say(conversation, "next Tuesday morning", Scheduling(True, "2026-11-24", None))
    assert reply.route == Route.BOOKING_NEEDS_TIME
    assert "What time on Tuesday, November 24? The nearest free times are: 1) " in reply.text
    assert "10:00" not in reply.text  # taken
    reply = say(conversation, "the third one")
    assert reply.route == Route.BOOKING
    assert local(Appointment.objects.get(conversation=conversation)) == "2026-11-24 10:30"


@pytest.mark.django_db
def test_an_offer_is_forgotten_after_another_kind_of_turn(conversation, taken):
    say(conversation, "Tuesday at 10", Scheduling(True, "2026-11-24", "10:00"))
    say(conversation, "what's the weather?")
    reply = say(conversation, "the second one")
    assert reply.route == Route.FALLBACK
    assert not Appointment.objects.filter(conversation=conversation).exists()


# --- contact details ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "phone", "email"),
    [
        ("call me on (201) 555-0142", "+12015550142", ""),
        ("my number: 201.555.0142, thanks", "+12015550142", ""),
        ("I'm in London: +44 20 7946 0958", "+442079460958", ""),
        ("+33 6 12 34 56 78 or vera@example.com", "+33612345678", "vera@example.com"),
        ("mail Vera.V@Example.COM.", "", "Vera.V@example.com"),
        ("my number is 555-01", "", ""),  # too short
        ("+1 123 456 7890", "", ""),  # no US area code starts with 1
        ("vera@ or @example.com or vera@example", "", ""),
        ("listing 123456 on 2026-11-24 at 10:00", "", ""),
    ],
)
def test_contact_details_are_found_validated_and_normalised(text, phone, email):
    found = find_contact(text)
    assert (found.phone, found.email) == (phone, email)


@pytest.mark.django_db
def test_a_booking_asks_for_a_contact_and_a_later_message_saves_it(
    conversation, anna, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        reply = say(conversation, "book", Scheduling(True, "2026-11-24", "10:00"))
    assert "Please give me a phone number or an email address" in reply.text
    assert [m.to for m in mail.outbox] == [["anna@agency.example"]]

    with django_capture_on_commit_callbacks(execute=True):
        reply = say(conversation, "sure, vera@example.com or +44 20 7946 0958")
    assert reply.route == Route.CONTACT_SAVED
    assert "+44 20 7946 0958 and vera@example.com" in reply.text
    conversation.refresh_from_db()
    appointment = Appointment.objects.get()
    assert (conversation.visitor_email, conversation.visitor_phone) == (
        "vera@example.com", "+442079460958"
    )
    assert (appointment.visitor_email, appointment.visitor_phone) == (
        "vera@example.com", "+442079460958"
    )
    assert mail.outbox[-1].to == ["vera@example.com"]  # the visitor's confirmation, now


@pytest.mark.django_db
def test_a_known_contact_is_not_asked_for_again(conversation, anna):
    say(conversation, "you can reach me at 201-555-0142")
    reply = say(conversation, "book", Scheduling(True, "2026-11-24", "10:00"))
    assert reply.route == Route.BOOKING
    assert "phone number" not in reply.text
    assert Appointment.objects.get().visitor_phone == "+12015550142"


@pytest.mark.django_db
def test_an_invalid_number_alone_is_not_saved(conversation):
    reply = say(conversation, "my number is 555-01")
    assert reply.route == Route.FALLBACK
    conversation.refresh_from_db()
    assert conversation.visitor_phone == ""


# --- cancel and move ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_cancel_my_appointment_cancels_it_and_frees_the_slot(conversation, anna):
    say(conversation, "book", Scheduling(True, "2026-11-24", "10:00"))
    reply = say(conversation, "Cancel my appointment", change="cancel")
    assert reply.route == Route.BOOKING_CANCELLED
    assert "Tuesday, November 24 at 10:00 EST is cancelled" in reply.text
    assert Appointment.objects.get().status == Appointment.Status.CANCELLED
    other = Conversation.objects.create()
    assert say(other, "book", Scheduling(True, "2026-11-24", "10:00")).route == Route.BOOKING


@pytest.mark.django_db
def test_cancel_or_move_without_an_upcoming_call_says_so(conversation, anna):
    assert say(conversation, "cancel it", change="cancel").route == Route.BOOKING_NOT_FOUND
    assert say(conversation, "move it", change="move").route == Route.BOOKING_NOT_FOUND


@pytest.mark.django_db
def test_move_it_to_friday_keeps_the_time_of_day_and_the_realtor(conversation, anna):
    Realtor.objects.create(user=get_user_model().objects.create_user("ben", first_name="Ben"))
    say(conversation, "book", Scheduling(True, "2026-11-24", "10:00"))
    reply = say(conversation, "can we move it to Friday?", Scheduling(True, "2026-11-27", None),
                change="move")
    assert reply.route == Route.BOOKING
    assert "is moved to Friday, November 27 at 10:00 EST" in reply.text
    old, new = Appointment.objects.order_by("pk")
    assert old.status == Appointment.Status.CANCELLED
    assert (new.status, new.realtor, local(new)) == (Appointment.Status.BOOKED, anna,
                                                     "2026-11-27 10:00")


@pytest.mark.django_db
def test_a_call_can_move_to_a_time_overlapping_itself(conversation, anna):
    say(conversation, "book", Scheduling(True, "2026-11-24", "10:00"))
    reply = say(conversation, "move it to 10:15", Scheduling(True, None, "10:15"), change="move")
    assert reply.route == Route.BOOKING
    assert [local(a) for a in Appointment.objects.filter(status="booked")] == ["2026-11-24 10:15"]


@pytest.mark.django_db
def test_a_move_to_a_taken_time_keeps_the_call_and_offers_times_to_move_to(
    conversation, taken
):
    say(conversation, "book", Scheduling(True, "2026-11-25", "10:00"))
    reply = say(conversation, "move it to Tuesday at 10", Scheduling(True, "2026-11-24", "10:00"),
                change="move")
    assert reply.route == Route.BOOKING_UNAVAILABLE
    mine = Appointment.objects.get(conversation=conversation)
    assert (mine.status, local(mine)) == (Appointment.Status.BOOKED, "2026-11-25 10:00")
    reply = say(conversation, "the first one")
    assert reply.route == Route.BOOKING and "is moved to" in reply.text
    active = Appointment.objects.filter(conversation=conversation, status="booked")
    assert [local(a) for a in active] == ["2026-11-24 09:00"]


# --- emails -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_emails_carry_the_right_local_time_and_an_ics(
    conversation, anna, django_capture_on_commit_callbacks
):
    conversation.visitor_email = "vera@example.com"
    conversation.save()
    now = datetime(2027, 3, 11, 12, 0, tzinfo=NY)  # EST; the call is after the change, in EDT
    with django_capture_on_commit_callbacks(execute=True):
        reply = say(conversation, "book", Scheduling(True, "2027-03-15", "10:00"), now=now)
    assert "A confirmation is on its way to vera@example.com" in reply.text
    assert sorted(m.to[0] for m in mail.outbox) == ["anna@agency.example", "vera@example.com"]
    for message in mail.outbox:
        assert "Monday, March 15 at 10:00 EDT" in message.subject + message.body
        (name, ics, mimetype), = message.attachments
        assert (name, mimetype) == ("call.ics", "text/calendar")
        assert "DTSTART;TZID=America/New_York:20270315T100000\r\n" in ics
        assert "DTEND;TZID=America/New_York:20270315T103000\r\n" in ics
        assert "BEGIN:VTIMEZONE\r\n" in ics and "BEGIN:VALARM\r\n" in ics
        assert "METHOD:REQUEST\r\n" in ics
        assert all(len(line.encode()) <= 75 for line in ics.split("\r\n"))

    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        say(conversation, "cancel", change="cancel", now=now)
    assert len(mail.outbox) == 2
    assert all("METHOD:CANCEL" in m.attachments[0][1] for m in mail.outbox)


@pytest.mark.django_db
def test_a_failing_mail_server_does_not_undo_the_booking(
    conversation, anna, settings, django_capture_on_commit_callbacks, caplog
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 1
    with django_capture_on_commit_callbacks(execute=True):
        reply = say(conversation, "book", Scheduling(True, "2026-11-24", "10:00"))
    assert reply.route == Route.BOOKING
    assert Appointment.objects.filter(status="booked").count() == 1
    assert "could not email anna@agency.example" in caplog.text


# --- the race -----------------------------------------------------------------------------------

RACES = 20


@pytest.mark.django_db(transaction=True)
def test_two_visitors_racing_for_one_slot_get_one_appointment_and_one_offer(anna, caplog):
    """Each round, two threads with their own database connections book the same slot at
    once, each in its own transaction as a turn does. Repeated 20 times."""
    caplog.set_level(logging.INFO, logger="listings.booking")
    slots = [d for d in range(24, 31) if datetime(2026, 11, d).weekday() < 5]
    slots = [(f"2026-11-{d}", f"{h:02d}:00") for d in slots for h in range(9, 17)][:RACES]
    routes_by_round = []
    for round_number, (day, clock) in enumerate(slots):
        visitors = [Conversation.objects.create() for _ in (0, 1)]
        barrier = threading.Barrier(2)
        replies = [None, None]
        errors = []

        def visit(n, visitors=visitors, barrier=barrier, replies=replies, errors=errors,
                  day=day, clock=clock):
            try:
                message = Message.objects.store(visitors[n].id, Message.Role.USER, "book")
                barrier.wait(timeout=10)
                with transaction.atomic():
                    replies[n] = route_turn(
                        visitors[n], message, outcomes(Scheduling(True, day, clock)), NOW
                    )
            except Exception as exc:  # reported below, with the round
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=visit, args=(n,)) for n in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not errors, f"round {round_number}: {errors}"
        routes_by_round.append(sorted(r.route for r in replies))
        starts_at = datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=NY).astimezone(UTC)
        assert Appointment.objects.filter(starts_at=starts_at, status="booked").count() == 1
        loser = next(r for r in replies if r.route == Route.BOOKING_UNAVAILABLE)
        assert "1) " in loser.text and "2) " in loser.text
    assert routes_by_round == [[Route.BOOKING, Route.BOOKING_UNAVAILABLE]] * RACES
    assert Appointment.objects.count() == RACES
    by_constraint = caplog.text.count("was taken concurrently")
    print(f"race: {RACES}/{RACES} rounds gave exactly one booking; "
          f"{by_constraint} decided by the PostgreSQL constraint, "
          f"{RACES - by_constraint} by the application check")
