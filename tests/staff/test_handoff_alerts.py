"""Staff hours in the handoff reply, and the overdue-handoff email."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.core.management import call_command

from agent.chat.router import route_turn
from agent.llm.classifiers import ListingQuestion, Pricing, Scheduling
from agent.llm.fanout import Outcome
from agent.models import Handoff, Message
from agent.staff import alerts

pytestmark = pytest.mark.django_db

NY = ZoneInfo("America/New_York")
MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=NY)


def nothing_matched():
    return [
        Outcome("pricing", "m", Pricing(False, None), "{}", 5),
        Outcome("scheduling", "m", Scheduling(False, None, None), "{}", 5),
        Outcome("listing_question", "m", ListingQuestion(False), "{}", 5),
    ]


@pytest.fixture
def message(conversation):
    return Message.objects.store(conversation.id, Message.Role.USER, "hello")


@pytest.fixture(autouse=True)
def staff_hours(settings):
    settings.STAFF_HOURS = (time(9), time(17))
    settings.STAFF_DAYS = frozenset(range(5))  # Monday to Friday
    settings.HANDOFF_ALERT_EMAIL = ["desk@agency.example"]
    settings.HANDOFF_ALERT_MINUTES = 10
    settings.SITE_URL = "https://chat.agency.example"


def test_a_handoff_in_staff_hours_says_someone_replies_shortly(conversation, message):
    reply = route_turn(conversation, message, nothing_matched(), MONDAY_NOON)
    assert reply.text == (
        "Let me transfer you to a human representative. "
        "Someone from our team will reply here shortly."
    )


@pytest.mark.parametrize(
    ("now", "opening"),
    [
        (datetime(2026, 11, 27, 17, 0, tzinfo=NY), "Monday, November 30 at 09:00 EST"),  # Fri
        (datetime(2026, 11, 28, 11, 0, tzinfo=NY), "Monday, November 30 at 09:00 EST"),  # Sat
        (datetime(2026, 11, 24, 7, 30, tzinfo=NY), "Tuesday, November 24 at 09:00 EST"),
        (datetime(2026, 11, 24, 23, 0, tzinfo=NY), "Wednesday, November 25 at 09:00 EST"),
    ],
)
def test_a_handoff_outside_staff_hours_says_when_and_asks_for_contact(
    conversation, message, now, opening
):
    reply = route_turn(conversation, message, nothing_matched(), now)
    assert f"someone will reply here on {opening}." in reply.text
    assert "phone number or email address" in reply.text
    assert Handoff.objects.get().status == "queued"


def test_a_listing_question_outside_hours_does_not_ask_for_contact_already_given(
    conversation, message
):
    conversation.visitor_phone = "+1 201 555 0100"
    conversation.save()
    saturday = datetime(2026, 11, 28, 11, 0, tzinfo=NY)
    said = nothing_matched()
    said[2] = Outcome("listing_question", "m", ListingQuestion(True), "{}", 5)
    reply = route_turn(conversation, message, said, saturday)
    assert reply.text == (
        "Good question! I've passed it to one of our realtors. Our team is away right now; "
        "someone will reply here on Monday, November 30 at 09:00 EST."
    )


def queued(conversation, minutes_ago, now, **fields):
    handoff = Handoff.objects.create(conversation=conversation, reason="listing question", **fields)
    Handoff.objects.filter(pk=handoff.pk).update(created_at=now - timedelta(minutes=minutes_ago))
    return handoff


def test_a_handoff_waiting_too_long_is_emailed_about_once(conversation, message):
    overdue = queued(conversation, 11, MONDAY_NOON, message=message)
    assert alerts.send_overdue_alerts(MONDAY_NOON) == 1
    (email,) = mail.outbox
    assert email.to == ["desk@agency.example"]
    assert email.subject == "Chat: a visitor has waited 11 minutes"
    assert "Visitor's message: hello" in email.body
    assert f"https://chat.agency.example/admin/handoffs/{overdue.pk}/" in email.body

    later = MONDAY_NOON + timedelta(minutes=30)
    assert alerts.send_overdue_alerts(later) == 0
    assert len(mail.outbox) == 1
    overdue.refresh_from_db()
    assert overdue.alerted_at == MONDAY_NOON


def test_only_queued_handoffs_past_the_limit_are_emailed_about(conversation, anna_and_ben):
    anna, _ = anna_and_ben
    queued(conversation, 9, MONDAY_NOON)
    queued(conversation, 30, MONDAY_NOON, status="claimed", claimed_by=anna)
    queued(conversation, 30, MONDAY_NOON, status="resolved")
    assert alerts.send_overdue_alerts(MONDAY_NOON) == 0
    assert mail.outbox == []


def test_no_email_outside_staff_hours_until_they_start(conversation):
    saturday = datetime(2026, 11, 28, 3, 0, tzinfo=NY)
    queued(conversation, 60, saturday)
    assert alerts.send_overdue_alerts(saturday) == 0
    assert alerts.send_overdue_alerts(datetime(2026, 11, 30, 9, 0, tzinfo=NY)) == 1


def test_no_email_without_an_address(conversation, settings):
    settings.HANDOFF_ALERT_EMAIL = []
    queued(conversation, 60, MONDAY_NOON)
    assert alerts.send_overdue_alerts(MONDAY_NOON) == 0
    assert mail.outbox == []


def test_a_failed_email_leaves_the_handoff_to_be_tried_again(conversation, monkeypatch):
    handoff = queued(conversation, 60, MONDAY_NOON)

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("mail server down")

    monkeypatch.setattr("agent.staff.alerts.send_mail", refuse)
    with pytest.raises(ConnectionRefusedError):
        alerts.send_overdue_alerts(MONDAY_NOON)
    handoff.refresh_from_db()
    assert handoff.alerted_at is None
    monkeypatch.undo()
    assert alerts.send_overdue_alerts(MONDAY_NOON) == 1


def test_the_command_emails_each_overdue_handoff_once(conversation, settings):
    from django.utils import timezone

    settings.STAFF_DAYS = frozenset(range(7))
    settings.STAFF_HOURS = (time(0), time.max)  # always on duty, whenever the test runs
    now = timezone.now()
    queued(conversation, 25, now)
    queued(conversation, 12, now)
    call_command("notify_overdue_handoffs")
    call_command("notify_overdue_handoffs")
    assert sorted(email.subject for email in mail.outbox) == [
        "Chat: a visitor has waited 12 minutes",
        "Chat: a visitor has waited 25 minutes",
    ]


@pytest.fixture
def anna_and_ben(realtors):
    return [realtor.user for realtor in realtors]
