"""agent.rows: instances read and rows written without the ORM's compiling, as the ORM would."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agent.crm.models import Lead
from agent.models import ClassifierCall, Conversation, Message
from agent.rows import insert_rows, select_rows, update_row
from listings.models import Feature, Listing, find_listing

pytestmark = pytest.mark.django_db


def test_select_rows_builds_instances_equal_to_the_orms():
    """JSON decoded, arrays and decimals typed, every field in its place: the same values as
    the ORM's read, field by field."""
    Listing.objects.create(
        listing_id="123456", address="1 Harbor Street", price=Decimal("350000.50"),
        bedrooms=3, features=[Feature.GARDEN, Feature.GARAGE],
    )
    conversation = Conversation.objects.create(search={"place": "Port Ellis", "min_price": 1})
    pairs = [
        (select_rows(Listing, "WHERE t.listing_id = %s", ["123456"])[0],
         Listing.objects.get(listing_id="123456")),
        (select_rows(Conversation, "WHERE t.id = %s", [conversation.pk])[0],
         Conversation.objects.get(pk=conversation.pk)),
    ]
    for raw, orm in pairs:
        assert not raw._state.adding and raw._state.db == "default"
        for field in orm._meta.concrete_fields:
            assert getattr(raw, field.attname) == getattr(orm, field.attname), field.name
    assert pairs[1][0].search == {"place": "Port Ellis", "min_price": 1}
    assert pairs[0][0].features == ["garden", "garage"]
    assert pairs[0][0].price == Decimal("350000.50")


def test_select_rows_takes_joins_order_and_limit():
    conversation = Conversation.objects.create()
    for name in ("b", "a", "c"):
        Listing.objects.create(listing_id=f"00000{ord(name) - 96}", address=name, price=1)
    found = select_rows(Listing, "WHERE t.price = %s ORDER BY t.address LIMIT 2", [1])
    assert [listing.address for listing in found] == ["a", "b"]
    assert select_rows(Conversation, "WHERE t.id = %s", [conversation.pk]) != []


def test_find_listing_is_one_statement_and_none_for_an_unknown_id():
    Listing.objects.create(listing_id="654321", address="2 Harbor Street", price=450_000)
    with CaptureQueriesContext(connection) as queries:
        assert find_listing("654321").address == "2 Harbor Street"
        assert find_listing("999999") is None
    assert len(queries) == 2


def test_update_row_writes_only_the_named_fields_and_stamps_auto_now():
    now = timezone.now()
    lead = Lead.objects.create(first_contact_at=now, last_contact_at=now, name="Ann")
    before = Lead.objects.get(pk=lead.pk).updated_at
    Lead.objects.filter(pk=lead.pk).update(phone="+15550100")  # another writer's change
    lead.towns, lead.name = ["Port Ellis"], "Not saved"
    lead.last_contact_at = now + timedelta(hours=1)
    update_row(lead, ["towns", "last_contact_at", "updated_at"])
    stored = Lead.objects.get(pk=lead.pk)
    assert stored.towns == ["Port Ellis"]
    assert stored.last_contact_at == now + timedelta(hours=1)
    assert stored.updated_at > before and stored.updated_at == lead.updated_at
    assert stored.name == "Ann" and stored.phone == "+15550100"  # untouched


def test_insert_rows_sets_ids_in_order_and_leaves_the_instances_saved():
    now = timezone.now()
    leads = [Lead(name=name, first_contact_at=now, last_contact_at=now) for name in "ab"]
    conversations = [Conversation(language="en"), Conversation(language="es")]
    insert_rows(leads)
    insert_rows(conversations)
    assert [Lead.objects.get(pk=lead.pk).name for lead in leads] == ["a", "b"]
    assert [Conversation.objects.get(pk=c.pk).language for c in conversations] == ["en", "es"]
    assert not any(obj._state.adding for obj in [*leads, *conversations])


def test_insert_rows_sends_every_value_as_the_orm_would():
    """Through one JSON text: microseconds and offsets, UUIDs, JSON (a null one included),
    non-ASCII text and quotes arrive as they were given."""
    conversation = Conversation.objects.create()
    message = Message.objects.store(conversation.id, Message.Role.USER, "¿Cuánto cuesta? \"x\"")
    stamp = timezone.now().replace(microsecond=123456)
    calls = [
        ClassifierCall(message=message, classifier="pricing", classifier_version=2, model="m",
                       status="ok", raw_output='{"a": "ñ"}', output={"asks_price": True, "n": [1]},
                       latency_ms=301, wait_ms=0, retries=1, error=""),
        ClassifierCall(message=message, classifier="scheduling", classifier_version=1,
                       model="m", status="error", raw_output="", output=None, latency_ms=5,
                       wait_ms=2, retries=0, error="HTTP 503 'busy'"),
    ]
    insert_rows(calls)
    stored = list(ClassifierCall.objects.filter(message=message).order_by("id"))
    assert [(c.classifier, c.output, c.raw_output, c.retries, c.error) for c in stored] == [
        ("pricing", {"asks_price": True, "n": [1]}, '{"a": "ñ"}', 1, ""),
        ("scheduling", None, "", 0, "HTTP 503 'busy'"),
    ]
    assert all(c.created_at is not None for c in stored)
    again = Message.objects.get(pk=message.pk)
    assert again.text == "¿Cuánto cuesta? \"x\"" and again.conversation_id == conversation.id
    lead = Lead(first_contact_at=stamp, last_contact_at=stamp, towns=["Cañada"])
    insert_rows([lead])
    assert Lead.objects.get(pk=lead.pk).first_contact_at == stamp  # to the microsecond
    assert Lead.objects.get(pk=lead.pk).towns == ["Cañada"]


@pytest.mark.django_db(transaction=True)
def test_a_visitor_message_outside_a_transaction_is_stored_in_one_round_trip(monkeypatch):
    """No BEGIN and COMMIT around the append, which is one statement (they were two round
    trips more a message); a resend is still found after the refused INSERT."""
    import psycopg

    conversation = Conversation.objects.create()
    trips = []
    wait = psycopg.Connection.wait

    def counted(self, gen, *args, **kwargs):
        kind = getattr(gen, "__qualname__", "")
        if not kind.endswith("_set_autocommit_gen"):  # local: nothing goes to the server
            trips.append(kind)
        return wait(self, gen, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "wait", counted)
    message, created = Message.objects.store_visitor(conversation.id, "Hello there!", "m-1")
    assert created and len(trips) == 1
    again, created = Message.objects.store_visitor(conversation.id, "Hello there!", "m-1")
    assert not created and again.pk == message.pk
    assert Message.objects.filter(conversation=conversation).count() == 1


def test_a_nul_character_is_stored_as_a_replacement_character():
    """A visitor's or staff member's text or an LLM's raw answer with a NUL (which
    PostgreSQL's text cannot hold) is stored, not refused with the whole row; the returned
    message, whose frame the chat echoes, reads as stored."""
    conversation = Conversation.objects.create()
    staff = Message.objects.store(conversation.id, Message.Role.STAFF, "Hello\x00 there")
    assert staff.text == "Hello\ufffd there" == Message.objects.get(pk=staff.pk).text
    message = Message.objects.store(conversation.id, Message.Role.USER, "price\x00 of 123456")
    assert message.text == "price\ufffd of 123456"
    insert_rows([ClassifierCall(message=message, classifier="pricing", classifier_version=1,
                                model="m", status="error", raw_output='{"a\x00": 1}',
                                output=None, latency_ms=1, wait_ms=0, retries=0,
                                error="content is not JSON")])
    assert Message.objects.get(pk=message.pk).text == "price\ufffd of 123456"
    assert ClassifierCall.objects.get(message=message).raw_output == '{"a\ufffd": 1}'


def test_the_turns_call_rows_are_what_the_orms_instances_would_store():
    """``agent.chat.turn.call_rows`` builds no instances; its rows are ``records``' of the
    instances the turn used to build, column for column, so a new ``ClassifierCall`` field
    the turn does not fill fails here (and ``values_sql`` refuses the rows)."""
    from agent.chat.turn import call_rows
    from agent.llm.classifiers import Pricing
    from agent.llm.fanout import Outcome
    from agent.rows import records, values_sql

    conversation = Conversation.objects.create()
    message = Message.objects.store(conversation.id, Message.Role.USER, "How much is 123456?")
    now = timezone.now()
    outcomes = [
        Outcome("pricing", "m", Pricing(True, "123456"), '{"a": "ñ\x00"}', 301, retries=1,
                version=2),
        Outcome("scheduling", "m", None, "", 5, error="HTTP 503", status="error", wait_ms=2),
    ]
    rows = call_rows(message, outcomes, now)
    instances = [ClassifierCall(message=message, **{
        name: row[name] for name in row if name not in ("message_id", "created_at")
    }) for row in rows]
    ours = json.loads(values_sql(ClassifierCall, rows)[1])
    orms = json.loads(records(instances)[1])  # created_at: auto_now_add's own time
    assert [{**row, "created_at": None} for row in ours] == [
        {**row, "created_at": None} for row in orms]
    assert {row["created_at"] for row in ours} == {now.isoformat()}
    sql, params = values_sql(ClassifierCall, rows)
    with connection.cursor() as cursor:
        cursor.execute(sql, [params])
    stored = list(ClassifierCall.objects.filter(message=message).order_by("id"))
    assert [(c.classifier, c.classifier_version, c.output, c.raw_output, c.wait_ms)
            for c in stored] == [
        ("pricing", 2, {"asks_price": True, "listing_id": "123456"}, '{"a": "ñ\ufffd"}', 0),
        ("scheduling", 0, None, "", 2),
    ]
    with pytest.raises(ValueError, match="columns"):
        values_sql(ClassifierCall, [{k: v for k, v in rows[0].items() if k != "error"}])
