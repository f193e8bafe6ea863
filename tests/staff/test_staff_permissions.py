"""Staff powers follow Django permissions, not just is_staff (issue 13, section 3): the staff
socket, the staff screens and the admin actions; the socket takes the app's own origins only,
and a logout or deactivation ends it."""

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from agent.models import Conversation, Handoff, Message
from listings.models import Appointment
from realestate.asgi import application
from tests.rows import chat_staff

User = get_user_model()


def make_user(username, *codenames, group=False):
    """A staff user with exactly these permissions (codenames), or the Chat staff group's."""
    user = User.objects.create_user(username, first_name=username.capitalize(), is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return chat_staff(user) if group else user


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make_handoff() -> Handoff:
    conversation = Conversation.objects.create()
    question = Message.objects.store(conversation.pk, Message.Role.USER, "Is there a garage?")
    return Handoff.objects.create(conversation=conversation, message=question, reason="question")


# --- the staff socket ----------------------------------------------------------------------------


@pytest.fixture
def staff_socket(chat_client):
    """Open /ws/staff/ as a logged-in client; returns (communicator, first frame or None)."""
    opened = []

    async def open_staff(client: Client, origin=b"http://localhost"):
        key = client.cookies[settings.SESSION_COOKIE_NAME].value
        headers = [(b"origin", origin), (b"cookie", f"sessionid={key}".encode())]
        communicator = WebsocketCommunicator(application, "/ws/staff/", headers=headers)
        opened.append(communicator)
        connected, code = await communicator.connect()
        if not connected:
            return communicator, code
        return communicator, await communicator.receive_json_from(timeout=5)

    yield open_staff


async def closed_with(communicator) -> int:
    """The close code the server sent next (frames before it are skipped)."""
    while True:
        output = await communicator.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            return output["code"]


@pytest.mark.django_db(transaction=True)
async def test_a_staff_user_without_permissions_is_refused_on_the_socket(staff_socket):
    clerk = await sync_to_async(lambda: logged_in(make_user("clerk")))()
    _, code = await staff_socket(clerk)
    assert code == 4403


@pytest.mark.django_db(transaction=True)
async def test_seeing_the_queue_lets_nobody_read_transcripts_or_take_over(staff_socket):
    def setup():
        return make_handoff(), logged_in(make_user("viewer", "view_handoff"))

    handoff, viewer = await sync_to_async(setup)()
    socket, queue = await staff_socket(viewer)
    assert queue["type"] == "queue" and queue["waiting"] == 1
    frames = [
        {"type": "watch", "conversation": str(handoff.conversation_id)},
        {"type": "claim", "handoff": handoff.pk},
        {"type": "resolve", "handoff": handoff.pk},
        {"type": "release", "handoff": handoff.pk},
        {"type": "message", "handoff": handoff.pk, "text": "Hello from the agency"},
    ]
    for frame in frames:
        await socket.send_json_to(frame)
        assert (await socket.receive_json_from(timeout=5))["code"] == "forbidden"
    assert await sync_to_async(Handoff.objects.filter(status="queued", pk=handoff.pk).exists)()
    assert await Message.objects.filter(role="staff").acount() == 0
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_chat_staff_get_in(staff_socket):
    def setup():
        return make_handoff(), logged_in(make_user("carla", group=True))

    handoff, anna = await sync_to_async(setup)()
    socket, _ = await staff_socket(anna)
    await socket.send_json_to({"type": "watch", "conversation": str(handoff.conversation_id)})
    history = await socket.receive_json_from(timeout=5)
    assert history["type"] == "history" and history["messages"][0]["text"] == "Is there a garage?"
    await socket.send_json_to({"type": "claim", "handoff": handoff.pk})
    assert (await socket.receive_json_from(timeout=5))["type"] in ("notice", "queue_change")
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_an_embedding_origin_is_refused_on_the_staff_socket(settings, staff_socket):
    settings.CHAT_ALLOWED_ORIGINS = ["https://www.agency.example"]
    anna = await sync_to_async(lambda: logged_in(make_user("carla", group=True)))()
    _, code = await staff_socket(anna, origin=b"https://www.agency.example")
    assert code == 4403
    _, code = await staff_socket(anna, origin=b"https://evil.example")
    assert code == 1000  # refused by the upgrade's origin check (channels), before the consumer
    socket, queue = await staff_socket(anna, origin=b"http://localhost:8000")
    assert queue["type"] == "queue"
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["claim", "dance"])
async def test_after_deactivation_the_next_frame_is_refused(staff_socket, kind):
    def setup():
        user = make_user("carla", group=True)
        return user, make_handoff(), logged_in(user)

    user, handoff, anna = await sync_to_async(setup)()
    socket, _ = await staff_socket(anna)
    # Past the signals (a bulk update), as another process or a SQL console would.
    await User.objects.filter(pk=user.pk).aupdate(is_active=False)
    await socket.send_json_to({"type": kind, "handoff": handoff.pk})
    assert (await socket.receive_json_from(timeout=5))["code"] == "forbidden"
    assert await closed_with(socket) == 4403
    assert await sync_to_async(Handoff.objects.filter(status="queued", pk=handoff.pk).exists)()


@pytest.mark.django_db(transaction=True)
async def test_a_removed_permission_is_refused_at_the_next_frame(staff_socket):
    def setup():
        user = make_user("anna", "view_handoff", "view_conversation", "handle_handoff")
        return user, make_handoff(), logged_in(user)

    user, handoff, anna = await sync_to_async(setup)()
    socket, _ = await staff_socket(anna)
    # Past the signals (a bulk delete), as another process or a SQL console would.
    await User.user_permissions.through.objects.filter(
        user=user, permission__codename="handle_handoff"
    ).adelete()
    await socket.send_json_to({"type": "claim", "handoff": handoff.pk})
    assert (await socket.receive_json_from(timeout=5))["code"] == "forbidden"
    await socket.send_json_to({"type": "watch", "conversation": str(handoff.conversation_id)})
    assert (await socket.receive_json_from(timeout=5))["type"] == "history"  # still open
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_saving_a_user_inactive_closes_their_sockets_at_once(staff_socket):
    user = await sync_to_async(make_user)("anna", group=True)
    anna = await sync_to_async(logged_in)(user)
    socket, _ = await staff_socket(anna)
    user.is_active = False
    await sync_to_async(user.save)()
    assert await closed_with(socket) == 4403


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["permission", "group", "group permission"])
async def test_taking_a_permission_away_closes_the_users_sockets_at_once(staff_socket, how):
    def setup():
        user = make_user("anna", "view_handoff", group=True)
        return user, logged_in(user)

    user, anna = await sync_to_async(setup)()
    socket, _ = await staff_socket(anna)

    def take_away():
        group = Group.objects.get(name="Chat staff")
        if how == "permission":
            user.user_permissions.remove(Permission.objects.get(codename="view_handoff"))
        elif how == "group":
            user.groups.remove(group)
        else:
            group.permissions.remove(Permission.objects.get(codename="handle_handoff"))

    await sync_to_async(take_away)()
    assert await closed_with(socket) == 4403


@pytest.mark.django_db(transaction=True)
async def test_logout_closes_the_socket(staff_socket):
    anna = await sync_to_async(lambda: logged_in(make_user("carla", group=True)))()
    socket, _ = await staff_socket(anna)
    response = await sync_to_async(anna.post)(reverse("admin:logout"))
    assert response.status_code == 200
    assert await closed_with(socket) == 4403
    _, code = await staff_socket(anna)  # the same cookie: its session is gone
    assert code == 4403


# --- the staff screens ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_staff_user_without_permissions_is_refused_the_pages():
    handoff = make_handoff()
    clerk = logged_in(make_user("clerk"))
    assert clerk.get(reverse("handoff_queue")).status_code == 403
    assert clerk.get(reverse("handoff_detail", args=[handoff.pk])).status_code == 403
    page = clerk.get(reverse("admin:index")).content.decode()
    assert 'id="handoff-live"' not in page  # no badge, no socket opened for it


@pytest.mark.django_db
def test_the_queue_alone_does_not_show_a_transcript():
    handoff = make_handoff()
    viewer = logged_in(make_user("viewer", "view_handoff"))
    assert viewer.get(reverse("handoff_queue")).status_code == 200
    assert viewer.get(reverse("handoff_detail", args=[handoff.pk])).status_code == 403


@pytest.mark.django_db
def test_the_take_over_buttons_show_only_with_the_permission():
    handoff = make_handoff()
    reader = logged_in(make_user("reader", "view_handoff", "view_conversation"))
    page = reader.get(reverse("handoff_detail", args=[handoff.pk])).content.decode()
    assert "Is there a garage?" in page and 'data-action="claim"' not in page
    anna = logged_in(make_user("carla", group=True))
    page = anna.get(reverse("handoff_detail", args=[handoff.pk])).content.decode()
    assert 'data-action="claim"' in page


# --- admin actions -------------------------------------------------------------------------------


@pytest.fixture
def appointment(db, realtors, listings):
    """A booked call next week with Anna the realtor."""
    starts_at = timezone.now() + timedelta(days=7)
    return Appointment.objects.create(
        realtor=realtors[0], listing=listings["123456"], starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=30), visitor_name="Ann",
        visitor_email="ann@example.com",
    )


@pytest.mark.django_db
def test_a_view_only_user_runs_no_admin_action(appointment, mailoutbox):
    handoff = make_handoff()
    viewer = logged_in(make_user(
        "viewer", "view_handoff", "view_conversation", "view_appointment",
    ))
    for model, action, pk in [
        ("agent_handoff", "claim", handoff.pk),
        ("agent_handoff", "resolve", handoff.pk),
        ("listings_appointment", "confirm", appointment.pk),
        ("listings_appointment", "cancel", appointment.pk),
    ]:
        url = reverse(f"admin:{model}_changelist")
        viewer.post(url, {"action": action, "_selected_action": [pk]})
    handoff.refresh_from_db()
    appointment.refresh_from_db()
    assert (handoff.status, handoff.claimed_by) == ("queued", None)
    assert appointment.status == "booked"
    assert mailoutbox == []


@pytest.mark.django_db
def test_chat_staff_run_the_handoff_and_appointment_actions(appointment):
    handoff = make_handoff()
    anna = logged_in(make_user("carla", group=True))
    anna.post(reverse("admin:agent_handoff_changelist"),
              {"action": "claim", "_selected_action": [handoff.pk]})
    anna.post(reverse("admin:listings_appointment_changelist"),
              {"action": "confirm", "_selected_action": [appointment.pk]})
    handoff.refresh_from_db()
    appointment.refresh_from_db()
    assert (handoff.status, handoff.claimed_by.username) == ("claimed", "carla")
    assert appointment.status == "confirmed"


@pytest.mark.django_db
def test_the_migration_makes_the_chat_staff_group_without_the_llm_settings():
    group = Group.objects.get(name="Chat staff")
    perms = set(group.permissions.values_list("content_type__app_label", "codename"))
    assert {("agent", "handle_handoff"), ("agent", "view_handoff"),
            ("agent", "view_conversation")} <= perms
    assert not {codename for _, codename in perms} & {
        "manage_llm", "change_endpoint", "change_classifierconfig",
    }
