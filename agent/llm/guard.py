"""Where an LLM endpoint may send a turn, and which secret it may send with it.

An endpoint row (admin: Agent > Endpoints) names a base URL and the environment variable that
holds its API key; the key goes out as ``Authorization: Bearer ...`` (or ``x-api-key``) with the
visitor's last messages, and up to 2,000 characters of the answer are kept in the call log. So
a row could send any secret of the process to any server, or make the app POST to an internal
host and show the answer in the admin (issue 13). The settings bound both:

- ``LLM_KEY_VARIABLES``: the only variables a key may come from (default ``LLM_API_KEY``).
- ``LLM_ALLOWED_HOSTS``: the only hosts a base URL may name (default: ``LLM_BASE_URL``'s).
  A base URL must be http(s), with no user name, query or fragment (``#`` or ``?`` would cut
  the ``/chat/completions`` path the client appends).

``Endpoint.clean`` refuses a row that breaks them, so the admin form does, and the client
checks again before each call (``agent.llm.client``), so a row written past the form (SQL, a
fixture) makes no request at all.
"""

import functools
from urllib.parse import urlsplit

from django.conf import settings


class EndpointRefused(ValueError):
    """An endpoint's base URL or key variable is not allowed by the settings; the message
    says why, for the admin form and the call log."""


def check_key_variable(name: str) -> None:
    """Refuse a key variable outside ``LLM_KEY_VARIABLES``.

    Args:
        name: the variable's name; "" (no key) is always allowed.
    Raises:
        EndpointRefused: the name is not in the allow-list.
    """
    if name and name not in settings.LLM_KEY_VARIABLES:
        allowed = ", ".join(settings.LLM_KEY_VARIABLES) or "none"
        raise EndpointRefused(
            f"{name} is not an LLM key variable. Allowed (LLM_KEY_VARIABLES setting): {allowed}."
        )


def check_base_url(url: str) -> None:
    """Refuse a base URL that is not plain http(s) to a host of ``LLM_ALLOWED_HOSTS``.

    Args:
        url: the endpoint's base URL, e.g. ``http://gpu-host:8000/v1``.
    Raises:
        EndpointRefused: another scheme, a user name or password, a query or fragment (even an
            empty one: a bare ``?`` or ``#``), a bad port, or a host not in the allow-list.
    """
    _check_base_url(url, tuple(settings.LLM_ALLOWED_HOSTS))


# The check is pure in (url, allowed hosts), so the URLs it accepted are kept (a refusal is an
# exception, which the cache never keeps): the client asks before every call (issue 16).
@functools.lru_cache(maxsize=256)
def _check_base_url(url: str, allowed_hosts: tuple[str, ...]) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise EndpointRefused("Not a URL.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointRefused("The base URL must be an http:// or https:// URL.")
    if "?" in url or "#" in url or "@" in parts.netloc:
        raise EndpointRefused("The base URL may not have a query, a fragment or a user name.")
    if parts.hostname not in allowed_hosts:
        allowed = ", ".join(allowed_hosts)
        raise EndpointRefused(
            f"{parts.hostname} is not an LLM host. Allowed (LLM_ALLOWED_HOSTS setting): {allowed}."
        )
