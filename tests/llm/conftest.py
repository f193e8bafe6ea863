"""Fixtures of the LLM client's tests."""

import pytest


@pytest.fixture(autouse=True)
def made_up_llm_servers(settings):
    """Allow the made-up servers and key variables these tests name (``llm.test``,
    ``anthropic.test``, ``TEST_LLM_KEY``, ``TEST_ANTHROPIC_KEY``; the loopback servers of
    ``tests/llm/loopback.py`` listen on 127.0.0.1) besides the settings' own
    (``agent.llm.guard``); ``evil.test`` and every other name stay refused."""
    settings.LLM_ALLOWED_HOSTS = (
        *settings.LLM_ALLOWED_HOSTS, "127.0.0.1", "llm.test", "anthropic.test",
    )
    settings.LLM_KEY_VARIABLES = (
        *settings.LLM_KEY_VARIABLES, "TEST_LLM_KEY", "TEST_ANTHROPIC_KEY",
    )
