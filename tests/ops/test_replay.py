"""The eval replay: placeholders, and the shared sample conversations end to end."""

from datetime import date

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from agent.management.commands.replay_eval import in_process_chat, run_replay
from agent.ops.evalset import expand, load
from listings.models import Appointment
from tests import EVAL_FILE, LANGUAGES_EVAL_FILE, LISTINGS_EVAL_FILE


def test_placeholders_count_weekdays_and_sundays_after_today():
    sunday = date(2026, 11, 22)
    text = "{weekday+1} {weekday+3} {weekday+3:long} {sunday+1} {sunday+2}"
    assert expand(text, sunday) == (
        "2026-11-23 2026-11-25 Wednesday, November 25 2026-11-29 2026-12-06"
    )
    friday = date(2026, 11, 27)
    assert expand({"a": ["{weekday+1}"]}, friday) == {"a": ["2026-11-30"]}


def test_a_broken_eval_file_names_its_line(tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "a", "turns": []}\n{"id": "b"}\n')
    with pytest.raises(ValueError, match="broken.jsonl:2"):
        load(broken, date(2026, 11, 22))


@pytest.mark.skipif(not EVAL_FILE.exists(), reason="../shared/eval is not beside the repo")
@pytest.mark.django_db(transaction=True)
async def test_the_sample_conversations_get_their_routes_replies_effects_and_labels(
    standin, listings, realtors, chat_client
):
    from django.utils import timezone

    lines = []
    conversations = load(EVAL_FILE, timezone.localdate())
    passed, turns, labels_right, labels = await run_replay(
        conversations, in_process_chat, lines.append
    )
    assert turns == sum(len(c["turns"]) for c in conversations)
    assert (passed, labels_right) == (turns, labels), "\n".join(lines)

    # Its bookings were cancelled, so a second run finds the realtors free again.
    assert not await Appointment.objects.exclude(status=Appointment.Status.CANCELLED).aexists()
    again = await run_replay(conversations, in_process_chat, lines.append)
    assert again[0] == turns, "\n".join(lines)


@pytest.fixture
def demo_listings(db):
    """The demo listings and realtors of ``seed_demo`` (the project's eval file needs them)."""
    import io

    call_command("seed_demo", stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
async def test_the_listing_conversations_get_their_routes_replies_effects_and_labels(
    standin, demo_listings, chat_client
):
    from django.utils import timezone

    lines = []
    conversations = load(LISTINGS_EVAL_FILE, timezone.localdate())
    assert len(conversations) >= 15
    passed, turns, labels_right, labels = await run_replay(
        conversations, in_process_chat, lines.append
    )
    assert turns == sum(len(c["turns"]) for c in conversations)
    assert (passed, labels_right) == (turns, labels), "\n".join(lines)
    assert labels > 0


@pytest.mark.django_db(transaction=True)
async def test_the_spanish_and_mixed_conversations_are_answered_in_the_visitors_language(
    standin, demo_listings, chat_client
):
    from django.utils import timezone

    lines = []
    conversations = load(LANGUAGES_EVAL_FILE, timezone.localdate())
    assert len(conversations) >= 12
    passed, turns, _labels_right, _labels = await run_replay(
        conversations, in_process_chat, lines.append
    )
    assert turns == sum(len(c["turns"]) for c in conversations)
    assert passed == turns, "\n".join(lines)


@pytest.mark.django_db
def test_the_command_refuses_a_missing_file():
    with pytest.raises(CommandError, match="does not exist"):
        call_command("replay_eval", "/nonexistent.jsonl")


@pytest.mark.skipif(not EVAL_FILE.exists(), reason="../shared/eval is not beside the repo")
@pytest.mark.django_db(transaction=True)
def test_the_command_prints_and_writes_the_report_on_the_sample_conversations(
    standin, listings, realtors, tmp_path
):
    import io
    import json

    from django.utils import timezone

    out, report_path = io.StringIO(), tmp_path / "report.json"
    call_command("replay_eval", str(EVAL_FILE), "--json", str(report_path), stdout=out)
    lines = out.getvalue().splitlines()
    conversations = load(EVAL_FILE, timezone.localdate())
    turns = sum(len(c["turns"]) for c in conversations)
    # The per-turn lines come first and the score line last, as before the report.
    assert [line.split()[0] for line in lines[:1]] == ["PASS"]
    assert lines[-1].startswith(f"turns: {turns}/{turns} passed; classifier labels: ")

    report = json.loads(report_path.read_text())
    assert report["turns"] == {"passed": turns, "total": turns}
    assert len(report["results"]) == turns and all(r["passed"] for r in report["results"])
    labelled = {name for c in conversations for t in c["turns"] for name in t.get("labels", {})}
    assert labelled <= set(report["classifiers"])
    # Pricing comes first in the fan-out's priority, so no early exit cancels it: all of its
    # labels are scored. The file says yes on the six price turns, each with its listing id.
    pricing = report["classifiers"]["pricing"]
    yes = sum(t["labels"]["pricing"]["asks_price"] for c in conversations for t in c["turns"])
    assert (pricing["decision"], pricing["scored"], pricing["skipped"]) == ("asks_price", turns, 0)
    assert (pricing["tp"], pricing["fp"], pricing["fn"], pricing["tn"]) == (yes, 0, 0, turns - yes)
    assert (pricing["precision"], pricing["recall"], pricing["f1"]) == (1.0, 1.0, 1.0)
    assert pricing["fields"]["names"] == ["listing_id"]
    assert (pricing["fields"]["matched"], pricing["fields"]["checked"]) == (yes, yes)
    assert report["classifiers"]["scheduling"]["decision"] == "wants_call"
    assert report["classifiers"]["scheduling"]["fields"]["names"] == ["date", "time"]
    assert report["routes"]["right"] == report["routes"]["total"] == turns
    assert report["routes"]["counts"]["price"] == {"price": 4}
    assert report["turn_latency_ms"]["n"] == turns
    assert 0 < report["turn_latency_ms"]["p50"] <= report["turn_latency_ms"]["p99"]

    # The text gives the same figures in aligned tables.
    assert any(line.split()[:3] == ["pricing", "asks_price", str(turns)] for line in lines)
    assert f"routes (rows: expected, columns: got; {turns}/{turns} right)" in lines
    assert any(line.startswith("turn  ") and line.split()[1] == str(turns) for line in lines)


@pytest.mark.django_db(transaction=True)
def test_a_failing_turn_still_exits_1_after_the_report_counts_it(
    standin, listings, realtors, tmp_path
):
    import io
    import json

    wrong = {"id": "wrong", "turns": [{
        "user": "How much is listing 654321?", "route": "handoff",
        "labels": {"pricing": {"asks_price": False, "listing_id": None}},
    }]}
    file, report_path = tmp_path / "wrong.jsonl", tmp_path / "report.json"
    file.write_text(json.dumps(wrong) + "\n")
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("replay_eval", str(file), "--json", str(report_path), stdout=out)
    assert exit_.value.code == 1
    assert out.getvalue().splitlines()[0] == "FAIL wrong turn 1: price"
    report = json.loads(report_path.read_text())
    assert report["routes"]["counts"] == {"handoff": {"price": 1}}
    assert report["routes"]["right"] == 0
    pricing = report["classifiers"]["pricing"]
    assert (pricing["tp"], pricing["fp"], pricing["fn"], pricing["tn"]) == (0, 1, 0, 0)
    assert pricing["precision"] == 0.0 and pricing["recall"] is None
