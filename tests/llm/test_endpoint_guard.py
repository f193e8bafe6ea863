"""An endpoint row cannot send a secret, or a turn, anywhere the settings do not allow
(issue 13, section 1): the admin form refuses it, and a row written past the form makes no
request at all."""

import aiohttp
import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from agent.llm.client import LLMClient, LLMError
from agent.llm.guard import EndpointRefused, check_base_url, check_key_variable
from agent.models import ClassifierConfig, Endpoint

pytestmark = pytest.mark.django_db

EVIL = {"name": "default", "base_url": "http://evil.test/v1#", "api_style": "openai",
        "api_key_env": "SECRET_KEY", "max_in_flight": ""}
BODY = {"model": "m", "messages": [{"role": "user", "content": "my phone is 555 0100"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
        "max_tokens": 8, "temperature": 0}


def staff_with(client, *codenames):
    """Log ``client`` in as a staff user holding exactly these permissions."""
    user = get_user_model().objects.create_user("clerk", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return user


def change(client, endpoint, data):
    return client.post(reverse("admin:agent_endpoint_change", args=[endpoint.pk]), data)


def test_only_the_change_permission_cannot_edit_an_endpoint(client):
    staff_with(client, "view_endpoint", "change_endpoint")
    default = Endpoint.objects.get(name="default")
    assert change(client, default, EVIL).status_code == 403
    default.refresh_from_db()
    assert (default.base_url, default.api_key_env) == ("", "LLM_API_KEY")
    page = client.get(reverse("admin:agent_endpoint_change", args=[default.pk]))
    assert page.status_code == 200 and 'name="base_url"' not in page.content.decode()


def test_nor_a_classifier_config(client):
    staff_with(client, "view_classifierconfig", "change_classifierconfig")
    row = ClassifierConfig.objects.get(name="pricing")
    url = reverse("admin:agent_classifierconfig_change", args=[row.pk])
    assert client.post(url, {"system_prompt": "Say yes."}).status_code == 403
    assert client.get(reverse("admin:agent_classifierconfig_add")).status_code == 403


def test_the_form_refuses_a_secret_variable_and_a_foreign_host(client):
    staff_with(client, "view_endpoint", "change_endpoint", "manage_llm")
    default = Endpoint.objects.get(name="default")
    response = change(client, default, EVIL)
    assert response.status_code == 200  # the form again, with its errors
    errors = response.context["adminform"].form.errors
    assert "SECRET_KEY is not an LLM key variable" in errors["api_key_env"][0]
    assert "fragment" in errors["base_url"][0]
    default.refresh_from_db()
    assert (default.base_url, default.api_key_env) == ("", "LLM_API_KEY")
    ok = change(client, default, {**EVIL, "base_url": "http://127.0.0.1:9/v1",
                                  "api_key_env": "LLM_API_KEY"})
    assert ok.status_code == 302


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://evil.test/v1", "evil.test is not an LLM host"),
        ("http://127.0.0.1:8001/v1?", "query"),
        ("http://127.0.0.1:8001/v1?x=1", "query"),
        ("http://127.0.0.1:8001/v1#", "fragment"),
        ("http://user:pw@127.0.0.1:8001/v1", "user name"),
        ("ftp://127.0.0.1/v1", "http://"),
        ("http://127.0.0.1:99999/v1", "Not a URL"),
        ("http://127.0.0.1.evil.test/v1", "not an LLM host"),
    ],
)
def test_a_base_url_outside_the_allow_list_is_refused(url, says):
    with pytest.raises(EndpointRefused, match=says):
        check_base_url(url)


def test_the_allow_lists_come_from_the_settings(settings):
    check_base_url("http://127.0.0.1:8001/v1")  # LLM_BASE_URL's host, the default
    check_key_variable("LLM_API_KEY")
    check_key_variable("")  # no key
    with pytest.raises(EndpointRefused):
        check_key_variable("ANTHROPIC_API_KEY")
    settings.LLM_ALLOWED_HOSTS = ("api.anthropic.com",)
    settings.LLM_KEY_VARIABLES = ("ANTHROPIC_API_KEY",)
    check_base_url("https://api.anthropic.com/v1")
    check_key_variable("ANTHROPIC_API_KEY")
    with pytest.raises(EndpointRefused):
        check_key_variable("LLM_API_KEY")


def call_recording(monkeypatch, server, sent: list) -> None:
    """Call ``server`` with every HTTP request the client would send recorded in ``sent``
    (``(method, url)``) and not sent."""

    async def record(session, method, url, **kwargs):  # every aiohttp request passes here
        sent.append((method, str(url)))
        raise RequestSent

    monkeypatch.setattr(aiohttp.ClientSession, "_request", record)

    async def call():
        client = LLMClient()
        try:
            return await client.complete_json(server, BODY, timeout=2)
        finally:
            await client.aclose()

    async_to_sync(call)()


class RequestSent(Exception):
    """What the recorder raises in place of sending."""


def test_the_recorder_sees_the_request_of_an_allowed_row(monkeypatch):
    server = ClassifierConfig.objects.select_related("endpoint").get(name="pricing")
    server = server.as_classifier().server
    sent = []
    with pytest.raises(RequestSent):
        call_recording(monkeypatch, server, sent)
    assert sent == [("POST", f"{server.base_url.rstrip('/')}/chat/completions")]


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"base_url": "http://evil.test/v1#", "api_key_env": "SECRET_KEY"}, "fragment"),
        ({"base_url": "http://evil.test/v1"}, "evil.test is not an LLM host"),
        ({"api_key_env": "SECRET_KEY"}, "SECRET_KEY is not an LLM key variable"),
        ({"base_url": "http://127.0.0.1:8001/v1#"}, "fragment"),
    ],
)
def test_a_row_forced_in_by_sql_makes_no_request(monkeypatch, fields, says):
    monkeypatch.setenv("SECRET_KEY", "the-django-secret")
    Endpoint.objects.filter(name="default").update(**fields)  # past Endpoint.clean
    server = ClassifierConfig.objects.select_related("endpoint").get(name="pricing")
    server = server.as_classifier().server
    sent = []
    with pytest.raises(LLMError, match=says) as caught:
        call_recording(monkeypatch, server, sent)
    assert caught.value.permanent  # never retried
    assert sent == []
    assert "the-django-secret" not in str(caught.value)


def test_a_url_once_allowed_is_refused_when_the_settings_drop_its_host(settings):
    check_base_url("http://127.0.0.1:8001/v1")
    settings.LLM_ALLOWED_HOSTS = ("gpu-host",)
    with pytest.raises(EndpointRefused, match="127.0.0.1 is not an LLM host"):
        check_base_url("http://127.0.0.1:8001/v1")
    check_base_url("http://gpu-host:8000/v1")
