"""The replay report's figures on hand-made turns, each worked out by hand in the comments."""

import pytest

from agent.models import ClassifierCall
from agent.ops.evalreport import (
    ANSWERED,
    CANCELLED,
    NO_ROUTE,
    Call,
    Turn,
    build,
    decision_key,
    is_yes,
    percentile,
    render,
    route_matrix,
    same,
)


def ok(output, ms=10):
    return Call(ANSWERED, output, ms)


def pricing(asks, listing_id):
    return {"asks_price": asks, "listing_id": listing_id}


def turn(label=None, call=None, expected="price", route="price", ms=100.0):
    return Turn(
        expected_route=expected,
        route=route,
        latency_ms=ms,
        labels={} if label is None else {"pricing": label},
        calls={} if call is None else {"pricing": call},
    )


# Eight turns of one classifier, one case each:
PRICING_TURNS = [
    turn(pricing(True, "123456"), ok(pricing(True, "123456"), 5)),  # tp, fields right
    turn(pricing(True, "654321"), ok(pricing(True, "111111"), 7)),  # tp, listing_id wrong
    turn(pricing(True, "112233"), ok(pricing(False, None), 9)),  # fn, listing_id wrong
    turn(pricing(False, None), ok(pricing(True, "123456"), 11)),  # fp
    turn(pricing(False, None), ok(pricing(False, None), 13)),  # tn
    turn(pricing(False, None), Call("error", None, 30)),  # no answer: tn
    turn(pricing(True, "123456"), Call(CANCELLED, None, 2)),  # cancelled: skipped
    turn(pricing(True, "123456")),  # never logged: no answer, fn, fields wrong
]


def test_the_status_names_are_the_call_log_s():
    assert (ANSWERED, CANCELLED) == (ClassifierCall.Status.OK, ClassifierCall.Status.CANCELLED)


def test_a_classifier_s_decision_counts_and_scores():
    report = build(PRICING_TURNS)["classifiers"]["pricing"]
    assert report["decision"] == "asks_price"
    assert {k: report[k] for k in ("labelled", "scored", "skipped", "no_answer")} == {
        "labelled": 8, "scored": 7, "skipped": 1, "no_answer": 2
    }
    assert (report["tp"], report["fp"], report["fn"], report["tn"]) == (2, 1, 2, 2)
    assert report["precision"] == pytest.approx(2 / 3)  # 2 / (2 + 1)
    assert report["recall"] == pytest.approx(1 / 2)  # 2 / (2 + 2)
    assert report["f1"] == pytest.approx(4 / 7)  # 2 * 2/3 * 1/2 / (2/3 + 1/2)


def test_fields_are_scored_on_the_turns_labelled_yes():
    fields = build(PRICING_TURNS)["classifiers"]["pricing"]["fields"]
    # Labelled yes and scored: turns 1, 2, 3 and 8; only turn 1 has the right listing_id.
    assert fields == {
        "names": ["listing_id"],
        "checked": 4,
        "matched": 1,
        "rate": 0.25,
        "per_field": {"listing_id": {"matched": 1, "rate": 0.25}},
    }


def test_call_latency_counts_every_call_not_cancelled():
    figures = build(PRICING_TURNS)["classifiers"]["pricing"]["call_latency_ms"]
    # 5, 7, 9, 11, 13, 30: p50 is the 3rd (ceil 3.0), p90 and p99 the 6th.
    assert figures == {"n": 6, "p50": 9, "p90": 30, "p99": 30}


def test_undefined_ratios_are_none_not_zero():
    only_noes = [turn(pricing(False, None), ok(pricing(False, None)))]
    report = build(only_noes)["classifiers"]["pricing"]
    assert (report["precision"], report["recall"], report["f1"]) == (None, None, None)
    assert report["fields"]["rate"] is None
    all_wrong = [
        turn(pricing(True, "123456"), ok(pricing(False, None))),
        turn(pricing(False, None), ok(pricing(True, None))),
    ]
    report = build(all_wrong)["classifiers"]["pricing"]
    assert (report["precision"], report["recall"], report["f1"]) == (0.0, 0.0, 0.0)


def test_the_decision_is_the_first_field_boolean_in_every_label_in_any_key_order():
    # As exported from PostgreSQL's jsonb, which orders keys by length.
    assert decision_key([{"date": None, "time": None, "wants_call": True}]) == "wants_call"
    # A nullable boolean criterion before the decision is not the decision.
    search = [
        {"pets": True, "city": "Port Ellis", "wants_search": True},
        {"pets": None, "city": None, "wants_search": False},
    ]
    assert decision_key(search) == "wants_search"
    # No boolean field: the first field, yes meaning anything but "none".
    assert decision_key([{"action": "none"}, {"action": "cancel"}]) == "action"
    assert decision_key([]) is None
    assert decision_key([{}]) is None


def test_an_enumerated_decision_also_scores_its_value_as_a_field():
    turns = [
        Turn("x", "x", 1.0, {"change": {"action": "cancel"}}, {"change": ok({"action": "move"})}),
        Turn("x", "x", 1.0, {"change": {"action": "move"}}, {"change": ok({"action": "move"})}),
        Turn("x", "x", 1.0, {"change": {"action": "none"}}, {"change": ok({"action": "none"})}),
    ]
    report = build(turns)["classifiers"]["change"]
    assert (report["tp"], report["fp"], report["fn"], report["tn"]) == (2, 0, 0, 1)
    assert report["fields"]["names"] == ["action"]
    assert (report["fields"]["checked"], report["fields"]["matched"]) == (2, 1)


def test_yes_and_json_equality():
    assert [is_yes(v) for v in (True, "cancel", 1, ["garage"], {"a": 1})] == [True] * 5
    assert [is_yes(v) for v in (False, None, "none", "", 0, [], {})] == [False] * 7
    assert same({"a": [1, 2], "b": None}, {"b": None, "a": [1, 2]})
    assert not same(1, True)
    assert not same(["garage", "pool"], ["pool", "garage"])


def test_nearest_rank_percentiles():
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    assert [percentile([40, 10, 30, 20], p) for p in (50, 90, 99)] == [20, 40, 40]
    ten = list(range(1, 11))
    assert [percentile(ten, p) for p in (50, 90, 99)] == [5, 9, 10]


def test_every_classifier_a_label_or_a_call_names_is_reported():
    turns = [
        Turn("price", "price", 1.0, {"pricing": pricing(True, None)},
             {"pricing": ok(pricing(True, None)), "listing_search": ok({"wants": False}, 40)})
    ]
    report = build(turns)["classifiers"]
    assert list(report) == ["listing_search", "pricing"]
    unlabelled = report["listing_search"]
    assert (unlabelled["decision"], unlabelled["labelled"], unlabelled["scored"]) == (None, 0, 0)
    assert unlabelled["call_latency_ms"]["n"] == 1


def test_the_route_matrix_counts_expected_against_got():
    turns = [
        turn(expected="price", route="price"),
        turn(expected="price", route="handoff"),
        turn(expected="booking", route="booking"),
        turn(expected=None, route="fallback"),  # no expected route: not counted
        turn(expected="handoff", route=""),  # an error frame
    ]
    assert route_matrix(turns) == {
        "routes": [NO_ROUTE, "booking", "handoff", "price"],
        "counts": {"price": {"price": 1, "handoff": 1}, "booking": {"booking": 1},
                   "handoff": {NO_ROUTE: 1}},
        "right": 2,
        "total": 4,
    }


def test_the_text_has_aligned_columns():
    turns = [*PRICING_TURNS[:-1], turn(pricing(True, "123456"), expected="price", route="handoff")]
    lines = render(build(turns))
    header = next(line for line in lines if line.startswith("classifier  "))
    row = next(line for line in lines if line.startswith("pricing "))
    assert header.split() == ["classifier", "decision", "n", "skip", "noans", "tp", "fp", "fn",
                              "tn", "precision", "recall", "f1"]
    assert row.split() == ["pricing", "asks_price", "7", "1", "2", "2", "1", "2", "2", "0.667",
                           "0.500", "0.571"]
    assert len(header) == len(row)  # right-aligned numbers end under their headers
    assert "pricing     (all)           1/4  0.250" in lines
    matrix = lines.index("routes (rows: expected, columns: got; 7/8 right)")
    assert lines[matrix + 1:matrix + 4] == [
        "   expected  1  2",
        "1  handoff   .  .",
        "2  price     1  7",
    ]
    assert "turn          8  100.0  100.0  100.0" in lines
    assert "pricing call  6    9.0   30.0   30.0" in lines
    assert all(len(line) <= 100 for line in lines)


def test_an_empty_replay_still_renders():
    lines = render(build([]))
    assert "routes (rows: expected, columns: got; 0/0 right)" in lines
