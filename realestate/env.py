"""Readers of environment variables for ``realestate.settings``.

Each ``env_*`` function reads one variable and returns its parsed value, or the default when
the variable is unset or empty. A bad value raises ``ImproperlyConfigured`` whose message names
the variable, so a misconfigured process fails at start-up instead of at the first request.
"""

import ipaddress
import os
import re
from datetime import time
from urllib.parse import urlsplit

import limits
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import validate_email


def env_str(name: str, default: str = "") -> str:
    """Return the variable ``name`` without surrounding white space; unset or empty gives
    ``default``."""
    return os.environ.get(name, "").strip() or default


def env_bool(name: str, default: bool) -> bool:
    """Parse a yes/no variable: true/false, yes/no, on/off or 1/0, any case."""
    raw = env_str(name)
    if not raw:
        return default
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_float(name: str, default: float, *, minimum: float) -> float:
    """Parse a number that must be at least ``minimum``.

    Raises:
        ImproperlyConfigured: not a number, or below ``minimum``.
    """
    return _env_number(name, default, minimum, float, "a number")


def env_int(name: str, default: int, *, minimum: int) -> int:
    """Parse a whole number that must be at least ``minimum``.

    Raises:
        ImproperlyConfigured: not a whole number (``7.9`` is refused, not rounded down), or
            below ``minimum``.
    """
    return _env_number(name, default, minimum, int, "a whole number")


def _env_number(name: str, default, minimum, parse, what: str):
    raw = env_str(name)
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be {what}, not {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {raw!r}")
    return value


def env_url(name: str, default: str) -> str:
    """Parse an http(s) URL without a trailing slash."""
    raw = env_str(name, default)
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ImproperlyConfigured(f"{name} must be an http:// or https:// URL, not {raw!r}")
    return raw.rstrip("/")


def env_hours(name: str, default: str) -> tuple[time, time]:
    """Parse ``HH:MM-HH:MM`` into an (opening, closing) pair of local times."""
    raw = env_str(name, default)
    try:
        start, end = (time.fromisoformat(part.strip()) for part in raw.split("-"))
    except ValueError:
        raise ImproperlyConfigured(f"{name} must look like 09:00-17:00, not {raw!r}") from None
    if start >= end:
        raise ImproperlyConfigured(f"{name} must open before it closes, not {raw!r}")
    return start, end


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def env_weekdays(name: str, default: str) -> frozenset[int]:
    """Parse a comma-separated list of weekday names (mon..sun) into ``date.weekday()`` numbers."""
    raw = env_str(name, default)
    days = [day.strip().lower()[:3] for day in raw.split(",") if day.strip()]
    unknown = [day for day in days if day not in WEEKDAYS]
    if not days or unknown:
        raise ImproperlyConfigured(f"{name} must list weekdays like mon,tue,wed, not {raw!r}")
    return frozenset(WEEKDAYS.index(day) for day in days)


def env_emails(name: str, default: str = "") -> list[str]:
    """Parse a comma-separated list of email addresses; unset gives an empty list."""
    raw = env_str(name, default)
    addresses = [part.strip() for part in raw.split(",") if part.strip()]
    for address in addresses:
        try:
            validate_email(address)
        except ValidationError:
            raise ImproperlyConfigured(
                f"{name} must be email addresses separated by commas, not {raw!r}"
            ) from None
    return addresses


def env_origins(name: str) -> list[str]:
    """Parse a comma-separated list of web origins (``https://host[:port]``, no path) into
    their lower-case ``scheme://host[:port]`` form, as browsers send them in the ``Origin``
    header (no default port); unset gives an empty list."""
    origins = []
    for raw in filter(None, (item.strip() for item in env_str(name).split(","))):
        parts = urlsplit(raw.lower())
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            parts = None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or "@" in parts.netloc
        ):
            raise ImproperlyConfigured(
                f"{name} must list origins like https://www.agency.example, not {raw!r}"
            )
        default_port = {"http": ":80", "https": ":443"}[parts.scheme]
        origins.append(f"{parts.scheme}://{parts.netloc.removesuffix(default_port)}")
    return origins


def env_networks(name: str, default: str) -> tuple:
    """Parse a comma-separated list of IP addresses or networks (``10.0.0.0/8``, ``::1``)
    into a tuple of ``ipaddress`` networks; unset or empty gives ``default`` parsed."""
    raw = env_str(name, default)
    try:
        return tuple(
            ipaddress.ip_network(item.strip()) for item in raw.split(",") if item.strip()
        )
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"{name} must list IP addresses or networks like 10.0.0.0/8, not {raw!r}: {exc}"
        ) from None


def env_rate_limits(name: str, default: str) -> str:
    """Parse rate limits in the notation of the ``limits`` library: ``60/minute``, ``600 per
    minute``, ``8/10 seconds``, several separated by ``;`` (each must hold); ``off`` for none.

    Returns the value as given (``""`` for off), for ``limits.parse_many``.
    Raises:
        ImproperlyConfigured: it does not parse, or a limit allows nothing (``0/minute``).
    """
    raw = env_str(name, default)
    if raw.lower() == "off":
        return ""
    try:
        items = limits.parse_many(raw)
    except ValueError:
        items = []
    if not items or any(item.amount < 1 for item in items):
        raise ImproperlyConfigured(
            f"{name} must be rate limits like 60/minute (several separated by ;) or off, "
            f"not {raw!r}"
        )
    return raw


ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"  # an environment variable name, as the LLM endpoints store them


def env_names(name: str, default: str) -> tuple[str, ...]:
    """Parse a comma-separated list of environment variable names (``LLM_API_KEY,OTHER_KEY``:
    upper case, digits, underscores) into a tuple; unset or empty gives ``default`` parsed."""
    raw = env_str(name, default)
    names = tuple(item.strip() for item in raw.split(",") if item.strip())
    if any(re.fullmatch(ENV_NAME, item) is None for item in names):
        raise ImproperlyConfigured(
            f"{name} must list variable names like LLM_API_KEY,ANTHROPIC_API_KEY, not {raw!r}"
        )
    return names


def env_hosts(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """Parse a comma-separated list of host names or IP addresses (``gpu-host``, ``10.0.0.5``,
    ``[::1]``, no scheme, port or path) into a lower-case tuple, IPv6 without brackets, as
    ``urlsplit(url).hostname`` gives them; unset or empty gives ``default`` as it is."""
    raw = env_str(name)
    if not raw:
        return default
    hosts = []
    for item in filter(None, (part.strip().lower() for part in raw.split(","))):
        host = item.removeprefix("[").removesuffix("]")
        if not re.fullmatch(r"[a-z0-9._:-]+", host) or (":" in host and not item.startswith("[")):
            raise ImproperlyConfigured(
                f"{name} must list host names like gpu-host,api.anthropic.com, not {raw!r}"
            )
        hosts.append(host)
    return tuple(hosts)
