"""Replay evaluation conversations (``../shared/eval`` format) through the chat websocket.

A conversation is ``{"id": ..., "turns": [{"user", "listing", "route", "reply_contains",
"labels", "effects"}]}``; ``listing`` (optional) is the 6-digit ID of the listing on the
visitor's screen, sent with the message as the widget does. An ``appointment`` effect may
name its ``listing`` too. Dates in it are written relative to the day it runs:
``{weekday+N}`` is the N-th weekday (Monday to Friday) after today as ``YYYY-MM-DD``,
``{weekday+N:long}`` the same day as ``Thursday, December 3``, ``{sunday+N}`` the N-th Sunday
after today. Times are agency-local.
"""

import json
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Protocol

from channels.db import database_sync_to_async
from django.utils import timezone

from agent.models import ClassifierCall, Conversation, Handoff, Message
from agent.ops import evalreport
from listings.agencytime import agency_zone
from listings.booking import ACTIVE
from listings.models import Appointment

PLACEHOLDER = re.compile(r"\{(weekday|sunday)\+(\d+)(:long)?\}")
ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
REPLY_TIMEOUT = 30  # seconds to wait for the assistant's reply to one turn


def nth_day(today: date, kind: str, n: int) -> date:
    """The n-th weekday (Mon-Fri) or Sunday strictly after ``today``."""
    day, found = today, 0
    while found < n:
        day += timedelta(days=1)
        found += _is_kind(day, kind)
    return day


def _is_kind(day: date, kind: str) -> bool:
    return day.weekday() < 5 if kind == "weekday" else day.weekday() == 6


def expand(value: Any, today: date) -> Any:
    """Replace the date placeholders in every string of ``value`` (dicts and lists included)."""
    if isinstance(value, str):

        def replace(match: re.Match) -> str:
            day = nth_day(today, match[1], int(match[2]))
            return f"{day:%A, %B} {day.day}" if match[3] else day.isoformat()

        return PLACEHOLDER.sub(replace, value)
    if isinstance(value, list):
        return [expand(item, today) for item in value]
    if isinstance(value, dict):
        return {key: expand(item, today) for key, item in value.items()}
    return value


def load(path: Path, today: date) -> list[dict]:
    """Read a JSONL file of conversations, placeholders expanded for ``today``.

    Raises:
        ValueError: a line is not JSON or lacks ``id`` or ``turns``; the message names the line.
    """
    conversations = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            conversation = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: not JSON: {exc}") from None
        if not isinstance(conversation, dict) or not {"id", "turns"} <= conversation.keys():
            raise ValueError(f"{path}:{number}: an eval conversation needs an id and turns")
        conversations.append(expand(conversation, today))
    return conversations


class Chat(Protocol):
    """One visitor's open chat socket: JSON frames in and out."""

    async def send(self, frame: dict) -> None: ...

    async def receive(self) -> dict: ...


Connect = Callable[[], AbstractAsyncContextManager[Chat]]


@dataclass
class TurnResult:
    """How one turn went: ``problems`` empty means its route, reply and effects were right;
    ``label_misses`` lists classifiers whose output differed from the label; a call the
    fan-out cancelled (the route was known without it) is not checked. ``observed`` is what
    the report (``agent.ops.evalreport``) scores: expected and got route, the turn's latency,
    the labels and the calls logged."""

    conversation: str
    turn: int
    route: str
    problems: list[str] = field(default_factory=list)
    label_misses: list[str] = field(default_factory=list)
    labels_checked: int = 0
    observed: evalreport.Turn | None = None

    @property
    def passed(self) -> bool:
        return not self.problems


async def replay(
    conversations: list[dict],
    connect: Connect,
    *,
    keep_appointments: bool = False,
    clock: Callable[[], float] = time.perf_counter,
) -> AsyncIterator[TurnResult]:
    """Play each conversation as a new visitor and yield one ``TurnResult`` per turn.

    The appointments a conversation booked are cancelled once it is checked, so that the
    replay can run again and finds the realtors free; ``keep_appointments`` leaves them.
    ``clock`` gives seconds (monotonic); a turn's latency is from sending the visitor's
    message to receiving the assistant's reply (or the error frame).
    """
    for conversation in conversations:
        async with connect() as chat:
            history = await chat.receive()
            conversation_id = history["conversation"]
            for number, expected in enumerate(conversation["turns"], start=1):
                yield await _play_turn(
                    chat, conversation["id"], conversation_id, number, expected, clock
                )
        if not keep_appointments:
            await Appointment.objects.filter(conversation_id=conversation_id).aupdate(
                status=Appointment.Status.CANCELLED
            )


async def _play_turn(
    chat: Chat,
    name: str,
    conversation_id: str,
    number: int,
    expected: dict,
    clock: Callable[[], float],
) -> TurnResult:
    frame = {"type": "message", "text": expected["user"]}
    if expected.get("listing"):
        frame["listing"] = expected["listing"]
    started = clock()
    await chat.send(frame)
    seq, reply = None, None
    while reply is None:
        frame = await chat.receive()
        if frame["type"] == "error":
            result = TurnResult(name, number, "", [f"error frame: {frame['message']}"])
            calls = await database_sync_to_async(_calls)(conversation_id, seq)
            result.observed = _observed(expected, result.route, clock() - started, calls)
            return result
        if frame["type"] == "message" and frame["role"] == "user":
            seq = frame["seq"]
        elif frame["type"] == "message":
            reply = frame
    elapsed = clock() - started
    result = TurnResult(name, number, reply.get("route", ""))
    if "route" in expected and result.route != expected["route"]:
        result.problems.append(f"route {result.route!r}, expected {expected['route']!r}")
    for part in expected.get("reply_contains", []):
        if part.lower() not in reply["text"].lower():
            result.problems.append(f"reply lacks {part!r}: {reply['text']!r}")
    result.problems += await database_sync_to_async(_check_effects)(
        conversation_id, expected.get("effects", {})
    )
    calls = await database_sync_to_async(_calls)(conversation_id, seq)
    result.observed = _observed(expected, result.route, elapsed, calls)
    outputs = {
        name: CANCELLED if call.status == ClassifierCall.Status.CANCELLED else call.output
        for name, call in calls.items()
    }
    # A call cancelled because the route was already known has no answer to score.
    labels = {name: label for name, label in expected.get("labels", {}).items()
              if outputs.get(name, {}) is not CANCELLED}
    result.labels_checked = len(labels)
    result.label_misses = [
        f"{name}: {outputs.get(name)} != {label}"
        for name, label in labels.items()
        if outputs.get(name) != label
    ]
    return result


CANCELLED = object()  # the output of a call cancelled by the fan-out's early exit


def _calls(conversation_id: str, seq: int | None) -> dict[str, evalreport.Call]:
    """The classifier calls logged for the visitor message ``seq`` (none if it is None)."""
    if seq is None:
        return {}
    calls = ClassifierCall.objects.filter(
        message__conversation_id=conversation_id, message__seq=seq
    )
    return {
        call.classifier: evalreport.Call(call.status, call.output, call.latency_ms)
        for call in calls
    }


def _observed(
    expected: dict, route: str, seconds: float, calls: dict[str, evalreport.Call]
) -> evalreport.Turn:
    return evalreport.Turn(
        expected_route=expected.get("route"),
        route=route,
        latency_ms=seconds * 1000,
        labels=expected.get("labels", {}),
        calls=calls,
    )


def _check_effects(conversation_id: str, effects: dict) -> list[str]:
    problems = []
    if "appointment" in effects:
        want = effects["appointment"]
        booked = [
            (timezone.localtime(a.starts_at, agency_zone()), a.listing.listing_id if a.listing
             else None)
            for a in Appointment.objects.filter(
                conversation_id=conversation_id, status__in=ACTIVE
            ).select_related("listing")
        ]
        if not any(
            f"{t:%Y-%m-%d}" == want["date"] and f"{t:%H:%M}" == want["time"]
            and want.get("listing", listing) == listing
            for t, listing in booked
        ):
            of = f" of listing {want['listing']}" if "listing" in want else ""
            problems.append(f"no appointment{of} on {want['date']} at {want['time']}")
    if "handoff" in effects:
        has = Handoff.objects.filter(conversation_id=conversation_id).exists()
        if has != bool(effects["handoff"]):
            problems.append(f"handoff queued: {has}, expected {effects['handoff']}")
    return problems


def relative_dates(text: str, today: date) -> str:
    """Write the ISO dates (``YYYY-MM-DD``) of ``text`` that fall after ``today`` as placeholders,
    so that a recorded conversation asks for the same kind of day whenever it is replayed.

    The inverse of ``expand``: a weekday becomes ``{weekday+N}``, a Sunday ``{sunday+N}``.
    Saturdays, ``today`` and earlier dates, and impossible dates stay as written.
    """

    def replace(match: re.Match) -> str:
        try:
            day = date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            return match[0]
        if day <= today or day.weekday() == 5:
            return match[0]
        kind = "sunday" if day.weekday() == 6 else "weekday"
        n = sum(_is_kind(today + timedelta(days=k), kind) for k in range(1, (day - today).days + 1))
        return f"{{{kind}+{n}}}"

    return ISO_DATE.sub(replace, text)


def bot_turns(messages: list[Message]) -> list[tuple[Message, Message]]:
    """The (visitor message, bot reply) pairs of a transcript ordered by ``seq``, up to the first
    visitor message the bot did not answer next (a staff takeover, or a turn that failed).

    A replay can only reproduce turns the bot answered, and later turns depend on earlier ones.
    """
    turns = []
    for message, following in zip(messages, messages[1:] + [None], strict=True):
        if message.role != Message.Role.USER:
            continue
        if following is None or following.role != Message.Role.ASSISTANT or not following.route:
            break
        turns.append((message, following))
    return turns


def conversation_to_eval(conversation: Conversation) -> dict | None:
    """One recorded conversation in the ``../shared/eval`` format, or None if the bot answered
    none of its turns.

    ``conversation`` should come with ``messages__classifier_calls``, ``handoffs`` and
    ``appointments`` prefetched. Each turn gets its visitor text, the route the router took,
    an empty ``reply_contains`` (replies hold dates and names, so staff add substrings by hand),
    the parsed output of each classifier that answered as its label (a failed call gives no
    label, rather than expecting the failure again), and its effects: the appointment the turn
    booked (agency-local date and time, cancelled or not) and ``"handoff": true`` on the turn
    that queued a handoff. Dates after the conversation's first day become placeholders
    (``relative_dates``). The ``id`` is ``conversation-<uuid>``.
    """
    turns = bot_turns(list(conversation.messages.all()))
    if not turns:
        return None
    zone = agency_zone()
    day = timezone.localtime(turns[0][0].created_at, zone).date()
    handoff_messages = {h.message_id for h in conversation.handoffs.all()}
    appointments = list(conversation.appointments.all())
    eval_turns = []
    for question, reply in turns:
        labels = {
            call.classifier: call.output
            for call in question.classifier_calls.all()
            if call.output is not None and not call.error
        }
        effects = {}
        booked = [
            a for a in appointments if question.created_at <= a.created_at <= reply.created_at
        ]
        if booked:
            starts = timezone.localtime(booked[0].starts_at, zone)
            effects["appointment"] = {"date": f"{starts:%Y-%m-%d}", "time": f"{starts:%H:%M}"}
        if question.id in handoff_messages:
            effects["handoff"] = True
        turn = {"user": question.text, "route": reply.route, "reply_contains": [], "labels": labels}
        if question.page_listing:
            turn["listing"] = question.page_listing
        if effects:
            turn["effects"] = effects
        eval_turns.append(turn)
    return {"id": f"conversation-{conversation.id}", "turns": relative(eval_turns, day)}


def relative(value: Any, today: date) -> Any:
    """``relative_dates`` applied to every string of ``value`` (dicts and lists included)."""
    if isinstance(value, str):
        return relative_dates(value, today)
    if isinstance(value, list):
        return [relative(item, today) for item in value]
    if isinstance(value, dict):
        return {key: relative(item, today) for key, item in value.items()}
    return value
