"""The client address behind trusted proxies (issue 13, section 5): the Nth address from the
end of X-Forwarded-For, never one the client wrote at its start."""

import ipaddress

import pytest
from asgiref.testing import ApplicationCommunicator

from realestate.asgi import application
from realestate.proxy import TrustedProxies, forwarded_client

PEER = ("10.0.0.5", 41000)  # the load balancer, as daphne sees it without --proxy-headers


def xff(*values: str) -> list:
    return [(b"x-forwarded-for", value.encode()) for value in values]


@pytest.mark.parametrize(
    ("headers", "trusted", "client"),
    [
        (xff("203.0.113.7"), 1, "203.0.113.7"),
        (xff("198.51.100.1, 203.0.113.7"), 1, "203.0.113.7"),  # the client's own entry first
        (xff("198.51.100.1", "203.0.113.7"), 1, "203.0.113.7"),  # two headers are one list
        (xff("198.51.100.1, 203.0.113.7, 10.0.0.9"), 2, "203.0.113.7"),  # CDN, then LB
        (xff("203.0.113.7"), 2, None),  # fewer than the proxies: not through all of them
        (xff("198.51.100.1, 203.0.113.7"), 0, None),  # no proxies trusted
        (xff("1.2.3.4, not-an-ip"), 1, None),
        ([], 1, None),
    ],
)
def test_the_client_is_the_address_the_last_trusted_proxy_saw(headers, trusted, client):
    assert forwarded_client(headers, trusted) == client


@pytest.mark.parametrize("kind", ["http", "websocket"])
async def test_the_middleware_sets_the_scopes_client(kind, settings):
    settings.TRUSTED_PROXIES = 1
    seen = {}

    async def app(scope, receive, send):
        seen.update(scope)

    scope = {"type": kind, "client": PEER, "headers": xff("6.6.6.6, 203.0.113.7")}
    await TrustedProxies(app)(scope, None, None)
    assert seen["client"] == ("203.0.113.7", 0)


async def get_metrics(headers: list) -> int:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/metrics", "raw_path": b"/metrics", "query_string": b"",
        "root_path": "", "headers": [(b"host", b"localhost"), *headers], "client": PEER,
        "server": ("127.0.0.1", 8000),
    }
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(5)
    await communicator.wait(5)
    return start["status"]


@pytest.mark.django_db(transaction=True)
async def test_an_address_written_before_the_proxys_entry_gets_no_metrics(settings):
    settings.TRUSTED_PROXIES = 1
    settings.METRICS_ALLOWED_IPS = [ipaddress.ip_network("192.0.2.10/32")]
    # The load balancer appends the real client, 203.0.113.7, to what the client sent.
    assert await get_metrics(xff("192.0.2.10, 203.0.113.7")) == 404
    assert await get_metrics(xff("203.0.113.7, 192.0.2.10")) == 200  # the scraper itself
