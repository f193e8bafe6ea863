"""Staff views of the chat: read-only transcripts with every classifier call, and the handoff queue.

Everything shown comes from visitors or from a model, so all of it goes through ``format_html``.
"""

import json

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Count, OuterRef, Prefetch, Subquery
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from .models import (
    ClassifierCall,
    ClassifierConfig,
    Conversation,
    Endpoint,
    Handoff,
    Message,
    Route,
)


def contact(name: str, email: str, phone: str) -> str:
    """One line of whatever contact details a visitor left: ``Ann · ann@example.com · 555 0100``."""
    return " · ".join(part for part in (name, email, phone) if part) or "—"


def conversation_link(conversation_id) -> str:
    """A link to the conversation's transcript in the admin, or an empty string."""
    if conversation_id is None:
        return ""
    url = reverse("admin:agent_conversation_change", args=[conversation_id])
    return format_html('<a href="{}">{}</a>', url, str(conversation_id)[:8])


def route_label(value: str) -> str:
    """The readable name of a stored route, or the stored value if it is not a known route."""
    try:
        return Route(value).label
    except ValueError:
        return value or "—"


def call_timing(call: ClassifierCall) -> str:
    """``412 ms``, plus the slot wait and retries when there were any:
    ``412 ms (waited 30 ms, 1 retry)``."""
    extra = []
    if call.wait_ms:
        extra.append(f"waited {call.wait_ms} ms")
    if call.retries:
        extra.append(f"{call.retries} {'retry' if call.retries == 1 else 'retries'}")
    return f"{call.latency_ms} ms" + (f" ({', '.join(extra)})" if extra else "")


def classifier_call_item(call: ClassifierCall):
    """One line per call: ``pricing v2 {"asks_price": true} · 412 ms · model``, errors in red,
    cancelled calls (the route was known without them) in grey.

    A block ``<span>``, since the admin puts read-only values inside a ``<p>``.
    """
    if call.output is not None:
        output = format_html("<code>{}</code>", json.dumps(call.output, ensure_ascii=False))
    elif call.status == ClassifierCall.Status.CANCELLED:
        output = format_html('<span class="quiet">cancelled: route already known</span>')
    elif call.raw_output:
        output = format_html("no parsed output; raw: <code>{}</code>",
                             Truncator(call.raw_output).chars(200))
    else:
        output = "no output"
    error = ""
    if call.error:
        error = format_html(' · <span style="color: var(--error-fg)">error: {}</span>', call.error)
    if call.status == ClassifierCall.Status.TIMEOUT:
        error = format_html(' · <span style="color: var(--error-fg)">timeout</span>{}', error)
    return format_html(
        '<span style="display: block"><strong>{}</strong> <span class="quiet">v{}</span> {} · '
        '{} · <span class="quiet">{}</span>{}</span>',
        call.classifier, call.classifier_version, output, call_timing(call), call.model, error,
    )


class MessageInline(admin.TabularInline):
    """The transcript, in order; each visitor message lists the classifier calls of its turn."""

    model = Message
    fields = ["seq", "role", "text", "route", "latency_ms", "created_at", "classifiers"]
    readonly_fields = fields
    ordering = ["seq"]
    extra = 0
    can_delete = False
    verbose_name_plural = "transcript"

    def get_queryset(self, request):
        calls = Prefetch("classifier_calls", queryset=ClassifierCall.objects.order_by("classifier"))
        return super().get_queryset(request).prefetch_related(calls)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="classifier calls")
    def classifiers(self, message):
        if message.role != Message.Role.USER:
            return ""
        calls = message.classifier_calls.all()
        if not calls:
            return "no classifier calls"
        return format_html_join("", "{}", ((classifier_call_item(call),) for call in calls))


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    """Conversations are written by the chat only; staff read them."""

    list_display = ["short_id", "created_at", "message_count", "last_route", "visitor"]
    list_filter = ["created_at"]
    search_fields = ["visitor_name", "visitor_email", "visitor_phone"]
    date_hierarchy = "created_at"
    fields = [
        "id", "created_at", "session_key", "visitor_name", "visitor_email", "visitor_phone",
        "last_seq",
    ]
    readonly_fields = fields
    inlines = [MessageInline]

    def get_queryset(self, request):
        last_route = (
            Message.objects.filter(conversation=OuterRef("pk"), role=Message.Role.ASSISTANT)
            .exclude(route="")
            .order_by("-seq")
            .values("route")[:1]
        )
        return (
            super()
            .get_queryset(request)
            .annotate(message_count=Count("messages"), last_route=Subquery(last_route))
        )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="ID", ordering="id")
    def short_id(self, obj):
        return str(obj.id)[:8]

    @admin.display(description="messages", ordering="message_count")
    def message_count(self, obj):
        return obj.message_count

    @admin.display(description="last route", ordering="last_route")
    def last_route(self, obj):
        return route_label(obj.last_route) if obj.last_route else "—"

    @admin.display(description="visitor")
    def visitor(self, obj):
        return contact(obj.visitor_name, obj.visitor_email, obj.visitor_phone)


@admin.register(Handoff)
class HandoffAdmin(admin.ModelAdmin):
    """The queue of conversations waiting for a person, oldest first.

    Staff change only the status and who claimed it; the times are filled in on save.
    """

    list_display = ["created_at", "status", "short_reason", "claimed_by", "transcript"]
    list_filter = ["status"]
    list_select_related = ["claimed_by"]
    fields = [
        "transcript", "visitor_message", "reason", "status", "claimed_by",
        "created_at", "claimed_at", "resolved_at",
    ]
    readonly_fields = [
        "transcript", "visitor_message", "reason", "created_at", "claimed_at", "resolved_at",
    ]

    def has_add_permission(self, request):
        return False

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "claimed_by":
            kwargs["queryset"] = get_user_model().objects.filter(is_staff=True, is_active=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        now = timezone.now()
        if obj.status in (Handoff.Status.CLAIMED, Handoff.Status.RESOLVED):
            if obj.claimed_by is None:
                obj.claimed_by = request.user
            if obj.claimed_at is None:
                obj.claimed_at = now
        if obj.status == Handoff.Status.RESOLVED and obj.resolved_at is None:
            obj.resolved_at = now
        super().save_model(request, obj, form, change)

    @admin.display(description="reason")
    def short_reason(self, obj):
        return Truncator(obj.reason).chars(80)

    @admin.display(description="transcript")
    def transcript(self, obj):
        return conversation_link(obj.conversation_id)

    @admin.display(description="visitor message")
    def visitor_message(self, obj):
        return obj.message.text if obj.message else "—"


class HasErrorFilter(admin.SimpleListFilter):
    title = "has error"
    parameter_name = "has_error"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(error="")
        if self.value() == "no":
            return queryset.filter(error="")
        return queryset


@admin.register(ClassifierCall)
class ClassifierCallAdmin(admin.ModelAdmin):
    """Every classifier call, newest first, to find failures and slow models."""

    list_display = [
        "created_at", "classifier", "classifier_version", "model", "status", "short_output",
        "latency_ms", "wait_ms", "retries", "has_error", "transcript",
    ]
    list_filter = ["classifier", "status", HasErrorFilter, "model"]
    list_select_related = ["message"]
    search_fields = ["error", "raw_output"]
    ordering = ["-created_at"]
    fields = [
        "transcript", "visitor_message", "classifier", "classifier_version", "model", "status",
        "output", "raw_output", "latency_ms", "wait_ms", "retries", "error", "created_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="output")
    def short_output(self, obj):
        if obj.output is None:
            return "—"
        return Truncator(json.dumps(obj.output, ensure_ascii=False)).chars(80)

    @admin.display(description="error", boolean=True)
    def has_error(self, obj):
        return bool(obj.error)

    @admin.display(description="transcript")
    def transcript(self, obj):
        return conversation_link(obj.message.conversation_id)

    @admin.display(description="visitor message")
    def visitor_message(self, obj):
        return obj.message.text


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    """LLM servers: URL, API style, the name of the variable holding the key, call slots."""

    list_display = ["name", "base_url_or_default", "api_style", "api_key_env", "max_in_flight"]
    fields = ["name", "base_url", "api_style", "api_key_env", "max_in_flight"]

    @admin.display(description="base URL")
    def base_url_or_default(self, obj):
        return obj.base_url or "LLM_BASE_URL setting"


@admin.register(ClassifierConfig)
class ClassifierConfigAdmin(admin.ModelAdmin):
    """The classifiers asked on every turn. Each save raises the version, which every call
    records, so old logs stay explainable after a prompt changes."""

    list_display = ["name", "enabled", "priority", "endpoint", "model", "version", "updated_at"]
    list_editable = ["enabled", "priority"]
    list_select_related = ["endpoint"]
    fields = [
        "name", "enabled", "priority", "endpoint", "model", "system_prompt", "output_schema",
        "max_tokens", "temperature", "version", "updated_at",
    ]
    readonly_fields = ["version", "updated_at"]
