"""The fan-out: parallel calls, one deadline per turn, retries, slots, and the early exit.

Request shapes and retry rules run against a loopback server whose answers each test writes
(``tests/llm/loopback.py``); streams cut short, hang-ups seen by the server and two servers
against the stand-in on loopback.
"""

import asyncio
import json
import logging
import time
from dataclasses import replace
from datetime import date

import httpx
import pytest

from agent.llm.classifiers import (
    LISTING_QUESTION,
    PRICING,
    SCHEDULING,
    ListingQuestion,
    Pricing,
    Scheduling,
)
from agent.llm.client import RAW_LIMIT, READ_LIMIT, LLMClient, Server
from agent.llm.fanout import fan_out
from agent.llm.standin.server import StandinServer
from tests.llm.loopback import LoopbackLLM

TODAY = date(2026, 11, 22)
HISTORY = [{"role": "user", "content": "How much is listing 654321?"}]
SERVER = Server("http://llm.test/v1", max_in_flight=16)
# The tutorial's three classifiers: the engine does not care how many there are.
THREE = (PRICING, SCHEDULING, LISTING_QUESTION)
ON_SERVER = [replace(c, server=SERVER) for c in THREE]

ANSWERS = {
    "pricing": {"asks_price": True, "listing_id": "654321"},
    "scheduling": {"wants_call": False, "date": None, "time": None},
    "listing_question": {"is_listing_question": True},
}
NO = {
    "pricing": {"asks_price": False, "listing_id": None},
    "scheduling": {"wants_call": False, "date": None, "time": None},
    "listing_question": {"is_listing_question": False},
}


def sse(content: str, status: int = 200) -> httpx.Response:
    """A streamed chat completion saying ``content`` in two chunks, then [DONE]."""
    half = len(content) // 2
    frames = [{"choices": [{"index": 0, "delta": {"content": part}}]}
              for part in (content[:half], content[half:])]
    body = "".join(f"data: {json.dumps(f)}\n\n" for f in frames) + "data: [DONE]\n\n"
    return httpx.Response(status, text=body, headers={"content-type": "text/event-stream"})


def completion(content: str) -> httpx.Response:
    """A non-streamed chat completion, as a server that ignores ``stream`` sends."""
    return httpx.Response(
        200, json={"choices": [{"message": {"role": "assistant", "content": content}}]}
    )


def schema_name(request: httpx.Request) -> str:
    return json.loads(request.content)["response_format"]["json_schema"]["name"]


def answer(request: httpx.Request) -> httpx.Response:
    return sse(json.dumps(ANSWERS[schema_name(request)]))


async def ask(handler, classifiers=ON_SERVER, budget: float = 2.0, history=HISTORY):
    """Fan out over a loopback server answering with ``handler``; each classifier keeps its
    server's style, key variable and slots, at the loopback's URL."""
    async with LoopbackLLM(handler) as llm:
        client = LLMClient()
        try:
            deadline = asyncio.get_running_loop().time() + budget
            here = [replace(c, server=llm.at(c.server)) for c in classifiers]
            return await fan_out(client, here, history, TODAY, deadline)
        finally:
            await client.aclose()


# --- requests and answers ---------------------------------------------------------------------


async def test_the_three_classifier_calls_are_in_flight_at_the_same_time():
    # With no "yes" to stop early, all three must answer; each waits at a barrier that opens
    # only when all three have arrived: sent one after the other, the barrier would time out.
    barrier = asyncio.Barrier(3)

    async def handler(request):
        async with asyncio.timeout(2):
            await barrier.wait()
        return sse(json.dumps(NO[schema_name(request)]))

    outcomes = await ask(handler)
    assert [o.output for o in outcomes] == [
        Pricing(False, None), Scheduling(False, None, None), ListingQuestion(False)
    ]
    assert [o.status for o in outcomes] == ["ok"] * 3
    assert all(o.error == "" and o.retries == 0 for o in outcomes)


async def test_each_request_is_streamed_with_the_schema_the_history_the_date_and_the_key(
    settings, monkeypatch
):
    settings.LLM_PROMPT_LAYOUT = "system_first"
    monkeypatch.setenv("TEST_LLM_KEY", "secret")
    server = Server("http://llm.test/v1", api_key_env="TEST_LLM_KEY")
    seen = []

    def handler(request):
        seen.append((request.url.path, request.headers.get("authorization"),
                     json.loads(request.content)))
        return answer(request)

    await ask(handler, [replace(c, server=server, version=7) for c in THREE])
    assert {path for path, _, _ in seen} == {"/v1/chat/completions"}
    assert {auth for _, auth, _ in seen} == {"Bearer secret"}
    by_name = {body["response_format"]["json_schema"]["name"]: body for _, _, body in seen}
    assert set(by_name) == {"pricing", "scheduling", "listing_question"}
    scheduling = by_name["scheduling"]
    assert scheduling["stream"] is False  # one body: the answer is parsed only when whole
    assert scheduling["response_format"]["type"] == "json_schema"
    assert "Today is Sunday, 2026-11-22" in scheduling["messages"][0]["content"]
    assert scheduling["messages"][1:] == HISTORY


async def test_the_shared_prefix_layout_puts_the_same_context_and_history_first(settings):
    settings.LLM_PROMPT_LAYOUT = "shared_prefix"
    bodies = []

    def handler(request):
        bodies.append(json.loads(request.content))
        return answer(request)

    await ask(handler)
    prefixes = {json.dumps(body["messages"][:-1]) for body in bodies}
    assert len(prefixes) == 1  # identical up to each classifier's own instruction
    first = bodies[0]["messages"]
    assert first[0]["role"] == "system" and "Today is Sunday, 2026-11-22" in first[0]["content"]
    assert first[1:-1] == HISTORY
    assert {body["messages"][-1]["role"] for body in bodies} == {"system"}
    assert len({body["messages"][-1]["content"] for body in bodies}) == 3


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(200, text="not json at all"), "not a chat completion"),
        (httpx.Response(200, text="data: {oops\n\n", headers={"content-type": "text/event-stream"}),
         "not a chat-completion stream"),
        (sse("Sure! The answer is yes."), "content is not JSON"),
        (completion("[1, 2]"), "content is not a JSON object"),
        (sse('{"asks_price": "yes", "listing_id": null}'), "unexpected answer"),
        (sse('{"asks_price": true, "listing_id": "12345"}'), "unexpected answer"),
        (completion('{"asks_price": true}'), "unexpected answer"),
        # Nested past Python's recursion limit: json.loads raised RecursionError (issue 13).
        (sse('{"asks_price": ' + "[" * 5000 + "]" * 5000 + "}"), "content is not JSON"),
        (completion('{"asks_price": ' + "[" * 5000 + "]" * 5000 + "}"), "content is not JSON"),
        (sse('{"asks_price": true, "listing_id": ' + "[" * 40 + "]" * 40 + "}"), "nests deeper"),
    ],
)
async def test_a_bad_answer_is_an_error_on_that_classifier_only_and_not_retried(response, error):
    asked = []

    def handler(request):
        asked.append(schema_name(request))
        return response if schema_name(request) == "pricing" else answer(request)

    pricing, scheduling, listing_question = await ask(handler)
    assert pricing.output is None and error in pricing.error
    assert pricing.status == "error" and pricing.retries == 0
    assert pricing.raw  # what the server said is kept for the log
    assert asked.count("pricing") == 1
    assert listing_question.output == ListingQuestion(True)


# --- retries within one deadline --------------------------------------------------------------


async def test_a_503_is_retried_and_then_answered():
    attempts = []

    def handler(request):
        if schema_name(request) == "pricing":
            attempts.append(time.monotonic())
            if len(attempts) == 1:
                return httpx.Response(503, text="overloaded")
        return answer(request)

    pricing, *_ = await ask(handler)
    assert pricing.output == Pricing(True, "654321")
    assert (pricing.status, pricing.retries, pricing.error) == ("ok", 1, "")
    assert attempts[1] - attempts[0] >= 0.05  # backoff: 0.1 s x jitter 0.5-1.5


@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ReadError("reset")])
async def test_a_connection_error_is_retried(error):
    attempts = []

    def handler(request):
        if schema_name(request) == "pricing":
            attempts.append(1)
            if len(attempts) == 1:
                raise error
        return answer(request)

    pricing, *_ = await ask(handler)
    assert (pricing.status, pricing.retries) == ("ok", 1)


async def test_a_429_whose_retry_after_fits_is_retried_after_that_wait():
    attempts = []

    def handler(request):
        if schema_name(request) == "pricing":
            attempts.append(time.monotonic())
            if len(attempts) == 1:
                return httpx.Response(429, headers={"Retry-After": "0.4"})
        return answer(request)

    pricing, *_ = await ask(handler, budget=2.0)
    assert (pricing.status, pricing.retries) == ("ok", 1)
    assert attempts[1] - attempts[0] >= 0.4


async def test_a_429_whose_retry_after_does_not_fit_ends_the_call_at_once():
    attempts = []

    def handler(request):
        if schema_name(request) == "pricing":
            attempts.append(1)
            return httpx.Response(429, headers={"Retry-After": "5"})
        return answer(request)

    started = time.monotonic()
    pricing, scheduling, _ = await ask(handler, budget=5.0)
    assert time.monotonic() - started < 2.5  # the route did not wait for the 5 s budget
    assert len(attempts) == 1
    assert pricing.status == "error" and pricing.retries == 0
    assert "HTTP 429" in pricing.error and "Retry-After 5 s does not fit" in pricing.error
    assert scheduling.output == Scheduling(False, None, None)


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_a_client_error_other_than_429_is_never_retried(status):
    attempts = []

    def handler(request):
        attempts.append(schema_name(request))
        return httpx.Response(status, json={"error": {"message": "bad"}})

    outcomes = await ask(handler)
    assert sorted(attempts) == sorted(["pricing", "scheduling", "listing_question"])
    expected = ("error", 0, f"HTTP {status}")
    assert [(o.status, o.retries, o.error) for o in outcomes] == [expected] * 3


async def test_retries_stop_at_the_deadline_and_at_the_retry_limit(settings):
    settings.LLM_MAX_RETRIES = 2
    attempts = []

    def handler(request):
        attempts.append(1)
        return httpx.Response(503)

    outcomes = await ask(handler, budget=5.0)
    assert [(o.status, o.retries) for o in outcomes] == [("error", 2)] * 3
    assert len(attempts) == 9

    settings.LLM_MAX_RETRIES = 50
    started = time.monotonic()
    outcomes = await ask(handler, budget=0.5)
    assert time.monotonic() - started < 0.5 + 1.5  # 50 retries with backoff take far longer
    assert all(o.status in ("error", "timeout") and o.output is None for o in outcomes)


async def test_a_call_that_never_answers_times_out_at_the_deadline():
    async def handler(request):
        await asyncio.sleep(30)

    started = time.monotonic()
    outcomes = await ask(handler, budget=0.3)
    assert 0.3 <= time.monotonic() - started < 0.3 + 1.7  # the calls would take 30 s
    assert [o.status for o in outcomes] == ["timeout"] * 3
    assert all("turn budget" in o.error and 280 <= o.latency_ms < 2000 for o in outcomes)


# --- slots ------------------------------------------------------------------------------------


async def test_calls_beyond_a_servers_in_flight_cap_wait_for_a_slot_and_log_the_wait():
    in_flight, most = 0, 0

    async def handler(request):
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.1)
        in_flight -= 1
        return sse(json.dumps(NO[schema_name(request)]))  # all "no": every call is waited for

    narrow = Server("http://llm.test/v1", max_in_flight=1)
    outcomes = await ask(handler, [replace(c, server=narrow) for c in THREE])
    assert most == 1
    first, second, third = sorted(o.wait_ms for o in outcomes)  # ~0, ~100 and ~200 ms
    assert first < 50 and second >= 90 and third >= 190


# --- early exit, against the stand-in ---------------------------------------------------------


@pytest.fixture
def standin():
    with StandinServer() as server:
        yield server


def on(server: StandinServer, names=("pricing", "scheduling", "listing_question")):
    """The built-in classifiers named, in priority order, sent to ``server``."""
    target = Server(server.base_url)
    return [replace(c, server=target) for c in THREE if c.name in names]


async def standin_turn(classifiers, text: str, budget: float = 2.0):
    """Fan out one visitor message over real HTTP; return the outcomes."""
    client = LLMClient()
    try:
        deadline = asyncio.get_running_loop().time() + budget
        history = [{"role": "user", "content": text}]
        return await fan_out(client, classifiers, history, TODAY, deadline)
    finally:
        await client.aclose()


async def test_a_price_question_is_answered_without_waiting_for_the_slower_classifiers(standin):
    standin.latency_ms = {"pricing": 50, "*": 5000}
    started = time.monotonic()
    pricing, scheduling, listing_question = await standin_turn(
        on(standin), "Price of 123456?", budget=10.0
    )
    assert time.monotonic() - started < 2.5  # not the 5 s of the slower ones
    assert pricing.output == Pricing(True, "123456")
    assert [scheduling.status, listing_question.status] == ["cancelled", "cancelled"]
    assert scheduling.error == "" and scheduling.output is None
    # The stand-in saw both losers hang up: their generation would have stopped on vLLM.
    assert await asyncio.to_thread(standin.wait_for_abandoned, 2)
    assert standin.abandoned == {"scheduling": 1, "listing_question": 1}


async def test_a_call_request_waits_for_pricing_to_say_no_but_not_for_the_listing_question(
    standin,
):
    standin.latency_ms = {"pricing": 200, "scheduling": 0, "listing_question": 6000}
    started = time.monotonic()
    pricing, scheduling, listing_question = await standin_turn(
        on(standin), "Can I book a call tomorrow at 3pm?", budget=10.0
    )
    assert 0.2 <= time.monotonic() - started < 3.0  # not the 6 s of the listing question
    assert pricing.output == Pricing(False, None)
    assert scheduling.output == Scheduling(True, "2026-11-23", "15:00")
    assert listing_question.status == "cancelled"
    assert await asyncio.to_thread(standin.wait_for_abandoned, 1)
    assert standin.abandoned == {"listing_question": 1}


async def test_a_hanging_server_times_out_every_call_within_the_budget(standin):
    standin.fault = "hang"
    started = time.monotonic()
    outcomes = await standin_turn(on(standin), "Price of 123456?", budget=0.5)
    assert time.monotonic() - started < 0.5 + 2.0  # the server would hang for 600 s
    assert [o.status for o in outcomes] == ["timeout"] * 3
    assert await asyncio.to_thread(standin.wait_for_abandoned, 3)


async def test_a_garbage_stream_is_an_error_not_retried_and_logged(standin, caplog):
    standin.fault, standin.fault_classifier = "garbage-stream", "pricing"
    with caplog.at_level(logging.WARNING, logger="agent.llm.fanout"):
        pricing, scheduling, _ = await standin_turn(on(standin), "hello")
    # Asked without streaming, the stand-in's garbage is an HTML page instead of a completion.
    assert pricing.status == "error" and "not a chat completion" in pricing.error
    assert "<html>" in pricing.raw
    assert standin.requests["pricing"] == 1
    assert scheduling.status == "ok"
    assert "classifier pricing error: not a chat completion" in caplog.text


@pytest.mark.parametrize("respond", [sse, completion])
async def test_an_answer_over_the_read_limit_is_an_error_and_not_stored_whole(respond):
    huge = json.dumps({"asks_price": True, "listing_id": None, "pad": "x" * READ_LIMIT})

    def handler(request):
        return respond(huge) if schema_name(request) == "pricing" else answer(request)

    pricing, scheduling, _ = await ask(handler)
    assert pricing.status == "error" and f"answer over {READ_LIMIT} bytes" in pricing.error
    assert pricing.retries == 0 and len(pricing.raw) <= RAW_LIMIT
    assert scheduling.status == "ok"


async def test_a_truncated_stream_is_retried_then_answered(standin):
    standin.fault, standin.fault_classifier, standin.fault_times = "truncated", "pricing", 1
    pricing, *_ = await standin_turn(on(standin), "Price of 123456?")
    assert pricing.output == Pricing(True, "123456")
    assert (pricing.status, pricing.retries) == ("ok", 1)
    assert standin.requests["pricing"] == 2


async def test_a_stream_truncated_every_time_ends_as_an_error_and_is_logged(
    standin, settings, caplog
):
    settings.LLM_MAX_RETRIES = 1
    standin.fault, standin.fault_classifier = "truncated", "pricing"
    with caplog.at_level(logging.WARNING, logger="agent.llm.fanout"):
        pricing, *_ = await standin_turn(on(standin), "Price of 123456?")
    assert pricing.status == "error" and pricing.retries == 1
    assert "connection failed" in pricing.error
    assert "classifier pricing error" in caplog.text


async def test_a_503_then_success_from_the_stand_in(standin):
    standin.fault, standin.fault_classifier, standin.fault_times = "503", "pricing", 2
    pricing, *_ = await standin_turn(on(standin), "Price of 123456?")
    assert pricing.output == Pricing(True, "123456")
    assert (pricing.status, pricing.retries) == ("ok", 2)
    assert standin.requests["pricing"] == 3


async def test_each_classifier_goes_to_its_own_server():
    with StandinServer() as prices, StandinServer() as others:
        classifiers = on(prices, {"pricing"}) + on(others, {"scheduling", "listing_question"})
        outcomes = await standin_turn(classifiers, "hello")
        assert [o.status for o in outcomes] == ["ok"] * 3
        assert prices.requests == {"pricing": 1}
        assert others.requests == {"scheduling": 1, "listing_question": 1}


async def test_an_anthropic_style_server_in_a_turn_gets_a_messages_api_request():
    anthropic = Server("http://anthropic.test/v1", "anthropic")
    seen = []

    def handler(request):
        seen.append((request.url.path, json.loads(request.content)))
        if request.url.path == "/v1/messages":
            tool_input = json.dumps(ANSWERS["scheduling"])
            events = [{"type": "content_block_delta",
                       "delta": {"type": "input_json_delta", "partial_json": tool_input}},
                      {"type": "message_stop"}]
            text = "".join(f"data: {json.dumps(e)}\n\n" for e in events)
            return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})
        return answer(request)

    classifiers = [ON_SERVER[0], replace(SCHEDULING, server=anthropic), ON_SERVER[2]]
    outcomes = await ask(handler, classifiers)
    assert [o.status for o in outcomes] == ["ok"] * 3
    assert outcomes[1].output == Scheduling(False, None, None)
    (sent,) = [body for path, body in seen if path == "/v1/messages"]
    assert sent["tools"][0]["name"] == "scheduling" and sent["messages"] == HISTORY
    assert "Today is Sunday" in sent["system"]
    others = {body["response_format"]["json_schema"]["name"] for path, body in seen
              if path == "/v1/chat/completions"}
    assert others == {"pricing", "listing_question"}
