"""Reviewing conversations in the admin: list filters, full-text search, and the per-turn trace
of classifier calls. The exports (CSV, JSONL, eval set) are in ``agent.staff.exports``.

Plain functions and small classes that ``agent/admin.py`` wires into ``ConversationAdmin``.
Everything shown comes from visitors or from a model, so all of it goes through ``format_html``.
"""

import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.contrib import admin
from django.contrib.postgres.search import SearchQuery
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from agent.llm.classifiers import HISTORY_MESSAGES
from agent.models import (
    SEARCH_CONFIG,
    ClassifierCall,
    Handoff,
    Message,
    Route,
    message_search_vector,
)
from listings.models import Appointment

# --- list filters -------------------------------------------------------------------------------


class YesNoFilter(admin.SimpleListFilter):
    """A yes/no filter on whether a conversation has a related row; subclasses give ``related``,
    a queryset of rows whose ``conversation`` is ``OuterRef("pk")``."""

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def related(self) -> QuerySet:
        raise NotImplementedError

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(Exists(self.related()))
        if self.value() == "no":
            return queryset.exclude(Exists(self.related()))
        return queryset


class HasHandoffFilter(YesNoFilter):
    title = "has a handoff"
    parameter_name = "has_handoff"

    def related(self):
        return Handoff.objects.filter(conversation=OuterRef("pk"))


class HasBookingFilter(YesNoFilter):
    """Conversations that booked an appointment, whether or not it was cancelled later."""

    title = "has a booking"
    parameter_name = "has_booking"

    def related(self):
        return Appointment.objects.filter(conversation=OuterRef("pk"))


class HadLLMErrorFilter(YesNoFilter):
    """Conversations where at least one classifier call failed (error, timeout, bad answer)."""

    title = "had an LLM error"
    parameter_name = "llm_error"

    def related(self):
        return ClassifierCall.objects.filter(message__conversation=OuterRef("pk")).exclude(error="")


class RouteFilter(admin.SimpleListFilter):
    """Conversations in which the router took a route at least once."""

    title = "route"
    parameter_name = "route"

    def lookups(self, request, model_admin):
        return Route.choices

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return queryset.filter(
            Exists(Message.objects.filter(conversation=OuterRef("pk"), route=self.value()))
        )


# (parameter value, label, lowest ms, highest ms exclusive or None). Turn latency is from storing
# the visitor's message to storing the reply; the turn budget (TURN_BUDGET, 2.5 s) bounds the
# classifier calls, so a turn of several seconds waited for the database or a busy server.
LATENCY_BUCKETS = [
    ("lt1", "under 1 s", 0, 1000),
    ("1to3", "1 to 3 s", 1000, 3000),
    ("3to10", "3 to 10 s", 3000, 10_000),
    ("10plus", "10 s or more", 10_000, None),
]


class SlowestTurnFilter(admin.SimpleListFilter):
    """Conversations by their slowest turn (``slowest_turn_ms``, annotated by the admin's
    queryset), in ``LATENCY_BUCKETS``."""

    title = "slowest turn"
    parameter_name = "slowest"

    def lookups(self, request, model_admin):
        return [(value, label) for value, label, _, _ in LATENCY_BUCKETS]

    def queryset(self, request, queryset):
        for value, _, low, high in LATENCY_BUCKETS:
            if self.value() == value:
                queryset = queryset.filter(slowest_turn_ms__gte=low)
                return queryset if high is None else queryset.filter(slowest_turn_ms__lt=high)
        return queryset


# --- search -------------------------------------------------------------------------------------


def search_conversations(queryset: QuerySet, term: str) -> QuerySet:
    """Conversations with a message matching ``term``, or whose visitor name, email or phone
    contains it.

    The message match is PostgreSQL full-text search in the ``SEARCH_CONFIG`` language, with
    web-search syntax (``"exact phrase"``, ``or``, ``-word``; never a syntax error); it uses the
    GIN index ``message_text_search``. Returns ``queryset`` filtered, without duplicates.
    """
    term = term.strip()
    if not term:
        return queryset
    query = SearchQuery(term, config=SEARCH_CONFIG, search_type="websearch")
    matching = Message.objects.annotate(search=message_search_vector()).filter(
        conversation=OuterRef("pk"), search=query
    )
    return queryset.filter(
        Exists(matching)
        | Q(visitor_name__icontains=term)
        | Q(visitor_email__icontains=term)
        | Q(visitor_phone__icontains=term)
    )


# --- the per-turn trace -------------------------------------------------------------------------


def input_summary(call: ClassifierCall) -> str:
    """What the classifier was sent: its prompt and the messages of the context window, e.g.
    ``pricing prompt + messages #1–#3``. The window is the latest ``HISTORY_MESSAGES`` messages
    up to the visitor's (``agent.chat.turn.chat_history``)."""
    seq = call.message.seq
    first = max(1, seq - HISTORY_MESSAGES + 1)
    window = f"message #{seq}" if first == seq else f"messages #{first}–#{seq}"
    return f"{call.classifier} prompt + {window}"


def parsed_output(call: ClassifierCall) -> SafeString | str:
    if call.output is None:
        return "—"
    return format_html("<code>{}</code>", json.dumps(call.output, ensure_ascii=False))


def raw_output(call: ClassifierCall) -> SafeString | str:
    if not call.raw_output:
        return "—"
    return format_html("<code>{}</code>", Truncator(call.raw_output).chars(300))


def error(call: ClassifierCall) -> SafeString | str:
    if not call.error:
        return ""
    return format_html('<span style="color: var(--error-fg)">error: {}</span>', call.error)


@dataclass(frozen=True)
class TraceColumn:
    """A column of the trace table: its title, and ``cell(call)``, text (escaped when shown) or
    ``format_html`` output."""

    title: str
    cell: Callable[[ClassifierCall], object]


# One line per column. When the fan-out engine stores more per call (status, retries, wait,
# classifier version), each is one more line here, e.g.
# ``TraceColumn("retries", lambda call: call.retries)``.
TRACE_COLUMNS = [
    TraceColumn(
        "classifier",
        lambda call: format_html(
            '<strong>{}</strong> <span class="quiet">v{}</span>',
            call.classifier,
            call.classifier_version,
        ),
    ),
    TraceColumn("model", lambda call: call.model),
    TraceColumn("status", lambda call: call.status),
    TraceColumn("input", input_summary),
    TraceColumn("parsed output", parsed_output),
    TraceColumn("raw output", raw_output),
    TraceColumn("latency", lambda call: f"{call.latency_ms} ms"),
    TraceColumn("slot wait", lambda call: f"{call.wait_ms} ms"),
    TraceColumn("retries", lambda call: call.retries),
    TraceColumn("error", error),
]


def bot_replies(messages: list[Message]) -> dict[int, Message]:
    """The bot's reply to each visitor message that got one, by the visitor message's ``seq``.

    A visitor can send again while a turn runs (user #1, user #2, reply #3, reply #4), so a
    reply answers the oldest visitor message still waiting: the consumer runs a visitor's turns
    one at a time, in order. A waiting message without classifier calls, when a later one is
    waiting too, is passed over: its turn failed before the classifiers (every turn that reaches
    them stores its calls before its reply). Visitor messages with a route of their own (sent
    to staff) wait for no bot reply. ``messages`` are ordered by seq, calls prefetched.
    """
    waiting, replies = deque(), {}
    for message in messages:
        if message.role == Message.Role.USER and not message.route:
            waiting.append(message)
        elif message.role == Message.Role.ASSISTANT and message.route:
            while len(waiting) > 1 and not waiting[0].classifier_calls.all():
                waiting.popleft()
            if waiting:
                replies[waiting.popleft().seq] = message
    return replies


def turn_trace(messages: Iterable[Message]) -> SafeString:
    """The trace of a transcript: for each visitor message, a heading with the bot's route and
    the turn's latency (``bot_replies``), and a table with a row per classifier call and a
    column per ``TRACE_COLUMNS``.

    ``messages`` are ordered by seq, with ``classifier_calls`` prefetched (no query per turn).
    """
    messages = list(messages)
    replies = bot_replies(messages)
    head = format_html_join("", "<th>{}</th>", ((c.title,) for c in TRACE_COLUMNS))
    sections = []
    for message in messages:
        if message.role != Message.Role.USER:
            continue
        reply = replies.get(message.seq)
        if reply is not None:
            outcome = format_html("{} · {} ms", route_label(reply.route), reply.latency_ms)
        elif message.route:
            outcome = route_label(message.route)
        else:
            outcome = "no bot reply"
        calls = message.classifier_calls.all()
        rows = format_html_join(
            "",
            "<tr>{}</tr>",
            (
                (format_html_join("", "<td>{}</td>", ((c.cell(call),) for c in TRACE_COLUMNS)),)
                for call in calls
            ),
        )
        table = (
            format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, rows)
            if calls
            else "no classifier calls"
        )
        sections.append(
            format_html(
                "<h3>Turn #{}: {} → {}</h3>{}",
                message.seq, Truncator(message.text).chars(120), outcome, table,
            )
        )
    if not sections:
        return format_html("{}", "no turns yet")
    return format_html_join("", "<div>{}</div>", ((section,) for section in sections))


def route_label(value: str) -> str:
    """The readable name of a stored route, or the stored value if it is not a known route."""
    try:
        return Route(value).label
    except ValueError:
        return value or "—"
