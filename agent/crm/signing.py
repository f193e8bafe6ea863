"""How deliveries are signed, as Stripe and GitHub sign theirs.

Header ``Chat-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
HMAC-SHA256(secret, ``f"{t}.".encode() + body``). A receiver recomputes it over the raw body,
compares in constant time, and refuses a ``t`` more than ``TOLERANCE`` seconds from its clock
(a replayed request). docs/webhooks.md has the 10-line receiver; deploy/webhook_receiver.py
is a runnable one.
"""

import hashlib
import hmac
import secrets

HEADER = "Chat-Signature"
TOLERANCE = 300  # seconds a receiver accepts between t and its clock (Stripe's default)


def new_secret() -> str:
    """A fresh endpoint secret: ``whsec_`` and 32 random bytes in URL-safe base64."""
    return "whsec_" + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Chat-Signature`` header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: int = TOLERANCE) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` and its timestamp is within
    ``tolerance`` seconds of ``now`` (unix seconds). Never raises on a malformed header."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body).partition("v1=")[2]
    return hmac.compare_digest(expected, parts.get("v1", ""))
