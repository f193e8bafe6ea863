"""The rule-based LLM stand-in: its labels, and its OpenAI-compatible server over loopback."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import date, timedelta

import httpx
import pytest

from agent.llm.classifiers import (
    APPOINTMENT_CHANGE,
    CLASSIFIERS,
    LISTING_QUESTION,
    PRICING,
    SCHEDULING,
)
from agent.llm.standin.rules import NOTHING, classify, parse_date, parse_time, today_from
from agent.llm.standin.server import StandinServer
from tests import EVAL_FILE, ROOT

TODAY = date(2026, 11, 19)  # a Thursday, so {weekday+3} crosses a weekend
EVAL = EVAL_FILE
MANAGE = ROOT / "manage.py"

# What the router answers on the routes a follow-up turn replies to (see agent/chat/router.py).
ASSISTANT = {
    "price_needs_listing": "Happy to help with prices! Which listing do you mean? Please give "
                           "me its 6-digit listing ID.",
    "price_unknown_listing": "I couldn't find listing 999999. Could you check the 6-digit "
                             "listing ID?",
    "booking_needs_time": "I'd be glad to set up a call with one of our realtors. What day and "
                          "time suit you? We take calls Monday to Friday, 09:00-17:00.",
    "booking_unavailable": "Sorry, I can't book that call. Which other day and time would suit "
                           "you?",
}
OTHER_REPLY = "Let me transfer you to a human representative."


def nth_day_after(today: date, n: int, weekdays: set[int]) -> date:
    """The n-th day after ``today`` whose ``weekday()`` is in ``weekdays``."""
    day = today
    while n:
        day += timedelta(days=1)
        n -= day.weekday() in weekdays
    return day


def expand(text: str) -> str:
    """Fill in the eval file's {weekday+N}, {weekday+N:long} and {sunday+N} against TODAY."""

    def one(match: re.Match) -> str:
        kind, n, long = match.group(1), int(match.group(2)), match.group(3)
        day = nth_day_after(TODAY, n, {0, 1, 2, 3, 4} if kind == "weekday" else {6})
        return f"{day:%A, %B} {day.day}" if long else day.isoformat()

    return re.sub(r"\{(weekday|sunday)\+(\d+)(:long)?\}", one, text)


# The shared file predates the listing classifiers and has no labels for them: where they must
# say yes, the label is here (the project's own tests/data/listings_eval.jsonl labels them all).
UNLABELLED = {
    ("listing-question", 1, "listing_facts"): {
        "asks_facts": True, "listing_id": "654321", "facts": ["features"],
        "features": ["garage"], "about_people": False,
    },
}


def eval_turns() -> list:
    """One case per (conversation, turn, classifier): the request and the expected label. A
    classifier the file has no label for (appointment_change, the listing ones) must answer
    "nothing", or ``UNLABELLED``'s answer."""
    if not EVAL.exists():
        return [pytest.param(None, None, None, marks=pytest.mark.skip(reason=f"no {EVAL}"))]
    cases = []
    for line in EVAL.read_text().splitlines():
        if not line.strip():
            continue
        conversation = json.loads(expand(line))
        history = []
        for number, turn in enumerate(conversation["turns"], 1):
            history.append({"role": "user", "content": turn["user"]})
            for classifier in CLASSIFIERS:
                cases.append(pytest.param(
                    classifier, list(history),
                    turn["labels"].get(classifier.name, UNLABELLED.get(
                        (conversation["id"], number, classifier.name), NOTHING[classifier.name])),
                    id=f"{conversation['id']}-{number}-{classifier.name}",
                ))
            history.append({"role": "assistant",
                            "content": ASSISTANT.get(turn["route"], OTHER_REPLY)})
    return cases


def ask(classifier, *history: tuple[str, str]) -> dict:
    """Classify a conversation given as (role, text) pairs, the way the product asks."""
    messages = [{"role": role, "content": text} for role, text in history]
    body = classifier.request_body("standin", messages, TODAY)
    return classify(classifier.name, body["messages"], classifier.schema)


# --- labels -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("classifier", "history", "label"), eval_turns())
def test_every_eval_label_comes_out_exactly(classifier, history, label):
    body = classifier.request_body("standin", history, TODAY)
    answer = classify(classifier.name, body["messages"], classifier.schema)
    assert answer == label
    classifier.parse(answer)  # and the product can read it


def test_a_listing_id_given_after_the_assistant_asked_for_it_is_a_price_question():
    answer = ask(PRICING, ("user", "Can you tell me what a listing goes for?"),
                 ("assistant", ASSISTANT["price_needs_listing"]), ("user", "It's 112233"))
    assert answer == {"asks_price": True, "listing_id": "112233"}


def test_a_listing_id_given_unprompted_is_not_a_price_question():
    answer = ask(PRICING, ("user", "hello"), ("assistant", OTHER_REPLY),
                 ("user", "I saw 112233 online"))
    assert answer == {"asks_price": False, "listing_id": None}


def test_a_price_question_without_an_id_has_a_null_listing_id():
    assert ask(PRICING, ("user", "Is it expensive?")) == {"asks_price": True, "listing_id": None}


def test_a_day_given_after_the_assistant_asked_when_is_a_call_request():
    answer = ask(SCHEDULING, ("user", "I want to talk to a realtor"),
                 ("assistant", ASSISTANT["booking_needs_time"]), ("user", "Tomorrow at 3pm"))
    assert answer == {"wants_call": True, "date": "2026-11-20", "time": "15:00"}


def test_a_new_time_after_an_unavailable_slot_is_a_call_request():
    answer = ask(SCHEDULING, ("user", "Book a call on Saturday at 10am"),
                 ("assistant", ASSISTANT["booking_unavailable"]), ("user", "Monday at noon"))
    assert answer == {"wants_call": True, "date": "2026-11-23", "time": "12:00"}


def test_a_time_given_unprompted_is_not_a_call_request():
    answer = ask(SCHEDULING, ("user", "hi"), ("assistant", OTHER_REPLY),
                 ("user", "I move in tomorrow at 3pm"))
    assert answer == {"wants_call": False, "date": None, "time": None}


@pytest.mark.parametrize(
    ("asked", "text", "action"),
    [
        (OTHER_REPLY, "Cancel my appointment", "cancel"),
        (OTHER_REPLY, "can we move it to Friday?", "move"),
        (OTHER_REPLY, "I need to reschedule", "move"),
        ("Your call is on Tuesday. To which day and time should I move your call?",
         "Friday at 11", "move"),
        (OTHER_REPLY, "I move in tomorrow at 3pm", "none"),
        (OTHER_REPLY, "Can I book a call for Friday?", "none"),
    ],
)
def test_cancel_and_move_requests_are_told_apart_from_bookings(asked, text, action):
    answer = ask(APPOINTMENT_CHANGE, ("user", "hi"), ("assistant", asked), ("user", text))
    assert answer == {"action": action}
    assert APPOINTMENT_CHANGE.parse(answer).action == action


def test_a_move_request_carries_its_new_day_for_the_scheduling_classifier():
    answer = ask(SCHEDULING, ("user", "can we move it to Friday?"))
    assert answer == {"wants_call": True, "date": "2026-11-20", "time": None}


def test_a_call_request_without_a_day_or_time_leaves_both_null():
    answer = ask(SCHEDULING, ("user", "Could I speak with someone?"))
    assert answer == {"wants_call": True, "date": None, "time": None}


@pytest.mark.parametrize(("text", "expected"), [
    ("today", "2026-11-19"),
    ("tomorrow", "2026-11-20"),
    ("the day after tomorrow", "2026-11-21"),
    ("monday", "2026-11-23"),
    ("next Tuesday", "2026-11-24"),
    ("Thursday", "2026-11-26"),  # today's weekday means next week's
    ("friday", "2026-11-20"),
    ("2026-12-01", "2026-12-01"),
    ("December 3", "2026-12-03"),
    ("the 3rd of December", "2026-12-03"),
    ("some time soon", None),
])
def test_relative_dates_resolve_against_today(text, expected):
    assert parse_date(text, TODAY) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("at 3pm", "15:00"),
    ("at 3 pm", "15:00"),
    ("at 3:30pm", "15:30"),
    ("10am", "10:00"),
    ("9 a.m.", "09:00"),
    ("15:00", "15:00"),
    ("9:05", "09:05"),
    ("noon", "12:00"),
    ("12am", "00:00"),
    ("12pm", "12:00"),
    ("3 amenities", None),
    ("listing 123456", None),
])
def test_times_come_out_as_24_hour_hh_mm(text, expected):
    assert parse_time(text) == expected


def test_today_is_read_from_the_system_prompt_else_the_machines_date():
    prompt = SCHEDULING.system_prompt(TODAY)
    assert today_from([{"role": "system", "content": prompt}]) == TODAY
    assert today_from([{"role": "user", "content": "hi"}]) == date.today()


@pytest.mark.parametrize(("text", "expected"), [
    ("How many bedrooms does 123456 have?", True),
    ("Is the condo on Harbor View still for sale?", True),
    ("how big is the garden", True),
    ("is it cheap?", True),
    ("hello!", False),
    ("What's the weather going to be like tomorrow?", False),
    ("Can I book a call with one of your agents?", False),
    ("thanks, bye", False),
])
def test_listing_questions_are_about_a_property(text, expected):
    assert ask(LISTING_QUESTION, ("user", text)) == {"is_listing_question": expected}


def test_an_unknown_schema_gets_each_property_false_or_null():
    schema = {"type": "object", "properties": {"is_spam": {"type": "boolean"},
                                               "language": {"type": "string"}}}
    answer = classify("spam", [{"role": "user", "content": "hi"}], schema)
    assert answer == {"is_spam": False, "language": None}


def test_without_a_schema_an_unknown_classifier_is_all_false():
    answer = classify(None, [{"role": "user", "content": "How much is 123456?"}])
    assert answer == {"asks_price": False, "listing_id": None, "wants_call": False,
                      "date": None, "time": None, "is_listing_question": False,
                      "action": "none", "wants_listings": False, "place": None,
                      "min_price": None, "max_price": None, "min_bedrooms": None,
                      "min_bathrooms": None, "property_type": None, "features": [],
                      "asks_facts": False, "facts": [], "about_people": False}


# --- the server -------------------------------------------------------------------------------


@pytest.fixture
def standin():
    with StandinServer() as server:
        yield server


@pytest.fixture
def client(standin):
    with httpx.Client(base_url=standin.base_url + "/", timeout=5) as client:
        yield client


def request(classifier, text: str, model: str = "test-model") -> dict:
    return classifier.request_body(model, [{"role": "user", "content": text}], TODAY)


def content_of(response: httpx.Response) -> str:
    return response.json()["choices"][0]["message"]["content"]


def test_a_chat_completion_is_answered_in_openai_shape_matching_the_schema(standin, client):
    response = client.post("chat/completions", json=request(PRICING, "How much is 654321?"))
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["model"] == "test-model"
    assert set(data) >= {"id", "created", "usage"}
    choice = data["choices"][0]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    answer = json.loads(choice["message"]["content"])
    assert answer == {"asks_price": True, "listing_id": "654321"}
    assert set(answer) == set(PRICING.schema["properties"])
    assert standin.requests == {"pricing": 1}


def test_models_lists_the_one_model_name():
    with StandinServer(model="Qwen/Qwen2.5-7B-Instruct") as server:
        with httpx.Client(base_url=server.base_url + "/") as client:
            data = client.get("models").json()
    assert [model["id"] for model in data["data"]] == ["Qwen/Qwen2.5-7B-Instruct"]


def test_without_response_format_the_system_prompt_tells_the_classifier(client):
    body = request(SCHEDULING, "Can we talk tomorrow at 15:00?")
    del body["response_format"]
    answer = json.loads(content_of(client.post("chat/completions", json=body)))
    assert answer == {"wants_call": True, "date": "2026-11-20", "time": "15:00"}


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"model": "x"}', b'{"messages": []}'])
def test_a_bad_body_gets_400_with_an_openai_error(client, body):
    response = client.post("chat/completions", content=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]


def test_a_429_fault_answers_429_with_retry_after(standin, client):
    standin.fault = "429"
    response = client.post("chat/completions", json=request(PRICING, "price of 123456?"))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert standin.requests["pricing"] == 1


def test_a_503_fault_answers_503_with_an_openai_error(standin, client):
    standin.fault = "503"
    response = client.post("chat/completions", json=request(PRICING, "price of 123456?"))
    assert response.status_code == 503
    assert response.json()["error"]["message"]


def test_a_garbage_fault_answers_200_with_content_that_is_not_json(standin, client):
    standin.fault = "garbage"
    response = client.post("chat/completions", json=request(PRICING, "price of 123456?"))
    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(content_of(response))


def test_a_hang_fault_makes_the_client_time_out(standin):
    standin.fault = "hang"
    with httpx.Client(base_url=standin.base_url + "/", timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post("chat/completions", json=request(PRICING, "price of 123456?"))


def test_stopping_does_not_wait_for_a_hanging_request(standin):
    standin.fault = "hang"
    data = json.dumps(request(PRICING, "price?")).encode()
    with socket.create_connection(("127.0.0.1", standin.port)) as connection:
        connection.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
        while not standin.requests:
            time.sleep(0.01)
        started = time.monotonic()
        standin.stop()
        assert time.monotonic() - started < 2
        assert connection.recv(100) == b""


def test_a_fault_limited_to_one_classifier_spares_the_others(standin, client):
    standin.fault, standin.fault_classifier = "503", "scheduling"
    assert client.post("chat/completions", json=request(SCHEDULING, "call me")).status_code == 503
    assert client.post("chat/completions", json=request(PRICING, "price?")).status_code == 200
    assert standin.requests == {"scheduling": 1, "pricing": 1}


def test_faults_can_be_switched_on_and_off_while_it_runs(standin, client):
    body = request(LISTING_QUESTION, "hello")
    assert client.post("chat/completions", json=body).status_code == 200
    standin.fault = "429"
    assert client.post("chat/completions", json=body).status_code == 429
    standin.fault = None
    assert client.post("chat/completions", json=body).status_code == 200


def test_an_unknown_fault_is_refused(standin):
    with pytest.raises(ValueError):
        standin.fault = "teapot"


def test_latency_delays_only_the_classifier_it_names(standin, client):
    standin.latency_ms = {"pricing": 300}
    started = time.monotonic()
    client.post("chat/completions", json=request(PRICING, "price?"))
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    client.post("chat/completions", json=request(LISTING_QUESTION, "hello"))
    assert time.monotonic() - started < 0.25


def test_the_command_says_it_is_a_rule_based_stand_in_and_stops_on_ctrl_c():
    command = [sys.executable, str(MANAGE), "llm_standin", "--port", "0",
               "--latency", "pricing=10", "--fault", "503", "--fault-classifier", "scheduling"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=os.environ | {"PYTHONUNBUFFERED": "1"}) as process:
        try:
            line = process.stdout.readline()
            url = re.search(r"http://\S+/v1", line).group(0)
            with httpx.Client(base_url=url + "/") as client:
                assert client.post("chat/completions",
                                   json=request(SCHEDULING, "call me")).status_code == 503
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=30)  # a loaded machine took over 10 s
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert "rule-based" in line.lower()
    assert process.returncode == 0, err
    assert "stopped" in out


def test_a_stopped_stand_in_starts_again_on_the_same_port(standin, client):
    body = request(LISTING_QUESTION, "hello")
    standin.stop()
    with pytest.raises(httpx.ConnectError):
        client.post("chat/completions", json=body)
    standin.start()
    assert client.post("chat/completions", json=body).status_code == 200


def test_an_outage_closes_the_port_or_fails_every_request_until_it_ends(standin, client):
    body = request(PRICING, "How much is 654321?")
    standin.outage("down")
    with pytest.raises(httpx.ConnectError):
        client.post("chat/completions", json=body)
    standin.outage(None)
    assert client.post("chat/completions", json=body).status_code == 200

    standin.fault, standin.fault_classifier = "429", "scheduling"
    standin.outage("503")  # every classifier's requests, however the fault was set before
    assert client.post("chat/completions", json=body).status_code == 503
    standin.outage(None)
    assert client.post("chat/completions", json=body).status_code == 200
    with pytest.raises(ValueError):
        standin.outage("flood")


# --- streaming, hang-ups and one-off faults ---------------------------------------------------


def stream_frames(client, body: dict) -> tuple[httpx.Response, list[str]]:
    """POST with ``stream: true``; return the response and its ``data:`` payloads."""
    with client.stream("POST", "chat/completions", json=body | {"stream": True}) as response:
        return response, [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


def test_a_streamed_request_gets_chunks_then_done(standin, client):
    response, frames = stream_frames(client, request(PRICING, "How much is 654321?"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(frame) for frame in frames[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert json.loads(content) == {"asks_price": True, "listing_id": "654321"}
    assert len(chunks) > 3  # the answer came in pieces
    assert standin.abandoned == {}


def test_a_client_that_hangs_up_during_the_latency_is_counted_as_abandoned(standin):
    standin.latency_ms = {"scheduling": 2000}
    with httpx.Client(base_url=standin.base_url + "/", timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            stream_frames(client, request(SCHEDULING, "call me"))
    assert standin.wait_for_abandoned(1)
    assert standin.abandoned == {"scheduling": 1}
    assert standin.requests == {"scheduling": 1}


def test_a_truncated_stream_stops_before_done_and_closes_the_connection(standin, client):
    standin.fault = "truncated"
    with pytest.raises(httpx.RemoteProtocolError):
        stream_frames(client, request(PRICING, "price of 123456?"))


def test_a_truncated_plain_answer_is_cut_short(standin, client):
    standin.fault = "truncated"
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("chat/completions", json=request(PRICING, "price of 123456?"))


def test_a_garbage_stream_is_not_made_of_chunks(standin, client):
    standin.fault = "garbage-stream"
    response, frames = stream_frames(client, request(PRICING, "price of 123456?"))
    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(frames[0])
    assert client.post("chat/completions", json=request(PRICING, "price?")).text.startswith("<")


def test_a_fault_for_n_requests_then_clears_itself(standin, client):
    standin.fault, standin.fault_times = "503", 2
    statuses = [client.post("chat/completions", json=request(PRICING, "price?")).status_code
                for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert standin.fault is None


def test_the_retry_after_of_a_429_can_be_set(standin, client):
    standin.fault, standin.retry_after = "429", "7"
    response = client.post("chat/completions", json=request(PRICING, "price?"))
    assert response.headers["Retry-After"] == "7"
