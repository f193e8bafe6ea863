"""The LLM client's adapters: request shapes and stream parsing, against a loopback server
whose answers each test writes (``tests/llm/loopback.py``)."""

import json
from dataclasses import replace
from datetime import date

import httpx
import pytest

from agent.llm.classifiers import CLASSIFIERS, PRICING, SCHEDULING, history_json
from agent.llm.client import (
    LLMClient,
    LLMError,
    Server,
    anthropic_body,
    retry_after_seconds,
    to_json,
)
from tests.llm.loopback import LoopbackLLM

TODAY = date(2026, 11, 22)
HISTORY = [
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Which listing do you mean?"},
    {"role": "user", "content": "How much is listing 654321?"},
]
SSE = {"content-type": "text/event-stream"}
ANTHROPIC = Server("https://anthropic.test/v1", "anthropic", "TEST_ANTHROPIC_KEY")


def anthropic_events(*partial_json: str, stop: bool = True) -> httpx.Response:
    """A streamed Messages API answer whose tool input arrives in ``partial_json`` pieces."""
    events = [
        ("message_start", {"type": "message_start", "message": {"id": "msg_1", "content": []}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": "toolu_1", "name": "pricing", "input": {}}}),
        ("ping", {"type": "ping"}),
        *(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
            "type": "input_json_delta", "partial_json": part}}) for part in partial_json),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}}),
    ]
    if stop:
        events.append(("message_stop", {"type": "message_stop"}))
    body = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
    return httpx.Response(200, text=body, headers=SSE)


async def call(server: Server, body: dict, handler) -> tuple[dict, str]:
    """One call to ``server``'s style and key, sent to a loopback server answering with
    ``handler``."""
    async with LoopbackLLM(handler) as llm:
        client = LLMClient()
        try:
            return await client.complete_json(llm.at(server), body, timeout=2)
        finally:
            await client.aclose()


async def test_the_anthropic_adapter_sends_the_system_apart_and_the_schema_as_a_forced_tool(
    monkeypatch,
):
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-test")
    seen = []

    def handler(request):
        seen.append(request)
        return anthropic_events('{"asks_price": tr', 'ue, "listing_id": "654321"}')

    body = PRICING.request_body("claude-haiku", HISTORY, TODAY, layout="shared_prefix")
    data, raw = await call(ANTHROPIC, body, handler)

    assert data == {"asks_price": True, "listing_id": "654321"}
    assert raw == '{"asks_price": true, "listing_id": "654321"}'
    (request,) = seen
    assert request.url.path == "/v1/messages" and request.url.host == "127.0.0.1"
    assert request.headers["x-api-key"] == "sk-test"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers
    sent = json.loads(request.content)
    assert sent["model"] == "claude-haiku" and sent["stream"] is True
    assert sent["max_tokens"] == 64 and sent["temperature"] == 0.0
    # Both system messages of the shared-prefix layout go to "system", in order.
    assert sent["system"].startswith("You classify messages for a real-estate agency's chat.")
    assert sent["system"].endswith(PRICING.instructions)
    # The conversation starts with the user and keeps its order.
    assert sent["messages"] == HISTORY[1:]
    (tool,) = sent["tools"]
    assert (tool["name"], tool["input_schema"]) == ("pricing", PRICING.schema)
    assert sent["tool_choice"] == {"type": "tool", "name": "pricing"}
    assert "response_format" not in sent


def test_consecutive_messages_of_one_role_are_merged_for_anthropic():
    body = SCHEDULING.request_body("m", [{"role": "user", "content": "Hi"},
                                         {"role": "user", "content": "Call me tomorrow"}], TODAY)
    assert anthropic_body(body)["messages"] == [
        {"role": "user", "content": "Hi\n\nCall me tomorrow"}
    ]


@pytest.mark.parametrize(
    ("response", "error", "permanent"),
    [
        (anthropic_events('{"asks_price": true', stop=False), "stream ended before", False),
        (httpx.Response(200, text="data: <html>\n\n", headers=SSE),
         "not a Messages API stream", True),
        (httpx.Response(200, text='event: error\ndata: {"type": "error", "error": {"type": '
                        '"overloaded_error"}}\n\n', headers=SSE),
         "error in stream", False),
        (httpx.Response(529, json={"type": "error"}), "HTTP 529", False),
        (httpx.Response(400, json={"type": "error"}), "HTTP 400", True),
    ],
)
async def test_anthropic_failures_are_llm_errors(response, error, permanent):
    body = PRICING.request_body("claude-haiku", HISTORY, TODAY)
    with pytest.raises(LLMError) as caught:
        await call(ANTHROPIC, body, lambda request: response)
    assert error in str(caught.value)
    assert caught.value.permanent is permanent


async def test_an_openai_stream_that_ends_without_done_is_a_transient_error():
    frame = {"choices": [{"index": 0, "delta": {"content": '{"asks_price": '}}]}
    response = httpx.Response(200, text=f"data: {json.dumps(frame)}\n\n",
                              headers=SSE)
    with pytest.raises(LLMError) as caught:
        await call(Server("http://llm.test/v1"), PRICING.request_body("m", HISTORY, TODAY),
                   lambda request: response)
    assert "ended before [DONE]" in str(caught.value)
    assert caught.value.permanent is False
    assert caught.value.raw == '{"asks_price": '


@pytest.mark.parametrize(
    ("status", "permanent"), [(400, True), (404, True), (429, False), (500, False), (503, False)]
)
async def test_client_errors_are_permanent_but_429_and_5xx_are_not(status, permanent):
    with pytest.raises(LLMError) as caught:
        await call(Server("http://llm.test/v1"), PRICING.request_body("m", HISTORY, TODAY),
                   lambda request: httpx.Response(status, headers={"Retry-After": "2"}))
    assert caught.value.permanent is permanent
    assert caught.value.retry_after == 2.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [(None, None), ("3", 3.0), ("0.5", 0.5), ("-1", 0.0), ("soon", None),
     ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(header, seconds):
    assert retry_after_seconds(header) == seconds


# --- request bodies serialized from pieces (issue 16) -----------------------------------------

ODD_HISTORY = [
    {"role": "user", "content": 'Quote " backslash \\ newline\n tab\t and a line sep \u2028'},
    {"role": "assistant", "content": "¿Cuál? 654321, ñandú, 日本語 and an emoji 🏠"},
    {"role": "user", "content": "How much is listing 654321?"},
]


@pytest.mark.parametrize("layout", ["system_first", "shared_prefix"])
@pytest.mark.parametrize("history", [[], HISTORY, ODD_HISTORY], ids=["none", "plain", "odd"])
@pytest.mark.parametrize("classifier", CLASSIFIERS, ids=lambda c: c.name)
def test_a_body_made_from_pieces_is_the_same_bytes_as_the_whole_body_serialized(
    classifier, history, layout
):
    fresh = replace(classifier)  # an empty cache of pieces
    for today in (TODAY, date(2026, 11, 23), TODAY):  # the third from the cache
        whole = to_json({**fresh.request_body("m", history, today, layout), "stream": False})
        assert fresh.request_json("m", history_json(history), today, layout) == whole


def test_an_edited_classifier_sends_its_own_prompt_not_the_pieces_of_the_one_before():
    before = replace(PRICING)
    before.request_json("m", history_json(HISTORY), TODAY)
    after = replace(before, instructions="Say yes.", version=2)
    sent = json.loads(after.request_json("m", history_json(HISTORY), TODAY))
    assert sent["messages"] == [{"role": "system", "content": "Say yes."}, *HISTORY]


# --- stream parsing ---------------------------------------------------------------------------


async def pieces(body: bytes, size: int):
    for start in range(0, len(body), size):
        yield body[start:start + size]


@pytest.mark.parametrize("size", [1, 3, 7, 4096])
async def test_a_stream_cut_anywhere_with_crlf_lines_and_no_last_newline_is_read_whole(size):
    frames = [{"choices": [{"index": 0, "delta": {"role": "assistant"}}]},
              *({"choices": [{"index": 0, "delta": {"content": part}}]}
                for part in ('{"asks_price": ', "true, ", '"listing_id": "654321"}')),
              {"choices": []}]
    body = b"".join(b": comment\r\nevent: x\r\ndata: " + json.dumps(f).encode() + b"\r\n\r\n"
                    for f in frames) + b"data: [DONE]"

    def handler(request):
        return httpx.Response(200, content=pieces(body, size), headers=SSE)

    data, raw = await call(Server("http://llm.test/v1"), PRICING.request_body("m", HISTORY, TODAY),
                           handler)
    assert data == {"asks_price": True, "listing_id": "654321"}
