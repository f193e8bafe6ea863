"""Classifiers as rows: the seed, versions, settings defaults, and editing them in the admin."""

import json

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from agent.llm.classifiers import CLASSIFIERS
from agent.llm.client import Server
from agent.models import ClassifierConfig, Endpoint

pytestmark = pytest.mark.django_db


def test_the_migration_seeds_the_built_in_classifiers_on_the_default_endpoint():
    rows = list(ClassifierConfig.objects.select_related("endpoint"))
    assert [row.name for row in rows] == [c.name for c in CLASSIFIERS]  # by priority
    for row, built_in in zip(rows, CLASSIFIERS, strict=True):
        assert (row.system_prompt, row.output_schema) == (built_in.instructions, built_in.schema)
        assert (row.enabled, row.version, row.max_tokens, row.temperature) == (
            True, 1, built_in.max_tokens, 0.0
        )
        assert row.endpoint.name == "default" and row.endpoint.base_url == ""
        assert row.endpoint.api_key_env == "LLM_API_KEY"


def test_a_row_without_url_model_or_cap_uses_the_settings(settings):
    settings.LLM_BASE_URL = "http://gpu-host:8000/v1"
    settings.LLM_MAX_IN_FLIGHT = 7
    (pricing, *_) = ClassifierConfig.enabled_classifiers()
    assert pricing.server == Server("http://gpu-host:8000/v1", "openai", "LLM_API_KEY", 7)
    assert pricing.model == ""  # the fan-out then takes LLM_MODEL_PRICING or LLM_MODEL
    assert pricing.version == 1


def test_enabled_classifiers_come_in_priority_order_without_the_disabled_ones():
    ClassifierConfig.objects.filter(name="scheduling").update(priority=1)
    ClassifierConfig.objects.filter(name="listing_question").update(enabled=False)
    assert [c.name for c in ClassifierConfig.enabled_classifiers()] == [
        "scheduling", "pricing", "appointment_change", "listing_facts", "listing_search"
    ]


def test_every_save_raises_the_version():
    row = ClassifierConfig.objects.get(name="pricing")
    row.temperature = 0.2
    row.save()
    row.save()
    row.refresh_from_db()
    assert row.version == 3


def test_a_schema_must_be_an_object_with_properties():
    row = ClassifierConfig.objects.get(name="pricing")
    row.output_schema = {"type": "string"}
    with pytest.raises(ValidationError) as caught:
        row.full_clean()
    assert "output_schema" in caught.value.message_dict


def test_an_endpoint_names_its_key_variable_never_the_key():
    endpoint = Endpoint(name="openai", base_url="https://api.openai.test/v1",
                        api_key_env="sk-live-abc123")
    with pytest.raises(ValidationError) as caught:
        endpoint.full_clean()
    assert "api_key_env" in caught.value.message_dict


@pytest.mark.parametrize(
    ("model", "shows"),
    [("agent_classifierconfig", "listing_question"), ("agent_endpoint", "LLM_BASE_URL setting")],
)
def test_the_admin_lists_classifiers_and_endpoints(admin_client, model, shows):
    response = admin_client.get(reverse(f"admin:{model}_changelist"))
    assert response.status_code == 200
    assert shows in response.content.decode()


def test_editing_a_prompt_in_the_admin_raises_its_version(admin_client):
    row = ClassifierConfig.objects.get(name="pricing")
    response = admin_client.post(
        reverse("admin:agent_classifierconfig_change", args=[row.pk]),
        {
            "name": "pricing", "enabled": "on", "priority": "10", "endpoint": row.endpoint_id,
            "model": "", "system_prompt": row.system_prompt + " Be brief.",
            "output_schema": json.dumps(row.output_schema),
            "max_tokens": "64", "temperature": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    row.refresh_from_db()
    assert row.version == 2 and row.system_prompt.endswith("Be brief.")
