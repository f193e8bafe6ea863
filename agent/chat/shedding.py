"""A saturated worker refuses new chat sockets with HTTP 503, so nginx opens them on another.

``agent.chat.capacity.saturated`` says when (``CHAT_SHED_WAITING`` turns waiting for a slot);
the chat consumer then answers the handshake with ``refuse``, before it accepts or reads
anything, and counts it in ``chat_connections_shed_total``. nginx (``deploy/nginx.conf``,
``proxy_next_upstream ... http_503`` on ``/ws/``) tries the next worker, and leaves the
refusing one out of new connections for ``fail_timeout`` (5 s); the chats it holds go on.
When every worker refuses, the visitor's browser gets the 503 and the widget tries again with
its backoff. 503 and not 403: channels' ``close()`` before ``accept()`` is a 403 in daphne,
which a bad origin or a missing session also gets, and retrying those on another worker would
be pointless, so nginx does not.

The status is sent with ASGI's "websocket denial response" extension
(``websocket.http.response.start``). daphne 4 does not implement it (a ``websocket.close``
before accept is its only refusal, always 403), so ``install_daphne_denial``, called from
``realestate/asgi.py``, teaches its websocket protocol that message: the handshake fails with
the status given, through autobahn's ``ConnectionDeny``, as daphne's own 403 does.
"""

import logging

logger = logging.getLogger(__name__)

STATUS = 503
REASON = "Service Unavailable"


async def refuse(send) -> None:
    """Refuse a websocket handshake that has not been accepted: HTTP 503, no body (daphne,
    through autobahn, sends the status line and no headers of ours).

    Args:
        send: the ASGI send callable of the connection (a consumer's ``base_send``).
    """
    await send({"type": "websocket.http.response.start", "status": STATUS, "headers": []})
    await send({"type": "websocket.http.response.body", "body": b""})


def install_daphne_denial() -> bool:
    """Let daphne's websocket protocol answer ``websocket.http.response.start`` before accept
    with that HTTP status (the body message is dropped: autobahn's refusal has none).
    Idempotent.

    Returns:
        True when installed (or already), False when daphne is not importable.
    """
    try:
        from autobahn.websocket.types import ConnectionDeny
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:
        return False
    if getattr(WebSocketProtocol, "_denial_response", False):
        return True
    handle_reply = WebSocketProtocol.handle_reply

    def handle_reply_with_denial(self, message):
        kind = message.get("type")
        if kind == "websocket.http.response.start":
            if self.state != self.STATE_CONNECTING or not hasattr(self, "handshake_deferred"):
                raise ValueError("A denial response after the handshake")
            status = int(message["status"])
            self.handshake_deferred.errback(
                ConnectionDeny(code=status, reason=REASON if status == STATUS else "Refused")
            )
            del self.handshake_deferred
            self.server.protocol_disconnected(self)
            logger.debug("WebSocket %s refused with %s", self.client_addr, status)
            return None
        if kind == "websocket.http.response.body":
            return None
        return handle_reply(self, message)

    WebSocketProtocol.handle_reply = handle_reply_with_denial
    WebSocketProtocol._denial_response = True
    return True
