"""The LLM client's connections: reused across turns, closed when a call is cancelled, never
redirected, TLS verified; against loopback servers (``tests/llm/loopback.py``). The self-signed
certificate is made with ``cryptography`` (installed with daphne's TLS support)."""

import asyncio
import json
import ssl
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.llm import client as client_module
from agent.llm.client import LLMClient, LLMError, Server
from tests.llm.loopback import LoopbackLLM

BODY = {
    "model": "m",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 8,
    "temperature": 0.0,
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "pricing", "schema": {"type": "object"}},
    },
}
SSE = {"content-type": "text/event-stream"}


def frame(content: str) -> bytes:
    chunk = {"choices": [{"index": 0, "delta": {"content": content}}]}
    return f"data: {json.dumps(chunk)}\n\n".encode()


def streamed(content: str) -> httpx.Response:
    """A streamed answer, sent chunked one event a write as vLLM does."""
    return httpx.Response(200, headers=SSE, content=frame(content) + b"data: [DONE]\n\n")


async def test_a_pool_of_many_calls_is_reused_by_the_next_turns_not_reopened():
    # 150 calls in flight at once, three times: with keep-alive capped at 100 connections, 50
    # were closed after each round and opened anew on the next (issue 16).
    calls = 150
    rounds = [asyncio.Barrier(calls) for _ in range(3)]

    async def handler(request):
        async with asyncio.timeout(5):
            await rounds[(len(llm.requests) - 1) // calls].wait()
        return streamed('{"ok": true}')

    async with LoopbackLLM(handler) as llm:
        server = llm.at(Server("http://llm.test/v1", max_in_flight=calls))
        client = LLMClient()
        try:
            for _ in rounds:
                answers = await asyncio.gather(
                    *(client.complete_json(server, BODY, timeout=5) for _ in range(calls))
                )
                assert {json.dumps(data) for data, _ in answers} == {'{"ok": true}'}
        finally:
            await client.aclose()
    assert len(llm.requests) == 3 * calls
    assert len(llm.peers) == calls


async def test_a_call_cancelled_mid_stream_hangs_up_and_its_connection_is_not_reused():
    first_frame_sent, hung_up = asyncio.Event(), asyncio.Event()

    async def endless():
        try:
            yield frame('{"ok": ')
            first_frame_sent.set()
            await asyncio.Event().wait()  # never ends by itself
        finally:
            hung_up.set()

    def handler(request):
        if len(llm.requests) == 1:
            return httpx.Response(200, headers=SSE, content=endless())
        return streamed('{"ok": true}')

    async with LoopbackLLM(handler) as llm:
        server = llm.at(Server("http://llm.test/v1"))
        client = LLMClient()
        try:
            call = asyncio.create_task(client.complete_json(server, BODY, timeout=5))
            await first_frame_sent.wait()
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            async with asyncio.timeout(2):
                await hung_up.wait()  # the server saw the client go away
            data, _ = await client.complete_json(server, BODY, timeout=5)
        finally:
            await client.aclose()
    assert data == {"ok": True}
    assert len(llm.peers) == 2  # the cut stream's connection was not handed to the next call


async def test_a_call_is_sent_unstreamed_and_one_cancelled_before_its_answer_hangs_up():
    # vLLM aborts a non-streamed request whose client disconnects (``with_cancellation``), so
    # the fan-out's early exit reaches the server without streaming (issue 16).
    asked, hung_up = asyncio.Event(), asyncio.Event()

    async def handler(request):
        if len(llm.requests) > 1:
            return httpx.Response(200, json={"choices": [{"message": {"content": '{"ok": 1}'}}]})
        asked.set()
        try:
            await asyncio.Event().wait()  # a generation that never ends by itself
        finally:
            hung_up.set()

    async with LoopbackLLM(handler) as llm:
        server = llm.at(Server("http://llm.test/v1"))
        client = LLMClient()
        try:
            call = asyncio.create_task(client.complete_json(server, BODY, timeout=5))
            await asyncio.wait_for(asked.wait(), 2)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            await asyncio.wait_for(hung_up.wait(), 2)  # the server saw the client go away
            data, _ = await client.complete_json(server, BODY, timeout=5)
        finally:
            await client.aclose()
    assert [json.loads(r.content)["stream"] for r in llm.requests] == [False, False]
    assert data == {"ok": 1}
    assert len(llm.peers) == 2  # the cancelled call's connection was not handed on


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_is_not_followed(status):
    def elsewhere(request):
        return streamed('{"ok": true}')

    async with LoopbackLLM(elsewhere) as other:

        def handler(request):
            return httpx.Response(
                status, headers={"Location": f"{other.base_url}/chat/completions"}
            )

        async with LoopbackLLM(handler) as llm:
            client = LLMClient()
            try:
                with pytest.raises(LLMError, match=f"HTTP {status}"):
                    await client.complete_json(llm.at(Server("http://llm.test/v1")), BODY, 5)
            finally:
                await client.aclose()
    assert len(llm.requests) == 1
    assert other.requests == []  # the key never went to where the redirect pointed


async def test_a_server_that_does_not_answer_in_time_is_a_timeout():
    async def handler(request):
        await asyncio.Event().wait()

    async with LoopbackLLM(handler) as llm:
        client = LLMClient()
        try:
            with pytest.raises(LLMError) as caught:
                await client.complete_json(llm.at(Server("http://llm.test/v1")), BODY, 0.2)
        finally:
            await client.aclose()
    assert caught.value.timeout and not caught.value.permanent


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: ``(certificate PEM, key PEM)`` paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return folder / "cert.pem", folder / "key.pem"


def tls_server(certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


async def test_an_https_server_whose_certificate_is_not_trusted_gets_no_request(certificate):
    async with LoopbackLLM(
        lambda request: streamed('{"ok": true}'), tls=tls_server(certificate)
    ) as llm:
        client = LLMClient()
        try:
            with pytest.raises(LLMError, match="connection failed") as caught:
                await client.complete_json(llm.at(Server("https://llm.test/v1")), BODY, 5)
        finally:
            await client.aclose()
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert not caught.value.permanent
    assert llm.requests == []


async def test_an_https_server_with_a_trusted_certificate_is_called(certificate, monkeypatch):
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    monkeypatch.setattr(client_module, "_tls_context", lambda: trusting)
    async with LoopbackLLM(
        lambda request: streamed('{"ok": true}'), tls=tls_server(certificate)
    ) as llm:
        client = LLMClient()
        try:
            data, _ = await client.complete_json(llm.at(Server("https://llm.test/v1")), BODY, 5)
        finally:
            await client.aclose()
    assert data == {"ok": True}
    assert [str(r.url) for r in llm.requests] == [f"{llm.base_url}/chat/completions"]


def test_a_stopped_loops_client_is_closed_at_exit_without_unclosed_session_warnings():
    loop = asyncio.new_event_loop()
    try:

        async def open_one():
            client = client_module.get_client()
            return client, client._http()

        client, session = loop.run_until_complete(open_one())  # the loop stops, as daphne's
        assert not session.closed
        client_module._close_at_exit()
        assert session.closed and client._session is None
    finally:
        client_module._clients.pop(loop, None)
        loop.close()
