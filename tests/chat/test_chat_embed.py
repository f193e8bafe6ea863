"""The widget on other sites: allowed origins, POST /chat/session, conversation tokens."""

import time

import pytest
from channels.testing import WebsocketCommunicator
from django.core import signing

from agent.chat.widget import TOKEN_SALT, issue_token, origin_allowed, read_token
from agent.models import Conversation, Message
from realestate.asgi import application

AGENCY = "https://www.agency.example"


@pytest.fixture(autouse=True)
def agency_allowed(settings):
    """The agency's own site may embed the widget; the app itself serves localhost."""
    settings.CHAT_ALLOWED_ORIGINS = [AGENCY]
    settings.ALLOWED_HOSTS = ["localhost", "testserver"]


def start(client, body='{"token": null}', origin=AGENCY, content_type="text/plain"):
    headers = {"HTTP_ORIGIN": origin} if origin else {}
    return client.post("/chat/session", body, content_type=content_type, **headers)


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (AGENCY, True),
        ("https://WWW.Agency.example", True),
        ("http://www.agency.example", False),  # another scheme is another origin
        ("https://www.agency.example:8443", False),
        ("https://agency.example", False),
        ("http://localhost:8000", True),  # a host in ALLOWED_HOSTS: the app's own pages
        ("https://evil.example", False),
        ("null", False),
        ("", False),
        (None, False),
    ],
)
def test_an_origin_is_allowed_only_when_listed_or_one_of_the_apps_hosts(origin, allowed):
    assert origin_allowed(origin) is allowed


@pytest.mark.django_db
def test_an_allowed_site_gets_a_token_for_a_new_conversation_with_cors_headers(client):
    response = start(client)
    assert response.status_code == 200
    body = response.json()
    assert read_token(body["token"]) == body["conversation"]
    assert Conversation.objects.filter(id=body["conversation"]).exists()
    assert response["Access-Control-Allow-Origin"] == AGENCY
    assert "Origin" in response["Vary"]
    assert "Access-Control-Allow-Credentials" not in response
    assert "no-store" in response["Cache-Control"]


@pytest.mark.django_db
def test_a_valid_token_resumes_its_conversation_with_the_same_token(client):
    first = start(client).json()
    client.cookies.clear()  # a cross-site request carries no cookie
    again = start(client, f'{{"token": "{first["token"]}"}}').json()
    assert again == first
    assert Conversation.objects.count() == 1


@pytest.mark.django_db
def test_a_forged_token_starts_a_new_conversation_and_reveals_nothing(client, conversation):
    forged = signing.dumps({"c": str(conversation.id)}, key="guessed", salt=TOKEN_SALT)
    body = start(client, f'{{"token": "{forged}"}}').json()
    assert body["conversation"] != str(conversation.id)
    assert read_token(forged) is None


@pytest.mark.django_db
def test_a_site_that_is_not_allowed_gets_403_and_nothing_is_created(client):
    for origin in ["https://evil.example", None]:
        response = start(client, origin=origin)
        assert response.status_code == 403
        assert response.json()["error"] == "origin_not_allowed"
    assert not Conversation.objects.exists()


@pytest.mark.django_db
def test_the_preflight_is_answered_for_allowed_sites_only(client):
    response = client.options("/chat/session", HTTP_ORIGIN=AGENCY)
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == AGENCY
    assert response["Access-Control-Allow-Methods"] == "POST"
    assert client.options("/chat/session", HTTP_ORIGIN="https://evil.example").status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("body", ["not json", "[1]", '{"token": 7}'])
def test_a_bad_body_gets_400(client, body):
    response = start(client, body)
    assert response.status_code == 400 and response.json()["error"] == "bad_request"


@pytest.mark.django_db
def test_it_only_answers_post_and_options(client):
    assert client.get("/chat/session", HTTP_ORIGIN=AGENCY).status_code == 405


@pytest.mark.django_db
def test_the_app_page_resumes_the_conversation_of_its_session_cookie(client):
    client.get("/")  # sets the session
    first = start(client, origin="http://localhost").json()
    second = start(client, origin="http://localhost").json()
    assert first["conversation"] == second["conversation"]


def test_a_token_expires_after_chat_token_max_age(settings, monkeypatch):
    settings.CHAT_TOKEN_MAX_AGE = 3600
    token = issue_token("5f0c6e43-55a8-4c1b-8f8e-7d4b6f7f2d10")
    assert read_token(token) == "5f0c6e43-55a8-4c1b-8f8e-7d4b6f7f2d10"
    later = time.time() + 3601
    monkeypatch.setattr(signing.time, "time", lambda: later)
    assert read_token(token) is None


def test_a_token_signed_for_another_use_is_refused():
    other_use = signing.dumps({"c": "5f0c6e43-55a8-4c1b-8f8e-7d4b6f7f2d10"}, salt="sessions")
    assert read_token(other_use) is None
    assert read_token("") is None and read_token(None) is None and read_token("x" * 600) is None


# The websocket, with a token and no cookie, as the widget on another site connects.

pytestmark_ws = pytest.mark.django_db(transaction=True)


async def open_socket(path, origin=AGENCY):
    communicator = WebsocketCommunicator(application, path, headers=[(b"origin", origin.encode())])
    connected, _ = await communicator.connect()
    return communicator, connected


@pytestmark_ws
async def test_a_token_opens_its_conversation_without_a_cookie(chat_client):
    conversation = await Conversation.objects.acreate()
    await Message.objects.acreate(conversation=conversation, seq=1, role="user", text="Hi")
    await Conversation.objects.filter(id=conversation.id).aupdate(last_seq=1)
    communicator, connected = await open_socket(f"/ws/chat/?token={issue_token(conversation.id)}")
    assert connected
    history = await communicator.receive_json_from()
    assert history["conversation"] == str(conversation.id)
    assert [m["text"] for m in history["messages"]] == ["Hi"]
    await communicator.disconnect()


@pytestmark_ws
@pytest.mark.parametrize("token", ["forged", "expired", "deleted"])
async def test_a_bad_token_gets_bad_token_and_is_closed_with_4403(chat_client, token, monkeypatch):
    conversation = await Conversation.objects.acreate()
    value = issue_token(conversation.id)
    if token == "forged":
        value = signing.dumps({"c": str(conversation.id)}, key="guessed", salt=TOKEN_SALT)
    elif token == "expired":
        later = time.time() + 15 * 24 * 3600
        monkeypatch.setattr(signing.time, "time", lambda: later)
    else:
        await conversation.adelete()
    communicator, connected = await open_socket(f"/ws/chat/?token={value}")
    assert connected  # accepted so the widget can read why
    error = await communicator.receive_json_from()
    assert error["type"] == "error" and error["code"] == "bad_token"
    assert await communicator.receive_output() == {"type": "websocket.close", "code": 4403}


@pytestmark_ws
async def test_the_upgrade_is_refused_from_a_site_that_is_not_allowed(chat_client, settings):
    conversation = await Conversation.objects.acreate()
    path = f"/ws/chat/?token={issue_token(conversation.id)}"
    _, connected = await open_socket(path, origin="https://evil.example")
    assert not connected
    settings.CHAT_ALLOWED_ORIGINS = [AGENCY, "https://evil.example"]  # read per connection
    communicator, connected = await open_socket(path, origin="https://evil.example")
    assert connected
    await communicator.disconnect()
