"""Exports of conversations from the admin: CSV (a row per message), JSONL (a conversation a
line, every field) and the eval set (``agent.ops.evalset``), each as a download.

Plain functions that ``agent/admin.py``'s ``ConversationAdmin`` actions call.
"""

import csv
import io
import json
from collections.abc import Iterable

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Prefetch, QuerySet
from django.http import HttpResponse
from django.utils import timezone

from agent.models import ClassifierCall, Conversation, Message
from agent.ops.evalset import conversation_to_eval


def with_transcripts(queryset: QuerySet) -> QuerySet:
    """The conversations oldest first, with messages, classifier calls, handoffs and
    appointments prefetched (five queries whatever the number of conversations)."""
    calls = Prefetch("classifier_calls", queryset=ClassifierCall.objects.order_by("classifier"))
    messages = Prefetch(
        "messages", queryset=Message.objects.order_by("seq").prefetch_related(calls)
    )
    return (
        Conversation.objects.filter(pk__in=queryset.values("pk"))
        .order_by("created_at")
        .prefetch_related(messages, "handoffs", "appointments")
    )


def attachment(content: str, content_type: str, name: str) -> HttpResponse:
    """``content`` as a download: ``name`` ``conversations.csv`` becomes the file name
    ``conversations-YYYYMMDD-HHMMSS.csv`` (agency time)."""
    stem, ext = name.rsplit(".", 1)
    stamp = f"{timezone.localtime():%Y%m%d-%H%M%S}"
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{stem}-{stamp}.{ext}"'
    return response


CSV_COLUMNS = [
    "conversation", "conversation_created_at", "visitor_name", "visitor_email", "visitor_phone",
    "seq", "role", "created_at", "route", "latency_ms", "classifier_errors", "text",
]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str:
    """A value as a CSV cell; text that a spreadsheet would run as a formula (starting with
    = + - @ tab or CR, OWASP "CSV injection") gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def conversations_csv(conversations: Iterable[Conversation]) -> str:
    """One CSV row per message (``CSV_COLUMNS``), conversations in the given order.

    ``classifier_errors`` counts the failed classifier calls of a visitor message. Times are
    ISO 8601 with their UTC offset; ``latency_ms`` in milliseconds.
    """
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for conversation in conversations:
        for message in conversation.messages.all():
            errors = sum(1 for call in message.classifier_calls.all() if call.error)
            row = [
                conversation.id, conversation.created_at.isoformat(), conversation.visitor_name,
                conversation.visitor_email, conversation.visitor_phone, message.seq,
                message.role, message.created_at.isoformat(), message.route, message.latency_ms,
                errors if message.role == Message.Role.USER else "", message.text,
            ]
            writer.writerow([csv_cell(value) for value in row])
    return out.getvalue()


def _fields(obj, exclude: tuple[str, ...] = ()) -> dict:
    """Every concrete field of a row by attribute name (``realtor_id``), except ``exclude``, so
    fields added to a model later are exported without a change here."""
    return {
        f.attname: getattr(obj, f.attname)
        for f in obj._meta.concrete_fields
        if f.name not in exclude
    }


def conversation_record(conversation: Conversation) -> dict:
    """A conversation as one JSON object: its fields, ``messages`` (each with its
    ``classifier_calls``), ``handoffs`` and ``appointments``, every field of every row."""
    record = _fields(conversation)
    record["messages"] = [
        {
            **_fields(message, exclude=("id", "conversation")),
            "classifier_calls": [
                _fields(call, exclude=("id", "message")) for call in message.classifier_calls.all()
            ],
        }
        for message in conversation.messages.all()
    ]
    record["handoffs"] = [
        _fields(h, exclude=("conversation",)) for h in conversation.handoffs.all()
    ]
    record["appointments"] = [
        _fields(a, exclude=("conversation",)) for a in conversation.appointments.all()
    ]
    return record


def conversations_jsonl(conversations: Iterable[Conversation]) -> str:
    """One ``conversation_record`` a line, times as ISO 8601 strings, text as UTF-8."""
    return "".join(
        json.dumps(conversation_record(c), cls=DjangoJSONEncoder, ensure_ascii=False) + "\n"
        for c in conversations
    )


def eval_jsonl(conversations: Iterable[Conversation]) -> tuple[str, int]:
    """The conversations in the ``../shared/eval`` format, one a line
    (``agent.ops.evalset.conversation_to_eval``). Returns (the JSONL text, number of turns);
    conversations the bot never answered are left out."""
    lines, turns = [], 0
    for conversation in conversations:
        record = conversation_to_eval(conversation)
        if record is not None:
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
            turns += len(record["turns"])
    return "".join(lines), turns
