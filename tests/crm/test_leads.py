"""Leads from the chat: created on the first turn, filled with contact details and listing ids,
merged when an email comes back, moved to "viewing booked" by a booking; the outbox's events
in order, and none from a rolled-back booking."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from procrastinate.contrib.django.models import ProcrastinateJob

from agent.crm import leads
from agent.crm.models import Delivery, Event, Lead
from agent.llm.classifiers import Pricing, Scheduling
from agent.models import Conversation
from tests.chat.test_booking_chat import NOW, outcomes, say
from tests.crm.helpers import endpoint

pytestmark = pytest.mark.django_db


def types(prefix=""):
    """The event types written so far, in order (those starting with ``prefix``)."""
    events = Event.objects.filter(type__startswith=prefix).order_by("id")
    return list(events.values_list("type", flat=True))


def test_the_first_turn_creates_the_lead_and_contact_details_update_it(conversation, listings):
    endpoint(events=["lead.created", "lead.updated"])
    say(conversation, "hello")  # a fallback: the handoff's event follows lead.created
    lead = Lead.objects.get()
    assert types() == ["lead.created", "handoff.queued"]
    say(conversation, "reach me at ann@example.com")
    lead.refresh_from_db()
    assert lead.email == "ann@example.com"
    assert types("lead.") == ["lead.created", "lead.updated"]
    assert Event.objects.get(type="lead.updated").payload["data"]["changed"] == ["email"]
    say(conversation, "hello again")  # nothing new: no lead event
    assert types("lead.") == ["lead.created", "lead.updated"]
    # every event got a delivery and a job, locked per endpoint and lead
    assert Delivery.objects.count() == 2
    locks = set(ProcrastinateJob.objects.values_list("lock", flat=True))
    assert locks == {f"webhook:{Delivery.objects.first().endpoint_id}:lead:{lead.pk}"}


def test_every_turn_moves_the_last_contact_and_only_a_change_writes_more(conversation, listings):
    say(conversation, "hello", now=NOW)
    lead = Lead.objects.get()
    later = NOW + timedelta(hours=2)
    with CaptureQueriesContext(connection) as seen:
        say(conversation, "hello again", now=later)  # nothing new: the read is the touch
    lead.refresh_from_db()
    assert lead.last_contact_at == lead.updated_at == later
    lead_statements = [q["sql"] for q in seen if "agent_lead" in q["sql"]]
    assert len(lead_statements) == 1 and lead_statements[0].startswith("WITH touched AS")
    say(conversation, "reach me at ann@example.com", now=later + timedelta(hours=1))
    lead.refresh_from_db()
    assert lead.email == "ann@example.com"
    assert lead.last_contact_at == later + timedelta(hours=1)


def test_listing_ids_the_pricing_classifier_names_are_kept(conversation, listings):
    message = say(conversation, "hello")
    assert message
    from agent.chat.router import route_turn
    from agent.models import Message

    said = outcomes()
    said[0] = said[0].__class__("pricing", "m", Pricing(True, "123456"), "{}", 5)
    text = Message.objects.store(conversation.id, Message.Role.USER, "price of 123456?")
    route_turn(conversation, text, said, NOW)
    assert Lead.objects.get().listing_ids == ["123456"]


def test_the_same_email_in_another_conversation_merges_the_leads(db):
    first = Conversation.objects.create()
    second = Conversation.objects.create()
    say(first, "I'm ann@example.com")
    say(second, "hi")
    assert Lead.objects.count() == 2
    say(second, "it's me, ann@example.com")
    lead = Lead.objects.get()
    assert set(lead.links.values_list("conversation_id", flat=True)) == {first.id, second.id}
    merged = Event.objects.filter(type="lead.updated").order_by("id").last()
    assert merged.lead == lead and merged.payload["data"]["merged_lead_id"] != lead.pk


def test_a_booking_sends_its_events_in_order_and_makes_the_realtor_owner(conversation, realtors):
    endpoint()
    say(conversation, "book", Scheduling(True, "2026-11-24", "10:00"))
    lead = Lead.objects.get()
    assert lead.stage == Lead.Stage.VIEWING_BOOKED and lead.owner is not None
    assert types() == ["lead.created", "lead.updated", "appointment.booked"]  # in one turn
    booked = Event.objects.get(type="appointment.booked").payload
    assert booked["version"] == 1 and booked["lead_id"] == lead.pk
    assert booked["data"]["appointment"]["starts_at"] == "2026-11-24T15:00:00+00:00"
    say(conversation, "cancel it", change="cancel")
    assert types()[-1] == "appointment.cancelled"


def test_a_rolled_back_booking_writes_no_event_and_no_job(conversation, realtors):
    endpoint()
    say(conversation, "hello")
    before = (Event.objects.count(), ProcrastinateJob.objects.count())
    with pytest.raises(RuntimeError), transaction.atomic():
        say(conversation, "book", Scheduling(True, "2026-11-24", "10:00"))
        assert Event.objects.filter(type="appointment.booked").exists()
        raise RuntimeError("the turn failed after booking")
    assert (Event.objects.count(), ProcrastinateJob.objects.count()) == before


def test_the_hot_rule(conversation, realtors):
    say(conversation, "hello")
    hot = Lead.objects.filter(leads.hot_q(NOW))
    assert not hot.exists()  # no contact, nothing concrete
    say(conversation, "ann@example.com")
    assert not hot.exists()  # reachable, nothing concrete yet
    say(conversation, "book", Scheduling(True, "2026-11-24", "10:00"))
    assert hot.exists()


def test_the_listing_search_criteria_fill_the_lead(conversation):
    from agent.chat.router import route_turn
    from agent.models import Message

    conversation.search = {"place": "Elm", "max_price": 500000, "min_bedrooms": 3}
    conversation.save(update_fields=["search"])
    message = Message.objects.store(conversation.id, Message.Role.USER, "a 3-bed in Elm")
    route_turn(conversation, message, outcomes(), NOW)
    lead = Lead.objects.get()
    assert (lead.budget_max, lead.bedrooms, lead.towns) == (500000, 3, ["Elm"])
    assert Lead.objects.filter(leads.hot_q(NOW)).count() == 0  # not reachable yet


def test_retention_blanks_the_lead_and_drops_old_events(conversation):
    from datetime import timedelta

    from agent.ops.retention import purge

    say(conversation, "I'm ann@example.com, 555-0100")
    Event.objects.update(created_at=NOW - timedelta(days=400))
    Conversation.objects.update(created_at=NOW - timedelta(days=400))
    from agent.models import Message

    Message.objects.update(created_at=NOW - timedelta(days=400))
    purge(NOW, 365)
    lead = Lead.objects.get()
    assert (lead.name, lead.email, lead.phone) == ("", "", "")
    assert not Event.objects.exists()
