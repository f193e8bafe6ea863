"""The replay report: per-classifier decision and field scores, a route confusion matrix and
latency percentiles, computed from what the replay saw. Pure: no database, no clock.

Every figure is derived from the eval file's labels and the calls the turn logged, for whatever
classifiers they name (README "Evaluation" defines them for readers):

- A classifier's **decision field** is the first field of its first label (in the file's
  order) that holds a boolean in every one of its labels (``asks_price``, ``wants_call``);
  failing that, the first field of its first label (``action``). Its value means **yes** unless
  it is ``false``, ``null``, ``"none"``, ``""``, ``0``, ``[]`` or ``{}``.
- A turn **scores** a classifier when it has a label for it and the call was not cancelled by
  the fan-out's early exit (the route was known without it). A call that failed, timed out or
  was never logged has **no answer**: its decision counts as no, its fields as wrong.
- The **extracted fields** are the label's other fields, and the decision field itself when it
  is not a boolean (``action``: which yes it is matters). Their exact-match rate is over the
  scored turns whose label says yes (a no's fields carry nothing): the share whose output equals
  the label in every one of them (JSON equality: ``1`` is not ``true``, lists compare in order).
- Latency percentiles are nearest-rank: p of n sorted values is the ceil(p/100 * n)-th.
"""

import json
import math
from dataclasses import dataclass, field
from typing import Any

CANCELLED = "cancelled"  # ClassifierCall.Status.CANCELLED: the fan-out's early exit
ANSWERED = "ok"  # ClassifierCall.Status.OK
PERCENTILES = (50, 90, 99)
OUTCOME = {(True, True): "tp", (False, True): "fp", (True, False): "fn", (False, False): "tn"}
NO_ROUTE = "(none)"  # the got-route of a turn that ended in an error frame


@dataclass(frozen=True)
class Call:
    """One classifier call the turn logged: ``status`` as on ClassifierCall ("ok", "error",
    "timeout", "cancelled"), ``output`` its parsed JSON answer or None, ``latency_ms`` its wall
    time in milliseconds."""

    status: str
    output: Any
    latency_ms: float


@dataclass(frozen=True)
class Turn:
    """What the replay saw of one turn: the route the file expects (None: not checked) and the
    one the router took ("" for an error frame), the turn's wall time in milliseconds (message
    sent to reply received), the file's labels by classifier, and the logged calls by classifier.
    """

    expected_route: str | None
    route: str
    latency_ms: float
    labels: dict[str, dict] = field(default_factory=dict)
    calls: dict[str, Call] = field(default_factory=dict)


def is_yes(value: Any) -> bool:
    """Whether a decision field's value means yes: anything but false, null, "none", "", a zero
    number, an empty list or object."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return value not in ("", "none")
    return bool(value)


def same(a: Any, b: Any) -> bool:
    """JSON equality: equal as JSON texts with sorted keys (so ``1`` differs from ``true``)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def decision_key(labels: list[dict]) -> str | None:
    """The decision field of a classifier given its labels in file order (see the module's
    docstring); None when its first label is empty or there are no labels."""
    if not labels or not labels[0]:
        return None
    for key in labels[0]:
        if all(isinstance(label.get(key), bool) for label in labels):
            return key
    return next(iter(labels[0]))


def percentile(values: list[float], p: float) -> float | None:
    """The nearest-rank p-th percentile of ``values`` (0 < p <= 100); None if there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def latency(values: list[float]) -> dict:
    """``{"n": count, "p50": ms, "p90": ms, "p99": ms}``, the percentiles None when n is 0."""
    return {"n": len(values), **{f"p{p}": percentile(values, p) for p in PERCENTILES}}


def ratio(part: int, whole: int) -> float | None:
    """part / whole, or None when whole is 0 (the figure is undefined, not zero)."""
    return part / whole if whole else None


def classifier_report(name: str, turns: list[Turn]) -> dict:
    """One classifier's figures over ``turns``: counts (``labelled`` turns with a label,
    ``scored``, ``skipped`` as cancelled, ``no_answer``), the confusion counts ``tp``, ``fp``,
    ``fn``, ``tn`` of its decision, ``precision`` tp/(tp+fp), ``recall`` tp/(tp+fn), ``f1``
    their harmonic mean (each None when its denominator is 0), ``fields`` (the extracted
    fields' names, ``checked``, ``matched``, ``rate`` and per field ``{"matched", "rate"}``), and
    ``call_latency_ms`` over every logged call of it that was not cancelled, labelled or not."""
    labelled = [t for t in turns if name in t.labels]
    key = decision_key([t.labels[name] for t in labelled])
    # An enumerated decision ("cancel" or "move") is also a field: which yes it is matters.
    boolean = all(isinstance(t.labels[name].get(key), bool) for t in labelled)
    scored_key = key if boolean else None
    counts = dict(labelled=len(labelled), scored=0, skipped=0, no_answer=0, tp=0, fp=0, fn=0, tn=0)
    field_names = [k for t in labelled for k in t.labels[name] if k != scored_key]
    field_names = list(dict.fromkeys(field_names))
    checked, matched, per_field = 0, 0, {f: 0 for f in field_names}
    for turn in labelled:
        label, call = turn.labels[name], turn.calls.get(name)
        if call is not None and call.status == CANCELLED:
            counts["skipped"] += 1
            continue
        counts["scored"] += 1
        answered = call is not None and call.status == ANSWERED and isinstance(call.output, dict)
        output = call.output if answered else {}
        counts["no_answer"] += not answered
        want = key is not None and is_yes(label.get(key))
        got = key is not None and answered and is_yes(output.get(key))
        counts[OUTCOME[want, got]] += 1
        others = [k for k in label if k != scored_key]
        if want and others:
            checked += 1
            right = [k for k in others if k in output and same(output[k], label[k])]
            matched += len(right) == len(others)
            for k in right:
                per_field[k] += 1
    precision = ratio(counts["tp"], counts["tp"] + counts["fp"])
    recall = ratio(counts["tp"], counts["tp"] + counts["fn"])
    f1 = None
    if precision is not None and recall is not None:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    call_ms = [t.calls[name].latency_ms for t in turns
               if name in t.calls and t.calls[name].status != CANCELLED]
    return {
        "decision": key,
        **counts,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "fields": {
            "names": field_names,
            "checked": checked,
            "matched": matched,
            "rate": ratio(matched, checked),
            "per_field": {
                f: {"matched": per_field[f], "rate": ratio(per_field[f], checked)}
                for f in field_names
            },
        },
        "call_latency_ms": latency(call_ms),
    }


def route_matrix(turns: list[Turn]) -> dict:
    """The route confusion matrix over the turns that expect a route: ``routes`` (every route
    expected or got, sorted; an error frame's is ``NO_ROUTE``), ``counts`` as
    ``{expected: {got: n}}`` holding only non-zero cells, ``right`` (the diagonal) and ``total``.
    """
    counts: dict[str, dict[str, int]] = {}
    for turn in turns:
        if turn.expected_route is None:
            continue
        row = counts.setdefault(turn.expected_route, {})
        got = turn.route or NO_ROUTE
        row[got] = row.get(got, 0) + 1
    routes = sorted(set(counts) | {got for row in counts.values() for got in row})
    return {
        "routes": routes,
        "counts": counts,
        "right": sum(row.get(expected, 0) for expected, row in counts.items()),
        "total": sum(sum(row.values()) for row in counts.values()),
    }


def build(turns: list[Turn]) -> dict:
    """The report as JSON-ready data: ``classifiers`` by name (every classifier a label or a
    logged call names, sorted; see ``classifier_report``), ``routes`` (``route_matrix``) and
    ``turn_latency_ms`` (``latency`` over every turn)."""
    names = sorted({n for t in turns for n in t.labels} | {n for t in turns for n in t.calls})
    return {
        "classifiers": {name: classifier_report(name, turns) for name in names},
        "routes": route_matrix(turns),
        "turn_latency_ms": latency([t.latency_ms for t in turns]),
    }


def table(header: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    """Lines of a table with aligned columns: the first ``left`` columns left-aligned, the rest
    right-aligned, two spaces between columns."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in [header, *rows]
    ]


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _share(part: int, whole: int) -> str:
    return f"{part}/{whole}" if whole else "-"


def render(report: dict) -> list[str]:
    """The report (``build``'s) as text lines for a terminal, each table at most ~100 columns:
    the classifiers' decisions, their extracted fields, the route confusion matrix, latencies."""
    classifiers = report["classifiers"]
    lines = ["classifier decisions (n: turns scored; skip: labelled but cancelled by the early "
             "exit;", "  noans: failed, timed out or not logged, counted as no)"]
    rows = [
        [name, c["decision"] or "(no labels)", *(str(c[k]) for k in COUNTS.values()),
         _num(c["precision"]), _num(c["recall"]), _num(c["f1"])]
        for name, c in classifiers.items()
    ]
    lines += table(["classifier", "decision", *COUNTS, "precision", "recall", "f1"], rows, 2)
    field_rows = []
    for name, c in classifiers.items():
        f = c["fields"]
        if f["names"]:
            field_rows.append([name, "(all)", _share(f["matched"], f["checked"]), _num(f["rate"])])
        for field_name, one in f["per_field"].items():
            field_rows.append(
                ["", field_name, _share(one["matched"], f["checked"]), _num(one["rate"])]
            )
    if field_rows:
        lines += ["", "extracted fields (exact match over the scored turns labelled yes)"]
        lines += table(["classifier", "field", "matched", "rate"], field_rows, left=2)
    lines += ["", *render_matrix(report["routes"])]
    latency_rows = [["turn", *_percentiles(report["turn_latency_ms"])]]
    latency_rows += [
        [f"{name} call", *_percentiles(c["call_latency_ms"])] for name, c in classifiers.items()
    ]
    lines += ["", "latency ms (turn: message sent to reply received; call: as logged)"]
    lines += table(["", "n", *(f"p{p}" for p in PERCENTILES)], latency_rows)
    return lines


# The decision table's count columns: header and the classifier report's key.
COUNTS = {"n": "scored", "skip": "skipped", "noans": "no_answer", "tp": "tp", "fp": "fp",
          "fn": "fn", "tn": "tn"}


def _percentiles(figures: dict) -> list[str]:
    return [str(figures["n"]), *(_num(figures[f"p{p}"], 1) for p in PERCENTILES)]


def render_matrix(routes: dict) -> list[str]:
    """The route confusion matrix as lines: a row per expected route, numbered, and a column
    per route by the same numbers; zero cells print as ``.``."""
    names, counts = routes["routes"], routes["counts"]
    lines = [f"routes (rows: expected, columns: got; {routes['right']}/{routes['total']} right)"]
    if not names:
        return lines
    header = ["", "expected", *[str(i) for i in range(1, len(names) + 1)]]
    rows = [
        [str(i), name, *[str(counts.get(name, {}).get(got, 0) or ".") for got in names]]
        for i, name in enumerate(names, start=1)
    ]
    return lines + table(header, rows, left=2)
