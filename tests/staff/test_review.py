"""Reviewing conversations in the admin: the list's filters and full-text search, the per-turn
trace, and the CSV, JSONL and eval-set exports (the eval set replays through replay_eval)."""

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.postgres.search import SearchQuery
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from agent.management.commands.replay_eval import in_process_chat, run_replay
from agent.models import (
    SEARCH_CONFIG,
    ClassifierCall,
    Conversation,
    Handoff,
    Message,
    Route,
    message_search_vector,
)
from agent.ops.evalset import conversation_to_eval, load, relative_dates
from agent.staff.exports import with_transcripts
from agent.staff.review import search_conversations
from listings.models import Appointment
from tests import EVAL_FILE

CHANGELIST = "admin:agent_conversation_changelist"
PRICING = {"asks_price": True, "listing_id": "123456"}


def add_turn(conversation, text, route, latency_ms, calls=(), reply="..."):
    """Store a visitor message, its classifier calls ``(classifier, output, raw, error)`` and
    the bot's reply with ``route``; returns (visitor message, reply)."""
    seq = conversation.messages.count() + 1
    question = Message.objects.create(
        conversation=conversation, seq=seq, role=Message.Role.USER, text=text
    )
    for classifier, output, raw, error in calls:
        ClassifierCall.objects.create(
            message=question, classifier=classifier, model="test-model", output=output,
            raw_output=raw, latency_ms=300, error=error,
        )
    answer = Message.objects.create(
        conversation=conversation, seq=seq + 1, role=Message.Role.ASSISTANT, text=reply,
        route=route, latency_ms=latency_ms,
    )
    return question, answer


@pytest.fixture
def price_chat(db):
    """A quick price question, every classifier answered."""
    conversation = Conversation.objects.create(visitor_name="Paula Price")
    add_turn(
        conversation, "How much is listing 123456?", Route.PRICE, 420,
        [("pricing", PRICING, json.dumps(PRICING), "")],
    )
    return conversation


@pytest.fixture
def garage_chat(db):
    """A listing question that was handed off; the scheduling classifier timed out, and the turn
    took 12 s."""
    conversation = Conversation.objects.create(visitor_email="gary@example.com")
    question, _ = add_turn(
        conversation, "Do the houses have garages?", Route.HANDOFF, 12_000,
        [
            ("listing_question", {"is_listing_question": True}, "{}", ""),
            ("scheduling", None, "", "timed out after 5.0 s"),
        ],
    )
    Handoff.objects.create(conversation=conversation, message=question, reason="listing question")
    return conversation


@pytest.fixture
def booked_chat(db, realtors):
    """A call booked for 2 June 2031 at 10:00 New York time, in a 2.5 s turn."""
    conversation = Conversation.objects.create()
    add_turn(conversation, "Call me on 2031-06-02 at 10:00", Route.BOOKING, 2500)
    starts_at = datetime(2031, 6, 2, 14, 0, tzinfo=UTC)
    Appointment.objects.create(
        realtor=realtors[0], starts_at=starts_at, ends_at=starts_at + timedelta(minutes=30),
        conversation=conversation,
    )
    return conversation


def listed(response) -> set:
    assert response.status_code == 200
    return set(response.context["cl"].result_list)


@pytest.mark.parametrize(
    "query, expected",
    [
        ({"route": "price"}, {"price_chat"}),
        ({"route": "handoff"}, {"garage_chat"}),
        ({"has_handoff": "yes"}, {"garage_chat"}),
        ({"has_handoff": "no"}, {"price_chat", "booked_chat"}),
        ({"has_booking": "yes"}, {"booked_chat"}),
        ({"llm_error": "yes"}, {"garage_chat"}),
        ({"llm_error": "no"}, {"price_chat", "booked_chat"}),
        ({"slowest": "lt1"}, {"price_chat"}),
        ({"slowest": "1to3"}, {"booked_chat"}),
        ({"slowest": "10plus"}, {"garage_chat"}),
        ({"slowest": "10plus", "llm_error": "yes", "has_handoff": "yes"}, {"garage_chat"}),
    ],
)
def test_the_conversation_list_filters(admin_client, request, query, expected):
    chats = {name: request.getfixturevalue(name) for name in ("price_chat", "garage_chat",
                                                              "booked_chat")}
    response = admin_client.get(reverse(CHANGELIST), query)
    assert listed(response) == {chats[name] for name in expected}


def test_the_list_sorts_by_the_slowest_turn(admin_client, price_chat, garage_chat, booked_chat):
    response = admin_client.get(reverse(CHANGELIST), {"o": "-5"})  # 5th column: slowest turn
    assert list(response.context["cl"].result_list) == [garage_chat, booked_chat, price_chat]
    assert "12000 ms" in response.content.decode()


def test_search_finds_words_in_messages_by_their_stem(admin_client, price_chat, garage_chat):
    assert listed(admin_client.get(reverse(CHANGELIST), {"q": "garage"})) == {garage_chat}
    assert listed(admin_client.get(reverse(CHANGELIST), {"q": "listings"})) == {price_chat}
    assert listed(admin_client.get(reverse(CHANGELIST), {"q": "garage -house"})) == set()
    assert listed(admin_client.get(reverse(CHANGELIST), {"q": '"how much" or garages'})) == {
        price_chat, garage_chat
    }


def test_search_still_finds_visitors_by_contact_details(admin_client, price_chat, garage_chat):
    assert listed(admin_client.get(reverse(CHANGELIST), {"q": "gary@exa"})) == {garage_chat}
    assert listed(admin_client.get(reverse(CHANGELIST), {"q": "Paula"})) == {price_chat}


def test_search_survives_query_syntax_it_does_not_understand(admin_client, price_chat):
    response = admin_client.get(reverse(CHANGELIST), {"q": "'\" & | ! ( :*"})
    assert listed(response) == set()


def test_the_message_search_can_use_the_gin_index(price_chat):
    """The search's message filter is the index's expression. Checked on the filter alone, with
    only the GIN index allowed: on tiny tables the planner may as well walk a btree index (it
    did in full runs, once other tests had left statistics behind)."""
    expression = "to_tsvector('english'::regconfig, COALESCE(text, ''::text)) @@"
    matching = Message.objects.annotate(search=message_search_vector()).filter(
        search=SearchQuery("price", config=SEARCH_CONFIG, search_type="websearch")
    ).order_by()  # no walk of the (conversation, seq) index for the model's ordering
    with connection.cursor() as cursor:  # tiny tables: leave the planner only the GIN index
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")  # a GIN index is bitmap-only
    plan = matching.explain()
    assert "message_text_search" in plan and expression in plan, plan
    search_plan = search_conversations(Conversation.objects.all(), "price").explain()
    assert expression in search_plan, search_plan


def test_the_trace_shows_each_classifier_call_of_each_turn(admin_client, garage_chat):
    url = reverse("admin:agent_conversation_change", args=[garage_chat.pk])
    page = admin_client.get(url).content.decode()
    assert "Turn #1: Do the houses have garages? → Listing question handed off · 12000 ms" in page
    for title in ("classifier", "model", "input", "parsed output", "raw output", "latency",
                  "error"):
        assert f"<th>{title}</th>" in page
    assert "listing_question prompt + message #1" in page
    assert "<code>{&quot;is_listing_question&quot;: true}</code>" in page
    assert "error: timed out after 5.0 s" in page
    assert page.count("<td>300 ms</td>") == 2


def test_the_trace_says_when_the_bot_did_not_answer(admin_client, price_chat):
    Message.objects.create(conversation=price_chat, seq=3, role=Message.Role.USER, text="hello?")
    url = reverse("admin:agent_conversation_change", args=[price_chat.pk])
    page = admin_client.get(url).content.decode()
    assert "Turn #3: hello? → no bot reply" in page


def test_the_trace_pairs_overlapping_turns_in_order(admin_client, conversation):
    """The visitor sent #2 while #1's turn ran, and #5's turn failed before the classifiers."""
    def visitor(seq, text, classifier=None):
        message = Message.objects.create(
            conversation=conversation, seq=seq, role=Message.Role.USER, text=text
        )
        if classifier:
            ClassifierCall.objects.create(
                message=message, classifier=classifier, model="m", latency_ms=1, output={}
            )

    def bot(seq, route, latency_ms):
        Message.objects.create(
            conversation=conversation, seq=seq, role=Message.Role.ASSISTANT, text="...",
            route=route, latency_ms=latency_ms,
        )

    visitor(1, "price of 123456", "pricing")
    visitor(2, "and a call?", "scheduling")
    bot(3, Route.PRICE, 111)
    bot(4, Route.BOOKING_NEEDS_TIME, 222)
    visitor(5, "lost")
    visitor(6, "garage?", "listing_question")
    bot(7, Route.HANDOFF, 333)
    url = reverse("admin:agent_conversation_change", args=[conversation.pk])
    page = admin_client.get(url).content.decode()
    assert "Turn #1: price of 123456 → Price given · 111 ms" in page
    assert "Turn #2: and a call? → Booking: asked for time · 222 ms" in page
    assert "Turn #5: lost → no bot reply" in page
    assert "Turn #6: garage? → Listing question handed off · 333 ms" in page


def export(client, action, conversations):
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [str(c.pk) for c in conversations]},
    )


def test_the_csv_export_has_a_row_per_message(admin_client, price_chat, garage_chat):
    Message.objects.filter(conversation=garage_chat, seq=1).update(text="=HYPERLINK(\"x\")")
    response = export(admin_client, "export_csv", [price_chat, garage_chat])
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="conversations-')
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["conversation"], r["seq"], r["role"]) for r in rows] == [
        (str(price_chat.pk), "1", "user"), (str(price_chat.pk), "2", "assistant"),
        (str(garage_chat.pk), "1", "user"), (str(garage_chat.pk), "2", "assistant"),
    ]
    assert rows[0]["text"] == "How much is listing 123456?"
    assert rows[0]["visitor_name"] == "Paula Price"
    assert rows[2]["classifier_errors"] == "1"
    assert rows[3]["route"] == "handoff" and rows[3]["latency_ms"] == "12000"
    # A spreadsheet must not run what a visitor wrote as a formula.
    assert rows[2]["text"] == "'=HYPERLINK(\"x\")"


def test_the_jsonl_export_has_every_field_of_every_row(admin_client, garage_chat, booked_chat):
    response = export(admin_client, "export_jsonl", [garage_chat, booked_chat])
    assert response["Content-Disposition"].endswith('.jsonl"')
    records = [json.loads(line) for line in response.content.decode().splitlines()]
    assert [r["id"] for r in records] == [str(garage_chat.pk), str(booked_chat.pk)]
    garage, booked = records
    assert garage["visitor_email"] == "gary@example.com"
    assert [m["text"] for m in garage["messages"]][0] == "Do the houses have garages?"
    calls = garage["messages"][0]["classifier_calls"]
    assert {c["classifier"]: c["error"] for c in calls} == {
        "listing_question": "", "scheduling": "timed out after 5.0 s"
    }
    assert garage["handoffs"][0]["reason"] == "listing question"
    assert booked["appointments"][0]["starts_at"] == "2031-06-02T14:00:00Z"


def test_the_exports_need_the_admin(client, price_chat):
    user = get_user_model().objects.create_user("visitor", password="x-not-used")
    client.force_login(user)
    response = export(client, "export_csv", [price_chat])
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


def test_eval_export_of_a_conversation_without_bot_turns_warns(admin_client, conversation):
    Message.objects.create(conversation=conversation, seq=1, role=Message.Role.USER, text="hi")
    response = export(admin_client, "add_to_eval_set", [conversation])
    assert response.status_code == 302
    page = admin_client.get(response.url).content.decode()
    assert "None of the selected conversations has a turn the bot answered." in page


def test_dates_after_the_conversation_day_become_placeholders():
    sunday = datetime(2026, 11, 22).date()
    text = "2026-11-23, 2026-11-27, 2026-11-28, 2026-11-29, 2026-12-07, 2026-11-22, 2026-11-20"
    assert relative_dates(text, sunday) == (
        "{weekday+1}, {weekday+5}, 2026-11-28, {sunday+1}, {weekday+11}, 2026-11-22, 2026-11-20"
    )


def test_an_eval_record_labels_turns_with_answers_and_stops_at_a_staff_takeover(garage_chat):
    add_turn(garage_chat, "How much is 123456?", Route.PRICE, 300,
             [("pricing", PRICING, "{}", "")])
    Message.objects.create(conversation=garage_chat, seq=5, role=Message.Role.USER, text="hi")
    Message.objects.create(conversation=garage_chat, seq=6, role=Message.Role.STAFF, text="Anna")
    add_turn(garage_chat, "How much is 654321?", Route.PRICE, 300)
    record = conversation_to_eval(with_transcripts(Conversation.objects.all()).get())
    assert record == {
        "id": f"conversation-{garage_chat.pk}",
        "turns": [
            {
                "user": "Do the houses have garages?", "route": "handoff", "reply_contains": [],
                # The scheduling call timed out: no label rather than expecting a failure.
                "labels": {"listing_question": {"is_listing_question": True}},
                "effects": {"handoff": True},
            },
            {
                "user": "How much is 123456?", "route": "price", "reply_contains": [],
                "labels": {"pricing": PRICING},
            },
        ],
    }


def test_an_eval_record_keeps_the_booked_slot_in_agency_time(booked_chat):
    Message.objects.filter(conversation=booked_chat).update(
        created_at=datetime(2031, 5, 30, 15, 0, tzinfo=UTC)  # Friday, 11:00 in New York
    )
    Appointment.objects.update(created_at=datetime(2031, 5, 30, 15, 0, tzinfo=UTC))
    record = conversation_to_eval(with_transcripts(Conversation.objects.all()).get())
    assert record["turns"][0]["user"] == "Call me on {weekday+1} at 10:00"
    assert record["turns"][0]["effects"] == {"appointment": {"date": "{weekday+1}",
                                                             "time": "10:00"}}


@pytest.mark.skipif(not EVAL_FILE.exists(), reason="../shared/eval is not beside the repo")
@pytest.mark.django_db(transaction=True)
async def test_the_eval_export_of_replayed_conversations_replays_again(
    standin, listings, realtors, chat_client, admin_client, tmp_path
):
    lines = []
    today = timezone.localdate()
    samples = load(EVAL_FILE, today)
    first = await run_replay(samples, in_process_chat, lines.append)
    assert first[0] == first[1], "\n".join(lines)
    recorded = [c async for c in Conversation.objects.order_by("created_at")]
    assert len(recorded) == len(samples)

    response = await sync_to_async(export)(admin_client, "add_to_eval_set", recorded)
    assert response.status_code == 200
    exported = tmp_path / "eval.jsonl"
    exported.write_bytes(response.content)
    records = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [len(r["turns"]) for r in records] == [len(s["turns"]) for s in samples]
    booking = records[[s["id"] for s in samples].index("book-with-time")]["turns"][0]
    assert booking["effects"] == {"appointment": {"date": "{weekday+3}", "time": "10:00"}}
    assert "{weekday+3}" in booking["user"]

    again = load(exported, today)
    passed, turns, labels_right, labels = await run_replay(again, in_process_chat, lines.append)
    assert turns == sum(len(s["turns"]) for s in samples)
    # The early exit cancels calls that cannot change the route: they give no label when
    # exported, nor a score when replayed; every turn keeps at least the label that decided it.
    exported_labels = sum(len(t["labels"]) for r in records for t in r["turns"])
    assert turns <= labels <= exported_labels
    assert (passed, labels_right) == (turns, labels), "\n".join(lines)

