"""Frames refused cheaply by the real server: ``manage.py runserver`` (daphne, autobahn) in a
subprocess against the test database, spoken to byte by byte over a raw socket.

daphne reads DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE and _FRAME_SIZE from the settings (32 KiB): a
frame that announces more is refused from its header, before its payload is read. autobahn, under
daphne, then drops the TCP connection (its ``failByDrop`` default) rather than send a close frame
with 1009: the client sees a reset, a browser close code 1006. Invalid UTF-8 (1007) likewise.
"""

import base64
import json
import os
import socket
import struct
import time

import httpx
import pytest
from django.conf import settings

from agent.models import Message
from tests.servers import AppServer, app_env, free_port

pytestmark = pytest.mark.django_db(transaction=True)

TEXT, BINARY, CONTINUATION = 0x1, 0x2, 0x0


@pytest.fixture(scope="module")
def server(django_db_setup, tmp_path_factory):
    """The app under daphne on a free loopback port, with the settings' frame size limits."""
    app = AppServer(free_port(), app_env(), tmp_path_factory.mktemp("daphne") / "daphne.log")
    app.start()
    yield app
    app.stop()


class RawSocket:
    """A websocket client written out by hand, so a test can send what no library would."""

    def __init__(self, server: AppServer):
        token = httpx.post(
            server.url + "/chat/session", json={"token": None}, headers={"Origin": server.url}
        ).json()["token"]
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /ws/chat/?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: {server.url}\r\n\r\n".encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert self.receive_json()["type"] == "history"

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True, announce=None) -> None:
        """Send one masked frame; ``announce`` claims another payload length in its header."""
        length = len(payload) if announce is None else announce
        header = bytes([(0x80 if fin else 0) | opcode])
        if length < 126:
            header += bytes([0x80 | length])
        elif length < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", length)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", length)
        mask = os.urandom(4)
        self.sock.sendall(
            header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        )

    def _read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed without a close frame")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def receive(self) -> tuple[int, bytes]:
        """The next frame from the server (unmasked): (opcode, payload)."""
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        return first & 0x0F, self._read(length)

    def receive_json(self) -> dict:
        opcode, payload = self.receive()
        assert opcode == TEXT, (opcode, payload)
        return json.loads(payload)

    def dropped(self) -> bool:
        """True when the server ends the connection (a reset, or an end of stream) before it
        sends anything else, a close frame included."""
        try:
            opcode, payload = self.receive()
        except (ConnectionResetError, ConnectionError):
            return True
        raise AssertionError(f"got a frame instead: {opcode}, {payload[:80]!r}")

    def say(self, text: str) -> dict:
        """Send a visitor message; return its echo once the turn is over (``typing: false``),
        so that no write of the server's is left when the test empties the tables."""
        self.send_frame(TEXT, json.dumps({"type": "message", "text": text}).encode())
        echo = self.receive_json()
        while self.receive_json() != {"type": "typing", "active": False}:
            pass
        return echo

    def close(self) -> None:
        self.sock.close()


def answered(server: AppServer) -> bool:
    """Another visitor connects, sends a message and gets it back stored: the server serves."""
    visitor = RawSocket(server)
    try:
        echo = visitor.say("Are you there?")
        return echo["role"] == "user" and echo["text"] == "Are you there?"
    finally:
        visitor.close()


def test_a_frame_announcing_more_than_the_limit_is_refused_from_its_header(server):
    client = RawSocket(server)
    # 1 MiB announced, 100 bytes sent: the server hangs up without waiting for the rest.
    client.send_frame(TEXT, b"x" * 100, announce=1024 * 1024)
    assert client.dropped()
    client.close()
    assert answered(server)
    assert not Message.objects.filter(text__startswith="xxx").exists()


def test_a_message_over_the_limit_in_small_fragments_is_refused(server):
    client = RawSocket(server)
    part = b" " * (settings.DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE // 2)
    client.send_frame(TEXT, part, fin=False)
    client.send_frame(CONTINUATION, part, fin=False)  # exactly the limit so far
    client.send_frame(CONTINUATION, b" ")
    assert client.dropped()
    client.close()
    assert answered(server)


def test_a_frame_of_the_largest_valid_message_is_read(server):
    client = RawSocket(server)
    text = "\U0001f600" * 2000
    frame = json.dumps({"type": "message", "text": text, "id": "\U0001f600" * 64})
    assert len(frame) > 24_000  # json.dumps escapes each emoji as a 12-byte surrogate pair
    client.send_frame(TEXT, frame.encode())
    echo = client.receive_json()
    assert echo["role"] == "user" and echo["text"] == text
    while client.receive_json() != {"type": "typing", "active": False}:
        pass  # the turn is over
    client.close()


def test_invalid_utf8_drops_the_connection(server):
    client = RawSocket(server)
    client.send_frame(TEXT, b'{"type": "message", "text": "\xff\xfe"}')
    assert client.dropped()
    client.close()
    assert answered(server)


@pytest.mark.parametrize(
    ("opcode", "payload", "code"),
    [
        (BINARY, b'{"type": "message", "text": "hi"}', "binary_frame"),
        (TEXT, b"[" * 10_000 + b"]" * 10_000, "bad_json"),
        (TEXT, b'{"type": "message", "text": "' + b"y" * 2001 + b'"}', "text_too_long"),
    ],
)
def test_malformed_frames_get_an_error_frame_and_the_socket_stays_open(
    server, opcode, payload, code
):
    client = RawSocket(server)
    client.send_frame(opcode, payload)
    error = client.receive_json()
    assert error["type"] == "error" and error["code"] == code
    assert client.say("still here")["text"] == "still here"
    client.close()


def test_clients_sending_their_headers_a_byte_at_a_time_do_not_hold_up_others(server):
    """Twisted reads whatever arrives and waits for more without blocking anyone: slow
    clients cost a socket each (until its idle timeout, 60 s without a byte) and nothing else.
    In production nginx's client_header_timeout cuts them first."""
    slow = []
    for _ in range(50):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(b"GET /ws/chat/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        slow.append(sock)
    try:
        for _ in range(3):
            for sock in slow:
                sock.sendall(b"z")
            assert httpx.get(server.url + "/", timeout=10).status_code == 200
            time.sleep(0.2)
        assert answered(server)
    finally:
        for sock in slow:
            sock.close()
