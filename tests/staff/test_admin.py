"""The admin: every list renders, transcripts are read-only and escaped, the handoff queue links
to transcripts, listing prices can be edited in the list, and only staff get in."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from agent.models import ClassifierCall, Conversation, Handoff, Message, Route
from listings.models import Appointment, Listing, Realtor

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def listing():
    return Listing.objects.create(
        listing_id="123456", address="14 Maple Court", price=Decimal("350000"), bedrooms=3
    )


@pytest.fixture
def realtor():
    user = get_user_model().objects.create_user(
        "anna", first_name="Anna", last_name="Novak", email="anna@agency.example", is_staff=True
    )
    return Realtor.objects.create(user=user, phone="+1 201 555 0142")


@pytest.fixture
def conversation():
    """A visitor asked a price (with a script tag); pricing answered, scheduling failed."""
    conversation = Conversation.objects.create(
        visitor_name="Vera Visitor", visitor_email="vera@example.com"
    )
    question = Message.objects.create(
        conversation=conversation, seq=1, role=Message.Role.USER,
        text=f"How much is 123456? {SCRIPT}",
    )
    Message.objects.create(
        conversation=conversation, seq=2, role=Message.Role.ASSISTANT,
        text="Listing 123456 is $350,000.", route=Route.PRICE, latency_ms=640,
    )
    ClassifierCall.objects.create(
        message=question, classifier="pricing", model="test-model-p",
        output={"asks_price": True, "listing_id": "123456"}, raw_output="{}", latency_ms=412,
    )
    ClassifierCall.objects.create(
        message=question, classifier="scheduling", model="test-model-s",
        output=None, raw_output="not json <b>", latency_ms=10007, error="timed out <i>",
    )
    return conversation


@pytest.fixture
def handoff(conversation):
    return Handoff.objects.create(conversation=conversation, reason="Is the basement finished?")


@pytest.fixture
def appointment(realtor, listing, conversation):
    starts_at = datetime(2025, 6, 2, 14, 30, tzinfo=UTC)  # 10:30 a.m. in New York (EDT)
    return Appointment.objects.create(
        realtor=realtor, starts_at=starts_at, ends_at=starts_at + timedelta(minutes=30),
        visitor_name="Vera Visitor", visitor_phone="555 0100", listing=listing,
        conversation=conversation,
    )


@pytest.mark.parametrize(
    "model", ["listings_listing", "listings_realtor", "listings_appointment",
              "agent_handoff", "agent_conversation", "agent_classifiercall"],
)
def test_every_changelist_renders_with_data(admin_client, model, appointment, handoff):
    response = admin_client.get(reverse(f"admin:{model}_changelist"))
    assert response.status_code == 200


def test_the_transcript_shows_each_turn_with_its_route_and_classifier_calls(
    admin_client, conversation
):
    response = admin_client.get(reverse("admin:agent_conversation_change", args=[conversation.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    assert "Listing 123456 is $350,000." in page
    assert "Price given" in page
    assert escape(json.dumps({"asks_price": True, "listing_id": "123456"})) in page
    assert "412 ms" in page
    assert "test-model-p" in page
    assert "10007 ms" in page
    assert "error: timed out &lt;i&gt;" in page
    assert "not json &lt;b&gt;" in page


def test_the_transcript_escapes_what_visitors_and_models_wrote(admin_client, conversation):
    response = admin_client.get(reverse("admin:agent_conversation_change", args=[conversation.pk]))
    page = response.content.decode()
    assert SCRIPT not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "timed out <i>" not in page
    assert "not json <b>" not in page


def test_the_transcript_is_read_only(admin_client, conversation):
    response = admin_client.get(reverse("admin:agent_conversation_change", args=[conversation.pk]))
    assert 'name="_save"' not in response.content.decode()
    assert admin_client.get(reverse("admin:agent_conversation_add")).status_code == 403


def test_the_transcript_loads_classifier_calls_without_a_query_per_message(
    admin_client, conversation
):
    url = reverse("admin:agent_conversation_change", args=[conversation.pk])
    with CaptureQueriesContext(connection) as one_turn:
        admin_client.get(url)
    for seq in (3, 5, 7):
        question = Message.objects.create(
            conversation=conversation, seq=seq, role=Message.Role.USER, text="and 654321?"
        )
        ClassifierCall.objects.create(
            message=question, classifier="pricing", model="m", output={}, latency_ms=5
        )
        Message.objects.create(
            conversation=conversation, seq=seq + 1, role=Message.Role.ASSISTANT, text="..."
        )
    with CaptureQueriesContext(connection) as four_turns:
        admin_client.get(url)
    assert len(four_turns) == len(one_turn)


def test_the_conversation_list_counts_messages_and_shows_the_last_route(
    admin_client, conversation
):
    response = admin_client.get(reverse("admin:agent_conversation_changelist"))
    page = response.content.decode()
    assert str(conversation.pk)[:8] in page
    assert '<td class="field-message_count">2</td>' in page
    assert "Price given" in page
    assert "vera@example.com" in page


def test_the_handoff_queue_links_to_the_transcript(admin_client, handoff):
    response = admin_client.get(reverse("admin:agent_handoff_changelist"))
    url = reverse("admin:agent_conversation_change", args=[handoff.conversation_id])
    assert f'href="{url}"' in response.content.decode()
    assert "Is the basement finished?" in response.content.decode()


def test_claiming_a_handoff_records_who_and_when(admin_client, admin_user, handoff):
    url = reverse("admin:agent_handoff_changelist")
    response = admin_client.post(url, {"action": "claim", "_selected_action": [handoff.pk]})
    assert response.status_code == 302
    handoff.refresh_from_db()
    assert handoff.status == Handoff.Status.CLAIMED
    assert handoff.claimed_by == admin_user
    assert handoff.claimed_at is not None
    assert handoff.resolved_at is None


def test_the_handoff_form_cannot_change_the_status_behind_the_visitors_back(
    admin_client, handoff
):
    url = reverse("admin:agent_handoff_change", args=[handoff.pk])
    response = admin_client.get(url)
    assert reverse("handoff_detail", args=[handoff.pk]) in response.content.decode()
    admin_client.post(url, {"status": "resolved"})
    handoff.refresh_from_db()
    assert handoff.status == Handoff.Status.QUEUED


def test_classifier_calls_can_be_filtered_to_failures(admin_client, conversation):
    response = admin_client.get(
        reverse("admin:agent_classifiercall_changelist"), {"has_error": "yes"}
    )
    assert list(response.context["cl"].result_list.values_list("classifier", flat=True)) == [
        "scheduling"
    ]


@override_settings(TIME_ZONE="America/New_York")
def test_appointments_are_listed_in_the_agency_time_zone(admin_client, appointment):
    response = admin_client.get(reverse("admin:listings_appointment_changelist"))
    page = response.content.decode()
    assert "June 2, 2025, 10:30 a.m." in page
    assert "Vera Visitor · 555 0100" in page
    url = reverse("admin:agent_conversation_change", args=[appointment.conversation_id])
    assert f'href="{url}"' in page


def test_the_listing_search_finds_a_listing_by_its_id(admin_client, listing):
    Listing.objects.create(listing_id="654321", address="88 Harbor View Drive", price=450000)
    response = admin_client.get(reverse("admin:listings_listing_changelist"), {"q": "123456"})
    assert list(response.context["cl"].result_list) == [listing]


def test_a_price_can_be_edited_in_the_listing_list(admin_client, listing):
    response = admin_client.post(
        reverse("admin:listings_listing_changelist"),
        {
            "form-TOTAL_FORMS": "1", "form-INITIAL_FORMS": "1",
            "form-MIN_NUM_FORMS": "0", "form-MAX_NUM_FORMS": "1000",
            "form-0-id": str(listing.pk), "form-0-price": "365000.00",
            "_save": "Save",
        },
    )
    assert response.status_code == 302
    listing.refresh_from_db()
    assert listing.price == Decimal("365000.00")


def test_realtors_are_listed_with_name_email_and_phone(admin_client, realtor):
    page = admin_client.get(reverse("admin:listings_realtor_changelist")).content.decode()
    assert "Anna Novak" in page
    assert "anna@agency.example" in page
    assert "+1 201 555 0142" in page


def test_a_visitor_without_staff_status_is_sent_to_the_login(client, conversation):
    user = get_user_model().objects.create_user("visitor", password="x-not-used")
    client.force_login(user)
    url = reverse("admin:agent_conversation_change", args=[conversation.pk])
    response = client.get(url)
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))
