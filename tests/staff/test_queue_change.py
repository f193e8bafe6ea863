"""Staff screens get one small ``queue_change`` frame per handoff change, not the whole queue
again (issue 16: re-sending the queue on every handoff was 8% of the database thread under
load). The frames are specified in README.md, "Staff socket"."""

import json

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from agent.dbgate import db_trip
from agent.models import Conversation, Handoff, Message
from agent.staff import handoffs
from realestate.asgi import application
from tests.rows import chat_staff

pytestmark = pytest.mark.django_db

DAPHNE_LIMIT = 32_768  # bytes, --websocket-max-message-size (README, Abuse limits)
EMOJI = "\U0001f3e0" * 2000  # escaped by json.dumps: 12 bytes a character


@pytest.fixture
def anna(db):
    return chat_staff(
        get_user_model().objects.create_user("anna", first_name="Anna", is_staff=True)
    )


@pytest.fixture
def staff_screen():
    """A channel in the staff group, as a staff socket's; ``staff_screen()`` returns the frames
    it was sent since the last call."""
    layer = get_channel_layer()
    name = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(handoffs.STAFF_GROUP, name)

    def frames():
        received = []
        while layer.channels.get(name):
            received.append(async_to_sync(layer.receive)(name)["frame"])
        return received

    yield frames
    async_to_sync(layer.group_discard)(handoffs.STAFF_GROUP, name)


def queued_conversations(n: int, text: str = "Is there a garage?") -> list[Handoff]:
    """``n`` conversations, each with a visitor message and a queued handoff."""
    conversations = Conversation.objects.bulk_create(
        Conversation(visitor_name="Vera Visitor") for _ in range(n)
    )
    messages = Message.objects.bulk_create(
        Message(conversation=c, seq=1, role=Message.Role.USER, text=text) for c in conversations
    )
    return Handoff.objects.bulk_create(
        Handoff(conversation=c, message=m, reason="listing question")
        for c, m in zip(conversations, messages, strict=True)
    )


def a_visitor_asks(text="Do you allow dogs?") -> tuple[Conversation, Message]:
    conversation = Conversation.objects.create(visitor_name="Nina", visitor_email="n@x.example")
    return conversation, Message.objects.store(conversation.pk, Message.Role.USER, text)


def test_each_change_of_a_handoff_sends_staff_one_change_frame_of_it(
    anna, staff_screen, django_capture_on_commit_callbacks
):
    conversation, question = a_visitor_asks()
    with django_capture_on_commit_callbacks(execute=True):
        handoff = handoffs.queue_handoff(conversation, question, "listing question")
    (queued,) = staff_screen()
    assert queued["type"] == "queue_change"
    assert (queued["waiting"], queued["open"]) == (1, 1)
    assert queued["handoff"] == {
        "id": handoff.pk,
        "conversation": str(conversation.pk),
        "status": "queued",
        "queued_at": handoff.created_at.isoformat(),
        "reason": "listing question",
        "text": "Do you allow dogs?",
        "visitor": "Nina · n@x.example",
        "claimed_by": None,
        "claimed_by_id": None,
        "url": f"/admin/handoffs/{handoff.pk}/",
        "version": 1,
    }

    seen = [queued]
    for change, status, waiting, open_ in [
        (handoffs.claim, "claimed", 0, 1),
        (handoffs.release, "queued", 1, 1),
        (handoffs.resolve, "resolved", 0, 0),
    ]:
        with django_capture_on_commit_callbacks(execute=True):
            change(handoff.pk, anna)
        (frame,) = staff_screen()
        assert frame["type"] == "queue_change" and frame["handoff"]["id"] == handoff.pk
        assert frame["handoff"]["status"] == status
        assert (frame["waiting"], frame["open"]) == (waiting, open_)
        seen.append(frame)
    assert [f["handoff"]["claimed_by"] for f in seen] == [None, "Anna", None, "Anna"]
    assert [f["handoff"]["version"] for f in seen] == [1, 2, 3, 4]
    assert [f["counted"] for f in seen] == sorted({f["counted"] for f in seen})


def test_a_change_costs_the_same_with_one_or_five_hundred_handoffs_queued(
    anna, staff_screen, django_capture_on_commit_callbacks
):
    def cost() -> tuple[list[int], list[int]]:
        """Queries, and bytes sent to staff, of queuing, claiming, releasing and resolving one
        handoff, changes sent included."""
        conversation, question = a_visitor_asks()
        queries, sent = [], []
        for step in ("queue", "claim", "release", "resolve"):
            with CaptureQueriesContext(connection) as captured:
                with django_capture_on_commit_callbacks(execute=True):
                    if step == "queue":
                        handoff = handoffs.queue_handoff(conversation, question, "question")
                    else:
                        getattr(handoffs, step)(handoff.pk, anna)
            queries.append(len(captured))
            # Counts differ by their digits only; the list of the queue would add kilobytes.
            sent.append(sum(len(json.dumps(f)) for f in staff_screen()) // 100)
        return queries, sent

    queued_conversations(1)
    short = cost()
    queued_conversations(499)
    assert Handoff.objects.filter(status="queued").count() == 500
    long = cost()
    print("queries, hundreds of bytes sent: 1 queued", short, "500 queued", long)
    assert long == short


def test_a_change_of_the_longest_texts_stays_far_under_daphnes_limit(
    staff_screen, django_capture_on_commit_callbacks
):
    conversation = Conversation.objects.create(
        visitor_name="N" * 200, visitor_email="e@x.example", visitor_phone="+1 555 0100"
    )
    question = Message.objects.store(conversation.pk, Message.Role.USER, EMOJI)
    with django_capture_on_commit_callbacks(execute=True):
        handoffs.queue_handoff(conversation, question, EMOJI)
    (frame,) = staff_screen()
    assert len(json.dumps(frame).encode()) < DAPHNE_LIMIT // 4


def test_the_queue_frame_and_changes_carry_what_a_screen_orders_them_by():
    (handoff,) = queued_conversations(1)
    frame = handoffs.queue_frame()
    later = handoffs.queue_frame()
    assert frame["handoffs"][0]["version"] == 1 and frame["limit"] == handoffs.QUEUE_LIMIT
    assert (frame["waiting"], frame["open"]) == (1, 1)
    assert later["counted"] > frame["counted"]


@pytest.mark.django_db(transaction=True)
async def test_a_staff_socket_gets_changes_live_and_the_whole_queue_when_it_asks(chat_client):
    def setup():
        user = get_user_model().objects.create_user("ben", first_name="Ben", is_staff=True)
        client = Client()
        client.force_login(chat_staff(user))
        return user, client.cookies[settings.SESSION_COOKIE_NAME].value

    ben, key = await sync_to_async(setup)()
    headers = [(b"origin", b"http://localhost"), (b"cookie", f"sessionid={key}".encode())]
    socket = WebsocketCommunicator(application, "/ws/staff/", headers=headers)
    assert (await socket.connect())[0]
    assert (await socket.receive_json_from(timeout=5))["type"] == "queue"

    (handoff,) = await sync_to_async(queued_conversations)(1)
    await db_trip(handoffs.claim, handoff.pk, ben)  # as the socket's own frames run it
    change = await socket.receive_json_from(timeout=5)
    assert change["type"] == "queue_change" and change["handoff"]["claimed_by"] == "Ben"
    assert (change["waiting"], change["open"], change["handoff"]["version"]) == (0, 1, 2)

    await socket.send_json_to({"type": "queue"})
    queue = await socket.receive_json_from(timeout=5)
    assert queue["type"] == "queue" and queue["counted"] > change["counted"]
    assert [(h["id"], h["version"]) for h in queue["handoffs"]] == [(handoff.pk, 2)]
    await socket.disconnect()
