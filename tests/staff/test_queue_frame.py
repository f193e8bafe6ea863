"""The staff queue frame stays under daphne's 32 KiB message limit however long the queue
(issue 16: 566 handoffs made an 81,600-byte frame, and the staff socket closed)."""

import json

import pytest

from agent.models import Conversation, Handoff, Message
from agent.staff import handoffs

pytestmark = pytest.mark.django_db

DAPHNE_LIMIT = 32_768  # bytes, --websocket-max-message-size (README, Abuse limits)


def test_a_thousand_queued_handoffs_of_the_longest_texts_fit_in_one_frame():
    emoji = "\U0001f3e0" * 2000  # escaped by json.dumps: 12 bytes a character
    conversations = Conversation.objects.bulk_create(
        Conversation(visitor_name="N" * 200, visitor_email="e@x.example",
                     visitor_phone="+1 555 0100")
        for n in range(1000)
    )
    messages = Message.objects.bulk_create(
        Message(conversation=c, seq=1, role=Message.Role.USER, text=emoji) for c in conversations
    )
    Handoff.objects.bulk_create(
        Handoff(conversation=c, message=m, reason=emoji)
        for c, m in zip(conversations, messages, strict=True)
    )
    frame = handoffs.queue_frame()
    assert len(json.dumps(frame).encode()) < DAPHNE_LIMIT
    assert frame["waiting"] == 1000
    assert 0 < len(frame["handoffs"]) and frame["more"] == 1000 - len(frame["handoffs"])
    oldest = Handoff.objects.order_by("created_at", "pk").first()
    assert frame["handoffs"][0]["id"] == oldest.pk


def test_a_short_queue_is_listed_whole_without_more(conversation):
    Handoff.objects.create(conversation=conversation, reason="listing question")
    frame = handoffs.queue_frame()
    assert frame["waiting"] == 1 and len(frame["handoffs"]) == 1 and "more" not in frame
