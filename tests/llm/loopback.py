"""A loopback HTTP server whose answers a test writes, for the LLM client's tests.

``LoopbackLLM(handler)`` listens on 127.0.0.1 in the test's own event loop. Each request is
handed to ``handler`` as an ``httpx.Request`` (method, full URL, headers, body), and the
``httpx.Response`` it returns (or an awaitable of one) is what goes back on the wire: status,
headers, body. A server-sent-events body goes out as vLLM sends it, chunked, one write per
event; a body given as an async iterator of bytes goes out chunked as it comes. A handler that
raises makes the server drop the connection without an answer, as a refused or reset
connection does. httpx serves here only as a plain description of
requests and answers; the client under test talks real HTTP/1.1 over TCP.
"""

import inspect
import ssl
from dataclasses import replace

import aiohttp.web
import httpx

from agent.llm.client import Server

# Headers of the answer that the server itself writes from the body it sends.
FRAMING = {"content-length", "transfer-encoding", "content-encoding", "connection"}


class LoopbackLLM:
    """The server; use ``async with LoopbackLLM(handler) as llm`` and ``llm.at(server)``.

    ``requests`` lists what it received, in order; ``peers`` the client addresses (host, port)
    of the connections they came on, so a reused connection shows once. A handler (or a body
    being sent) still running when the client hangs up is cancelled.
    """

    def __init__(self, handler, tls: ssl.SSLContext | None = None):
        self.handler = handler
        self.tls = tls
        self.requests: list[httpx.Request] = []
        self.peers: set[tuple[str, int]] = set()
        self.port = 0
        self._runner: aiohttp.web.BaseRunner | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` (``https://`` when made with ``tls``, a server-side
        context)."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/v1"

    def at(self, server: Server) -> Server:
        """``server`` (style, key variable, slots) with its base URL pointed at this one."""
        return replace(server, base_url=self.base_url)

    async def __aenter__(self) -> "LoopbackLLM":
        web_server = aiohttp.web.Server(self._handle, handler_cancellation=True)
        self._runner = aiohttp.web.ServerRunner(web_server, shutdown_timeout=0.5)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.tls)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self._runner.cleanup()

    async def _handle(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        seen = httpx.Request(
            request.method,
            str(request.url),
            headers=list(request.headers.items()),
            content=await request.read(),
        )
        self.requests.append(seen)
        self.peers.add(request.transport.get_extra_info("peername")[:2])
        try:
            answer = self.handler(seen)
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception:  # the test asks for a dropped connection
            request.transport.abort()
            return aiohttp.web.Response(status=500)  # never sent: the connection is gone
        headers = [(k, v) for k, v in answer.headers.multi_items() if k.lower() not in FRAMING]
        try:
            body = answer.content
        except httpx.ResponseNotRead:  # an async body, sent as it comes
            pieces = answer.stream
        else:
            if not answer.headers.get("content-type", "").startswith("text/event-stream"):
                return aiohttp.web.Response(status=answer.status_code, body=body, headers=headers)
            pieces = _listed([event + b"\n\n" for event in body.split(b"\n\n") if event])
        response = aiohttp.web.StreamResponse(status=answer.status_code, headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        async for piece in pieces:
            await response.write(piece)
        await response.write_eof()
        return response


async def _listed(pieces: list[bytes]):
    for piece in pieces:
        yield piece
