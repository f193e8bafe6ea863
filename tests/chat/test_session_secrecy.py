"""Session keys stay secret (issue 13, section 2): the session names its conversation and the
conversation keeps nothing of the session, so no admin page or export shows a string that works
as a ``sessionid``, and a cookie the session store does not know opens a new conversation."""

import re

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse

from agent.chat.turn import SESSION_CONVERSATION
from agent.models import Conversation, Message, Route

pytestmark = pytest.mark.django_db

# Anything that could be a session key (Django's are 32 lower-case letters and digits) or a
# longer credential: every run of 20 or more such characters in a page or a file.
CANDIDATE = re.compile(r"[A-Za-z0-9_\-:.]{20,}")


def candidates(body: bytes) -> set[str]:
    """The strings of ``body`` that could be tried as a session cookie, and their pieces."""
    found = set()
    for match in CANDIDATE.findall(body.decode("utf-8", "replace")):
        found.add(match)
        found.update(part for part in re.split(r"[_\-:.]", match) if len(part) >= 20)
    return found


def conversation_of(client: Client) -> Conversation:
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    session = Session.objects.get(session_key=key).get_decoded()
    return Conversation.objects.get(id=session[SESSION_CONVERSATION])


def test_no_admin_page_or_export_shows_a_key_that_works_as_a_session(client):
    superuser = get_user_model().objects.create_superuser("boss", password="pw-boss-1")
    client.force_login(superuser)
    assert client.get("/").status_code == 200  # the superuser opens the chat page, logged in
    staff_chat = conversation_of(client)
    visitor = Client()
    visitor.get("/")
    visitor_chat = conversation_of(visitor)
    for chat in (staff_chat, visitor_chat):  # a turn each, so every export has a row
        Message.objects.store(chat.id, Message.Role.USER, "How much is listing 123456?")
        Message.objects.store(
            chat.id, Message.Role.ASSISTANT, "The price for listing 123456 is $350,000.",
            route=Route.PRICE,
        )

    viewer = get_user_model().objects.create_user("viewer", password="pw-view-1", is_staff=True)
    viewer.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="agent", codename__startswith="view_"
        )
    )
    reader = Client()
    reader.force_login(viewer)
    changelist = reverse("admin:agent_conversation_changelist")
    pages = [
        reader.get(changelist),
        reader.get(reverse("admin:agent_dashboard")),
        reader.get(reverse("admin:agent_classifiercall_changelist")),
        *(
            reader.get(reverse("admin:agent_conversation_change", args=[chat.id]))
            for chat in (staff_chat, visitor_chat)
        ),
        *(
            reader.post(
                changelist,
                {"action": action, "_selected_action": [staff_chat.id, visitor_chat.id]},
            )
            for action in ("export_csv", "export_jsonl", "add_to_eval_set")
        ),
    ]
    assert [page.status_code for page in pages] == [200] * len(pages)
    assert all(page.content for page in pages)
    found = set().union(*(candidates(page.content) for page in pages))
    assert str(staff_chat.id).split("-")[0] in str(pages[0].content)  # the pages were read
    assert not Session.objects.filter(session_key__in=found).exists()


def test_a_cookie_the_session_store_does_not_know_gets_a_new_conversation(client):
    victim = Client()
    victim.get("/")
    key = victim.cookies[settings.SESSION_COOKIE_NAME].value
    victims_chat = conversation_of(victim)
    Session.objects.filter(session_key=key).delete()  # logged out, expired, or never issued

    client.cookies[settings.SESSION_COOKIE_NAME] = key
    assert client.get("/").status_code == 200
    assert client.cookies[settings.SESSION_COOKIE_NAME].value != key
    assert conversation_of(client) != victims_chat
    answer = client.post(
        "/chat/session", "{}", content_type="application/json", HTTP_ORIGIN="http://localhost"
    ).json()
    assert answer["conversation"] != str(victims_chat.id)


@pytest.mark.django_db(transaction=True)
async def test_the_chat_socket_refuses_a_cookie_the_session_store_does_not_know(
    connect, visitor_session
):
    communicator, history = await connect()
    assert history["type"] == "history"
    await communicator.disconnect()
    await Session.objects.filter(session_key=visitor_session.session_key).adelete()

    communicator, history = await connect()  # the same cookie, now unknown to the store
    assert history is None  # refused: the chat page sets a real session first
    await communicator.disconnect()
    communicator, history = await connect(session_key="forgedforgedforgedforged12345678")
    assert history is None
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_the_chat_socket_opens_the_conversation_its_session_names(
    connect, visitor_session
):
    communicator, history = await connect()
    conversation = await Conversation.objects.aget(id=history["conversation"])
    again, second = await connect()
    assert second["conversation"] == str(conversation.id)
    for socket in (communicator, again):
        await socket.disconnect()
