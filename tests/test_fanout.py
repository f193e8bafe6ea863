"""The fan-out: every classifier call in flight at once, each failure contained."""

import asyncio
import json
from datetime import date

import httpx
import pytest

from agent.classifiers import CLASSIFIERS, AppointmentChange, ListingQuestion, Pricing, Scheduling
from agent.fanout import fan_out
from agent.llm import LLMClient, LLMError

TODAY = date(2026, 11, 22)
HISTORY = [{"role": "user", "content": "How much is listing 654321?"}]

ANSWERS = {
    "pricing": {"asks_price": True, "listing_id": "654321"},
    "scheduling": {"wants_call": False, "date": None, "time": None},
    "listing_question": {"is_listing_question": True},
    "appointment_change": {"action": "none"},
}


def completion(content: str) -> httpx.Response:
    return httpx.Response(
        200, json={"choices": [{"message": {"role": "assistant", "content": content}}]}
    )


def schema_name(request: httpx.Request) -> str:
    return json.loads(request.content)["response_format"]["json_schema"]["name"]


async def test_the_classifier_calls_are_in_flight_at_the_same_time():
    # Each call waits at a barrier that opens only when all of them have arrived: sent one after
    # the other, the first would wait forever and the barrier's timeout would fail the test.
    barrier = asyncio.Barrier(len(CLASSIFIERS))

    async def handler(request):
        async with asyncio.timeout(2):
            await barrier.wait()
        return completion(json.dumps(ANSWERS[schema_name(request)]))

    client = LLMClient("http://llm.test/v1", transport=httpx.MockTransport(handler))
    outcomes = await fan_out(client, HISTORY, TODAY)
    await client.aclose()
    assert [o.output for o in outcomes] == [
        Pricing(True, "654321"),
        Scheduling(False, None, None),
        ListingQuestion(True),
        AppointmentChange("none"),
    ]
    assert all(o.error == "" for o in outcomes)


async def test_each_request_carries_the_schema_the_history_and_the_date():
    seen = []

    def handler(request):
        seen.append(
            (request.url.path, request.headers.get("authorization"), json.loads(request.content))
        )
        return completion(json.dumps(ANSWERS[schema_name(request)]))

    client = LLMClient("http://llm.test/v1", "secret", transport=httpx.MockTransport(handler))
    await fan_out(client, HISTORY, TODAY)
    await client.aclose()
    assert {path for path, _, _ in seen} == {"/v1/chat/completions"}
    assert {auth for _, auth, _ in seen} == {"Bearer secret"}
    by_name = {body["response_format"]["json_schema"]["name"]: body for _, _, body in seen}
    assert set(by_name) == {"pricing", "scheduling", "listing_question", "appointment_change"}
    scheduling = by_name["scheduling"]
    assert scheduling["response_format"]["type"] == "json_schema"
    assert "Today is Sunday, 2026-11-22" in scheduling["messages"][0]["content"]
    assert scheduling["messages"][1:] == HISTORY


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(503, text="overloaded"), "HTTP 503"),
        (httpx.Response(200, text="not json at all"), "not a chat completion"),
        (completion("Sure! The answer is yes."), "content is not JSON"),
        (completion("[1, 2]"), "content is not a JSON object"),
        (completion('{"asks_price": "yes", "listing_id": null}'), "unexpected answer"),
        (completion('{"asks_price": true, "listing_id": "12345"}'), "unexpected answer"),
        (completion('{"asks_price": true}'), "unexpected answer"),
    ],
)
async def test_a_bad_answer_is_an_error_on_that_classifier_only(response, error):
    def handler(request):
        if schema_name(request) == "pricing":
            return response
        return completion(json.dumps(ANSWERS[schema_name(request)]))

    client = LLMClient("http://llm.test/v1", transport=httpx.MockTransport(handler))
    pricing, scheduling, listing_question, change = await fan_out(client, HISTORY, TODAY)
    await client.aclose()
    assert pricing.output is None and error in pricing.error
    assert pricing.raw  # what the server said is kept for the log
    assert scheduling.output == Scheduling(False, None, None)
    assert listing_question.output == ListingQuestion(True)
    assert change.output == AppointmentChange("none")


async def test_a_timeout_is_an_error_not_an_exception():
    def handler(request):
        raise httpx.ReadTimeout("slow", request=request)

    client = LLMClient("http://llm.test/v1", transport=httpx.MockTransport(handler))
    outcomes = await fan_out(client, HISTORY, TODAY)
    await client.aclose()
    assert [o.error for o in outcomes] == ["timed out: ReadTimeout"] * len(CLASSIFIERS)


@pytest.mark.parametrize(
    ("status", "permanent"), [(400, True), (404, True), (429, False), (500, False)]
)
async def test_client_errors_are_permanent_but_429_and_5xx_are_not(status, permanent):
    client = LLMClient(
        "http://llm.test/v1", transport=httpx.MockTransport(lambda r: httpx.Response(status))
    )
    with pytest.raises(LLMError) as caught:
        await client.complete_json({"model": "m", "messages": []})
    await client.aclose()
    assert caught.value.permanent is permanent
