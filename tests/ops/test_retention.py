"""Retention: purge_conversations anonymises (or deletes) conversations older than
RETENTION_DAYS; appointments keep their time and realtor, and nothing recent is touched."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from agent.models import ClassifierCall, Conversation, Handoff, Message, Route
from agent.ops.retention import REMOVED, purge
from listings.models import Appointment

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def chat(name, age, realtor=None, call_in=None):
    """A conversation whose messages are ``age`` old: a visitor asking for a call (with contact
    details), two classifier calls (one failed), the reply, a handoff, and, with ``realtor``,
    an appointment starting ``call_in`` from now (negative: in the past)."""
    conversation = Conversation.objects.create(
        visitor_name="Vera Visitor", visitor_email="vera@example.com",
        visitor_phone="+1 201 555 0100",
    )
    question = Message.objects.create(
        conversation=conversation, seq=1, role=Message.Role.USER,
        text="Call me on 555 0100, I'm Vera", client_id="c-1",
    )
    Message.objects.create(
        conversation=conversation, seq=2, role=Message.Role.ASSISTANT, text="Booked, Vera.",
        route=Route.BOOKING, latency_ms=700,
    )
    ClassifierCall.objects.create(
        message=question, classifier="scheduling", model="m", latency_ms=300,
        output={"wants_call": True, "date": None, "time": None}, raw_output='{"wants_call":true}',
    )
    ClassifierCall.objects.create(
        message=question, classifier="pricing", model="m", latency_ms=300,
        raw_output="Vera wants", error="not JSON: 'Vera wants'",
    )
    Handoff.objects.create(conversation=conversation, message=question, reason="pricing: Vera")
    if realtor is not None:
        starts_at = timezone.now() + call_in
        Appointment.objects.create(
            realtor=realtor, starts_at=starts_at, ends_at=starts_at + timedelta(minutes=30),
            visitor_name="Vera Visitor", visitor_phone="+1 201 555 0100",
            visitor_email="vera@example.com", conversation=conversation,
        )
    old = timezone.now() - age
    Conversation.objects.filter(pk=conversation.pk).update(created_at=old)
    Message.objects.filter(conversation=conversation).update(created_at=old)
    return conversation


@pytest.fixture
def old_chat(realtors):
    """400 days old, with a call that took place then."""
    return chat("old", 400 * DAY, realtors[0], call_in=-399 * DAY)


@pytest.fixture
def recent_chat(realtors):
    """Ten days old."""
    return chat("recent", 10 * DAY, realtors[1], call_in=-9 * DAY)


def test_anonymising_removes_texts_contacts_and_raw_outputs(old_chat, recent_chat, settings):
    settings.RETENTION_DAYS = 365
    call_command("purge_conversations")

    old_chat.refresh_from_db()
    assert (old_chat.visitor_name, old_chat.visitor_email, old_chat.visitor_phone) == ("", "", "")
    assert old_chat.anonymised_at is not None
    messages = Message.objects.filter(conversation=old_chat)
    assert [(m.seq, m.text, m.client_id) for m in messages] == [(1, "", None), (2, "", None)]
    assert messages.get(seq=2).route == Route.BOOKING  # the dashboard's figures stay
    assert messages.get(seq=2).latency_ms == 700
    calls = {c.classifier: c for c in ClassifierCall.objects.filter(message__conversation=old_chat)}
    assert calls["scheduling"].raw_output == ""
    assert calls["scheduling"].output == {"wants_call": True, "date": None, "time": None}
    assert (calls["pricing"].raw_output, calls["pricing"].error) == ("", REMOVED)
    assert Handoff.objects.get(conversation=old_chat).reason == ""


def test_appointments_keep_their_time_and_realtor_but_not_the_visitor(old_chat, realtors):
    before = Appointment.objects.get(conversation=old_chat)
    purge(timezone.now(), 365)
    after = Appointment.objects.get(pk=before.pk)
    assert (after.starts_at, after.ends_at, after.realtor, after.status) == (
        before.starts_at, before.ends_at, realtors[0], before.status
    )
    assert (after.visitor_name, after.visitor_email, after.visitor_phone) == ("", "", "")
    assert after.conversation_id == old_chat.pk


def test_recent_conversations_are_left_alone(old_chat, recent_chat):
    purge(timezone.now(), 365)
    recent_chat.refresh_from_db()
    assert recent_chat.visitor_email == "vera@example.com"
    assert recent_chat.anonymised_at is None
    assert Message.objects.get(conversation=recent_chat, seq=1).text.startswith("Call me")
    assert Appointment.objects.get(conversation=recent_chat).visitor_name == "Vera Visitor"
    calls = ClassifierCall.objects.filter(message__conversation=recent_chat)
    assert not calls.filter(raw_output="").exists()


def test_an_old_conversation_with_a_recent_message_is_kept(old_chat):
    Message.objects.create(conversation=old_chat, seq=3, role=Message.Role.USER, text="hello?")
    assert purge(timezone.now(), 365).conversations == 0
    old_chat.refresh_from_db()
    assert old_chat.visitor_email == "vera@example.com"


def test_a_conversation_with_a_call_still_to_come_is_kept(realtors):
    waiting = chat("waiting", 400 * DAY, realtors[0], call_in=2 * DAY)
    assert purge(timezone.now(), 365).conversations == 0
    assert Appointment.objects.get(conversation=waiting).visitor_phone == "+1 201 555 0100"


def test_the_dry_run_prints_counts_and_changes_nothing(old_chat, recent_chat, capsys):
    call_command("purge_conversations", "--dry-run", "--days", "5")
    out = capsys.readouterr().out
    assert out == (
        "Would anonymise (older than 5 days): 2 conversations, 4 messages, 4 classifier calls, "
        "2 handoffs, 2 appointments' visitor contacts.\n"
    )
    assert not Conversation.objects.filter(anonymised_at__isnull=False).exists()
    assert not Message.objects.filter(text="").exists()


def test_a_second_run_finds_nothing_left(old_chat, capsys):
    call_command("purge_conversations")
    call_command("purge_conversations")
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith("Anonymised (older than 365 days): 1 conversations, 2 messages")
    assert second.startswith("Anonymised (older than 365 days): 0 conversations")


def test_deleting_removes_the_conversation_and_keeps_the_appointment(old_chat, recent_chat):
    appointment = Appointment.objects.get(conversation=old_chat)
    counts = purge(timezone.now(), 365, delete=True)
    assert (counts.conversations, counts.messages, counts.classifier_calls, counts.handoffs,
            counts.appointments) == (1, 2, 2, 1, 1)
    assert list(Conversation.objects.all()) == [recent_chat]
    assert not Message.objects.filter(conversation_id=old_chat.pk).exists()
    assert not Handoff.objects.filter(conversation_id=old_chat.pk).exists()
    appointment.refresh_from_db()
    assert appointment.conversation_id is None
    assert appointment.visitor_name == ""
    assert appointment.realtor.user.username == "anna"


def test_deleting_also_removes_conversations_anonymised_before(old_chat):
    purge(timezone.now(), 365)
    assert purge(timezone.now(), 365, delete=True).conversations == 1
    assert not Conversation.objects.exists()


def test_a_purge_in_batches_covers_every_conversation(realtors, monkeypatch):
    monkeypatch.setattr("agent.ops.retention.BATCH", 2)
    for n in range(5):
        chat(f"s{n}", 400 * DAY)
    assert purge(timezone.now(), 365).conversations == 5
    assert not Conversation.objects.filter(anonymised_at__isnull=True).exists()


def test_the_command_refuses_less_than_a_day():
    with pytest.raises(CommandError, match="at least 1"):
        call_command("purge_conversations", "--days", "0")
