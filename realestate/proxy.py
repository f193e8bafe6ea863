"""The client's address behind trusted proxies, for HTTP and websockets alike.

daphne's ``--proxy-headers`` takes the *first* address of ``X-Forwarded-For``, which the client
writes itself whenever a proxy appends to the header (as load balancers do): a client could
then pick its address and escape the per-address limits and ``METRICS_ALLOWED_IPS``. Like
werkzeug's ``ProxyFix`` and Starlette's proxy-headers middleware, this takes the address that
the last of ``TRUSTED_PROXIES`` proxies saw: the Nth from the header's end (issue 13).
"""

import ipaddress
import logging

from django.conf import settings

logger = logging.getLogger(__name__)


def forwarded_client(headers, trusted: int) -> str | None:
    """The client address that ``trusted`` proxies report in ``X-Forwarded-For``.

    Args:
        headers: ASGI headers, ``[(b"name", b"value"), ...]``; several ``X-Forwarded-For``
            headers count as one list, in order.
        trusted: how many proxies in front of the app append to the header (0: none).
    Returns:
        The ``trusted``-th address from the end, or None when ``trusted`` is 0, the header has
        fewer addresses (it did not pass through every proxy), or that entry is not an IP
        address; the caller then keeps the TCP peer.
    """
    if trusted <= 0:
        return None
    addresses = [
        part.strip()
        for name, value in headers
        if name.lower() == b"x-forwarded-for"
        for part in value.decode("latin-1").split(",")
    ]
    if len(addresses) < trusted:
        return None
    candidate = addresses[-trusted]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        logger.warning("ignoring X-Forwarded-For entry %r: not an IP address", candidate[:64])
        return None


class TrustedProxies:
    """ASGI middleware: ``scope["client"]`` becomes ``forwarded_client``'s address (port 0) for
    HTTP and websocket scopes, so Django's ``REMOTE_ADDR`` and the chat's limits agree.

    Args:
        app: the ASGI application to wrap. ``settings.TRUSTED_PROXIES`` is read per scope.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            client = forwarded_client(scope.get("headers", []), settings.TRUSTED_PROXIES)
            if client is not None:
                scope = {**scope, "client": (client, 0)}
        return await self.app(scope, receive, send)
