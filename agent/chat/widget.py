"""The chat widget on other sites: allowed origins, conversation tokens, the websocket origin check.

The widget (``static/chat/widget.js``) may run on the agency's own site, on another origin than
the app. Browsers there may block third-party cookies, so the widget does not rely on the
session cookie: ``POST /chat/session`` gives it a **conversation token** that it keeps in
localStorage and sends when it connects (``/ws/chat/?token=...``).

The token is ``django.core.signing`` output: the conversation's UUID and the time it was issued,
signed with ``SECRET_KEY`` (salted for this use only). What it can do:

- A forged or altered token fails the signature check and opens nothing.
- A token names one conversation, fixed when it was issued: whoever holds it can read that
  conversation and write to it, from any client (it is a bearer credential), and nothing else.
- It expires ``CHAT_TOKEN_MAX_AGE`` seconds after it was issued; presenting it again returns the
  same token, so a stolen one is never renewed. The widget then starts a new conversation.
- Changing ``SECRET_KEY`` revokes every token at once.

The ``Origin`` checks only stop other websites' pages, in a browser, from using the chat; a
client outside a browser can send any ``Origin`` and is limited by the token alone.
"""

from urllib.parse import urlsplit

from channels.security.websocket import OriginValidator
from django.conf import settings
from django.core import signing
from django.http.request import split_domain_port, validate_host

TOKEN_SALT = "agent.embed.conversation-token"


def origin_allowed(origin: str | None) -> bool:
    """Whether a page at ``origin`` (an ``Origin`` header value) may use the chat.

    Allowed: one of the app's own origins (``own_origin``), or exactly one of
    ``CHAT_ALLOWED_ORIGINS``. None, ``"null"`` and anything else are refused.
    """
    if not origin:
        return False
    return own_origin(origin) or origin.lower().rstrip("/") in settings.CHAT_ALLOWED_ORIGINS


def own_origin(origin: str | None) -> bool:
    """Whether ``origin`` (an ``Origin`` header value) is one of the app's own pages: an
    http(s) origin whose host is in ``ALLOWED_HOSTS``, any port, as channels'
    ``AllowedHostsOriginValidator``. The staff socket takes only these, never the widget's
    ``CHAT_ALLOWED_ORIGINS``: a script on an embedding page must not ride a staff cookie."""
    try:
        parts = urlsplit((origin or "").lower())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    domain, _port = split_domain_port(parts.netloc)
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


def issue_token(conversation_id) -> str:
    """A new signed token for a conversation (its UUID or UUID string), stamped with now."""
    return signing.dumps({"c": str(conversation_id)}, salt=TOKEN_SALT)


def read_token(token: str | None) -> str | None:
    """The conversation UUID string a token names, or None when the token is missing, not
    signed by this server (forged, altered, another salt) or older than CHAT_TOKEN_MAX_AGE."""
    if not isinstance(token, str) or not token or len(token) > 500:
        return None
    try:
        payload = signing.loads(token, salt=TOKEN_SALT, max_age=settings.CHAT_TOKEN_MAX_AGE)
    except signing.BadSignature:  # SignatureExpired is a BadSignature too
        return None
    conversation_id = payload.get("c") if isinstance(payload, dict) else None
    return conversation_id if isinstance(conversation_id, str) else None


class ChatOriginValidator(OriginValidator):
    """ASGI middleware refusing a websocket upgrade whose ``Origin`` fails ``origin_allowed``.

    Unlike channels' ``AllowedHostsOriginValidator`` it reads the settings on every connection,
    and it adds ``CHAT_ALLOWED_ORIGINS``. A refused upgrade gets HTTP 403.
    """

    def __init__(self, application):
        super().__init__(application, allowed_origins=[])

    def valid_origin(self, parsed_origin) -> bool:
        return parsed_origin is not None and origin_allowed(parsed_origin.geturl())
