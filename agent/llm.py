"""The one seam for calls to the LLM server: OpenAI-compatible ``/chat/completions`` over httpx.

Every failure becomes ``LLMError``: ``permanent`` when retrying cannot help (a 4xx other than
429, an answer that is not a chat completion), transient otherwise (timeouts, connection
errors, 429, 5xx).
"""

import asyncio
import json
import logging
import weakref

import httpx
from django.conf import settings

logger = logging.getLogger(__name__)


class LLMError(Exception):
    """A chat-completions call failed; ``raw`` holds what the server sent, if anything."""

    def __init__(self, message: str, *, permanent: bool, raw: str = ""):
        super().__init__(message)
        self.permanent = permanent
        self.raw = raw


class LLMClient:
    """A shared ``httpx.AsyncClient`` for one OpenAI-compatible server.

    Args:
        base_url: e.g. ``http://gpu-host:8000/v1``; requests go to ``{base_url}/chat/completions``.
        api_key: sent as ``Authorization: Bearer <key>`` when not empty.
        timeout: seconds allowed for each call, connect to last byte.
        transport: an httpx transport, e.g. ``httpx.MockTransport`` in tests.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str = "",
        *,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )

    async def complete_json(self, body: dict) -> tuple[dict, str]:
        """POST a chat-completions request whose answer must be one JSON object.

        Args:
            body: the request body (``model``, ``messages``, ``response_format``, ...).
        Returns:
            ``(decoded object, raw content text)``.
        Raises:
            LLMError: the call failed, or the message content is not a JSON object.
        """
        try:
            response = await self.http.post("chat/completions", json=body)
        except httpx.TimeoutException as exc:
            raise LLMError(f"timed out: {type(exc).__name__}", permanent=False) from exc
        except httpx.HTTPError as exc:
            raise LLMError(f"connection failed: {exc!r}", permanent=False) from exc
        raw = response.text
        if response.status_code != 200:
            permanent = 400 <= response.status_code < 500 and response.status_code != 429
            raise LLMError(f"HTTP {response.status_code}", permanent=permanent, raw=raw[:2000])
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMError("not a chat completion", permanent=True, raw=raw[:2000]) from exc
        if not isinstance(content, str):
            raise LLMError("message content is not text", permanent=True, raw=raw[:2000])
        try:
            data = json.loads(content)
        except ValueError as exc:
            raise LLMError("content is not JSON", permanent=True, raw=content) from exc
        if not isinstance(data, dict):
            raise LLMError("content is not a JSON object", permanent=True, raw=content)
        return data, content

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()


_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict]" = weakref.WeakKeyDictionary()


def get_client() -> LLMClient:
    """The ``LLMClient`` shared by every turn on the running event loop, built from settings.

    One per loop (a connection pool cannot cross loops) and per ``(LLM_BASE_URL, LLM_API_KEY,
    LLM_TIMEOUT)``, so tests that override settings get a client of their own.
    """
    key = (settings.LLM_BASE_URL, settings.LLM_API_KEY, settings.LLM_TIMEOUT)
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    if key not in per_loop:
        per_loop[key] = LLMClient(key[0], key[1], timeout=key[2])
    return per_loop[key]


async def close_clients() -> None:
    """Close the clients of the running event loop (at shutdown, and after each test)."""
    for client in _clients.pop(asyncio.get_running_loop(), {}).values():
        await client.aclose()
