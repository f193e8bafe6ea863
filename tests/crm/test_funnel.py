"""The dashboard's lead figures (agent/crm/funnel.py): leads per day and the funnel from chat
to booked viewing, over the dashboard's two periods, with known rows."""

from datetime import UTC, date, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from agent.crm.funnel import Funnel
from agent.crm.models import Lead, LeadConversation
from agent.models import Conversation, Message
from agent.staff.dashboard import WINDOWS, window_stats
from listings.models import Appointment

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 17, 0, tzinfo=UTC)  # noon in New York


def chat(hours_ago, lead=None, appointment_by=None, wrote=True):
    """A conversation started ``hours_ago`` before NOW, with a visitor message when
    ``wrote``, its lead (``Lead`` field values) created then, and an appointment (cancelled:
    it was booked all the same) with ``appointment_by``."""
    at = NOW - timedelta(hours=hours_ago)
    conversation = Conversation.objects.create()
    Conversation.objects.filter(pk=conversation.pk).update(created_at=at)
    if wrote:
        Message.objects.store(conversation.id, Message.Role.USER, "hi")
    if lead is not None:
        row = Lead.objects.create(first_contact_at=at, last_contact_at=at, **lead)
        Lead.objects.filter(pk=row.pk).update(created_at=at)
        LeadConversation.objects.create(lead=row, conversation=conversation)
    if appointment_by is not None:
        Appointment.objects.create(
            realtor=appointment_by, starts_at=NOW, ends_at=NOW + timedelta(minutes=30),
            conversation=conversation, status=Appointment.Status.CANCELLED,
        )
    return conversation


@pytest.fixture
def rows(realtors):
    anna = realtors[0]
    chat(2, {"email": "a@example.com", "stage": Lead.Stage.WON}, anna)  # every step
    chat(3, {"phone": "+12015550100", "stage": Lead.Stage.VIEWING_BOOKED})  # to viewing
    chat(1, {"email": "d@example.com"}, anna)  # still "new", but it booked: to viewing
    chat(4, {}, anna)  # booked, but no contact: stops at leads
    chat(5)  # no lead
    chat(5, wrote=False)  # the page opened, nothing written: not a chat
    chat(6, {"stage": Lead.Stage.WON})  # won by staff, without contact: stops at leads
    chat(72, {"email": "b@example.com"})  # three days ago: the 7 days only
    chat(24 * 9, {"email": "c@example.com"})  # nine days ago: neither


def test_the_funnel_of_each_period(rows):
    day, week = (window_stats(w, NOW) for w in WINDOWS)
    assert day.funnel == Funnel(conversations=6, leads=5, with_contact=3, viewing_booked=3, won=1)
    assert week.funnel == Funnel(
        conversations=7, leads=6, with_contact=4, viewing_booked=3, won=1
    )


def test_leads_per_day_in_agency_days(rows):
    with timezone.override("America/New_York"):
        day, week = (window_stats(w, NOW) for w in WINDOWS)
    assert day.leads_per_day == [(date(2026, 11, 19), 0), (date(2026, 11, 20), 5)]
    assert len(week.leads_per_day) == 8
    assert [(d.day, n) for d, n in week.leads_per_day if n] == [(17, 1), (20, 5)]


def test_the_page_draws_leads_and_the_funnel(admin_client, realtors):
    conversation = Conversation.objects.create()
    Message.objects.store(conversation.id, Message.Role.USER, "hi")
    now = timezone.now()
    lead = Lead.objects.create(email="a@example.com", first_contact_at=now, last_contact_at=now)
    LeadConversation.objects.create(lead=lead, conversation=conversation)
    page = admin_client.get(reverse("admin:agent_dashboard")).content.decode()
    assert "From chat to booked viewing" in page and "Leads created per day" in page
    assert "<title>Leads with contact: 1 (100%)</title>" in page
    assert "<title>Viewing booked: 0 (0%)</title>" in page
