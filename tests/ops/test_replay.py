"""The eval replay: placeholders, and the shared sample conversations end to end."""

from datetime import date

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from agent.management.commands.replay_eval import in_process_chat, run_replay
from agent.ops.evalset import expand, load
from listings.models import Appointment
from tests import EVAL_FILE, LISTINGS_EVAL_FILE


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


@pytest.mark.django_db
def test_the_command_refuses_a_missing_file():
    with pytest.raises(CommandError, match="does not exist"):
        call_command("replay_eval", "/nonexistent.jsonl")
