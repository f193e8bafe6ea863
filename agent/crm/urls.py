"""Where a webhook may be sent: a URL staff type is an outbound request from our servers, so
it follows the rules of any such URL (issue 15): https only, and never to loopback, private,
link-local or otherwise reserved addresses, unless ``WEBHOOK_ALLOW_PRIVATE`` (true by default
only with DEBUG, for local runs and tests) allows both http and those addresses.

The URL is checked when staff save it (``check_url``) and its host's addresses again before
every send (``check_addresses``), so a name that later resolves to 10.0.0.1 is refused then.
A name could still change between that check and httpx's own lookup (DNS rebinding within
the lookup's TTL); pinning the address in the connection is left for later.
"""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class UnsafeURL(ValueError):
    """The webhook URL may not be used; the message says why, for staff."""


def check_url(url: str) -> None:
    """Check a webhook URL's form: http(s), a host, https unless private targets are allowed,
    and a literal IP address that is public unless they are.

    Raises:
        UnsafeURL: the URL breaks a rule.
    """
    parts = urlsplit(url)
    allow_private = settings.WEBHOOK_ALLOW_PRIVATE
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL("The URL must start with https:// and name a host.")
    if parts.scheme != "https" and not allow_private:
        raise UnsafeURL("The URL must use https (WEBHOOK_ALLOW_PRIVATE allows http).")
    if parts.username or parts.password:
        raise UnsafeURL("Put credentials in the secret, not in the URL.")
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return  # a name: its addresses are checked before each send
    if not allow_private and not address.is_global:
        raise UnsafeURL(f"{address} is not a public address (WEBHOOK_ALLOW_PRIVATE allows it).")


def check_addresses(url: str) -> None:
    """Check ``check_url`` and that every address the URL's host resolves to now is public
    (skipped when ``WEBHOOK_ALLOW_PRIVATE`` is true).

    Raises:
        UnsafeURL: the URL breaks a rule, its host does not resolve, or resolves to an address
            that is not public.
    """
    check_url(url)
    if settings.WEBHOOK_ALLOW_PRIVATE:
        return
    parts = urlsplit(url)
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise UnsafeURL(f"{parts.hostname} does not resolve: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global:
            raise UnsafeURL(f"{parts.hostname} resolves to {address}, which is not public.")
