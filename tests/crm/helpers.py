"""Shared bits of the CRM tests: the example receiver's ``verify`` (loaded from
deploy/webhook_receiver.py, a script, not a package) and an endpoint row."""

import importlib.util

from agent.crm.models import WebhookEndpoint
from agent.crm.outbox import EVENT_TYPES
from tests import ROOT

SECRET = "whsec_test_secret_0123456789"


def receiver_module():
    """deploy/webhook_receiver.py as a module."""
    spec = importlib.util.spec_from_file_location(
        "webhook_receiver", ROOT / "deploy" / "webhook_receiver.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def endpoint(url: str = "http://127.0.0.1:9/", events=EVENT_TYPES, **fields) -> WebhookEndpoint:
    """A webhook endpoint subscribed to ``events``."""
    return WebhookEndpoint.objects.create(
        name="CRM", url=url, secret=SECRET, events=list(events), **fields
    )
