"""Staff views of the chat: read-only transcripts with every classifier call, and the handoff queue.

Reviewing conversations (filters, search, trace) lives in ``agent/staff/review.py``, the exports
in ``agent/staff/exports.py``, the dashboard in ``agent/staff/dashboard.py``.

Everything shown comes from visitors or from a model, so all of it goes through ``format_html``.
"""

import json

from django.contrib import admin
from django.contrib import messages as notices
from django.db import models
from django.db.models import Count, Max, OuterRef, Prefetch, Subquery
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from agent.models import ClassifierCall, ClassifierConfig, Conversation, Endpoint, Handoff, Message
from agent.staff import access, dashboard, exports, handoffs, review
from agent.staff.review import route_label


def contact(name: str, email: str, phone: str) -> str:
    """One line of whatever contact details a visitor left: ``Ann · ann@example.com · 555 0100``."""
    return " · ".join(part for part in (name, email, phone) if part) or "—"


def conversation_link(conversation_id) -> str:
    """A link to the conversation's transcript in the admin, or an empty string."""
    if conversation_id is None:
        return ""
    url = reverse("admin:agent_conversation_change", args=[conversation_id])
    return format_html('<a href="{}">{}</a>', url, str(conversation_id)[:8])


class MessageInline(admin.TabularInline):
    """The transcript, in order, staff messages included; the trace above it shows the
    classifier calls of each turn."""

    model = Message
    fields = ["seq", "role", "text", "route", "latency_ms", "created_at"]
    readonly_fields = fields
    ordering = ["seq"]
    extra = 0
    can_delete = False
    verbose_name_plural = "transcript"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    """Conversations are written by the chat only; staff read, filter, search and export them.

    The changelist links to the dashboard (``admin:agent_dashboard``), served from here so that
    it has the admin's login and look.
    """

    list_display = [
        "short_id", "created_at", "message_count", "last_route", "slowest_turn", "visitor",
        "language",
    ]
    list_filter = [
        "created_at", "language", review.RouteFilter, review.HasHandoffFilter,
        review.HasBookingFilter, review.HadLLMErrorFilter, review.SlowestTurnFilter,
    ]
    # The search box searches these and, by full text, every message (get_search_results).
    search_fields = ["visitor_name", "visitor_email", "visitor_phone"]
    search_help_text = (
        'Words in any message (e.g. garage, "open house", -weekend), or part of the visitor\'s '
        "name, email or phone."
    )
    date_hierarchy = "created_at"
    fieldsets = [
        (None, {"fields": [
            "id", "created_at", "language", "visitor_name", "visitor_email",
            "visitor_phone", "last_seq", "anonymised_at",
        ]}),
        ("Trace", {"fields": ["trace"]}),
    ]
    readonly_fields = [
        "id", "created_at", "language", "visitor_name", "visitor_email",
        "visitor_phone", "last_seq", "anonymised_at", "trace",
    ]
    inlines = [MessageInline]
    actions = ["export_csv", "export_jsonl", "add_to_eval_set"]

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
            .annotate(
                message_count=Count("messages"),
                slowest_turn_ms=Max("messages__latency_ms"),
                last_route=Subquery(last_route),
            )
        )

    def get_search_results(self, request, queryset, search_term):
        return review.search_conversations(queryset, search_term), False

    def get_urls(self):
        view = self.admin_site.admin_view(dashboard.DashboardView.as_view(model_admin=self))
        return [path("dashboard/", view, name="agent_dashboard"), *super().get_urls()]

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

    @admin.display(description="slowest turn", ordering="slowest_turn_ms")
    def slowest_turn(self, obj):
        return "—" if obj.slowest_turn_ms is None else f"{obj.slowest_turn_ms} ms"

    @admin.display(description="visitor")
    def visitor(self, obj):
        return contact(obj.visitor_name, obj.visitor_email, obj.visitor_phone)

    @admin.display(description="classifier calls per turn")
    def trace(self, obj):
        calls = Prefetch("classifier_calls", queryset=ClassifierCall.objects.order_by("classifier"))
        return review.turn_trace(obj.messages.order_by("seq").prefetch_related(calls))

    # Actions read only; each still names its permission (Django runs an action without
    # allowed_permissions for anyone who sees the list).
    @admin.action(description="Export selected conversations as CSV", permissions=["view"])
    def export_csv(self, request, queryset):
        content = exports.conversations_csv(exports.with_transcripts(queryset))
        return exports.attachment(content, "text/csv; charset=utf-8", "conversations.csv")

    @admin.action(description="Export selected conversations as JSONL", permissions=["view"])
    def export_jsonl(self, request, queryset):
        content = exports.conversations_jsonl(exports.with_transcripts(queryset))
        return exports.attachment(
            content, "application/jsonl; charset=utf-8", "conversations.jsonl"
        )

    @admin.action(
        description="Add selected conversations to the evaluation set (download)",
        permissions=["view"],
    )
    def add_to_eval_set(self, request, queryset):
        """Download the bot's turns in the eval format; staff check the labels and append the
        file to an eval set, or replay it as it is (``manage.py replay_eval FILE``)."""
        content, turns = exports.eval_jsonl(exports.with_transcripts(queryset))
        if not turns:
            self.message_user(
                request, "None of the selected conversations has a turn the bot answered.",
                notices.WARNING,
            )
            return None
        return exports.attachment(content, "application/jsonl; charset=utf-8", "eval.jsonl")


@admin.register(Handoff)
class HandoffAdmin(admin.ModelAdmin):
    """The queue of conversations waiting for a person, oldest first.

    Read-only: claiming, releasing and resolving go through ``agent.staff.handoffs`` (the live page
    at /admin/handoffs/<id>/, or the actions here), so the visitor sees who joined or left and
    every open admin's badge updates.
    """

    list_display = ["created_at", "status", "short_reason", "claimed_by", "transcript", "live",
                    "language"]
    list_filter = ["status", ("conversation__language", admin.ChoicesFieldListFilter)]
    list_select_related = ["claimed_by", "conversation"]
    fields = [
        "live", "transcript", "visitor_message", "reason", "language", "status", "claimed_by",
        "created_at", "claimed_at", "resolved_at",
    ]
    readonly_fields = fields
    actions = ["claim", "resolve"]

    def has_add_permission(self, request):
        return False

    def has_handle_permission(self, request):
        """May claim, release, resolve and answer handoffs (``agent.staff.access.HANDLE``)."""
        return request.user.has_perm(access.HANDLE)

    @admin.action(description="Claim the selected handoffs", permissions=["handle"])
    def claim(self, request, queryset):
        self._apply(request, queryset, handoffs.claim, "claimed")

    @admin.action(description="Resolve the selected handoffs", permissions=["handle"])
    def resolve(self, request, queryset):
        self._apply(request, queryset, handoffs.resolve, "resolved")

    def _apply(self, request, queryset, change, done: str) -> None:
        """Apply ``change(handoff_id, user)`` to each selected handoff; report refusals."""
        changed = 0
        for handoff_id in queryset.values_list("pk", flat=True):
            try:
                change(handoff_id, request.user)
                changed += 1
            except handoffs.HandoffRefused as exc:
                self.message_user(request, f"Handoff {handoff_id}: {exc}", notices.WARNING)
        self.message_user(request, f"{changed} handoff(s) {done}.")

    @admin.display(description="live")
    def live(self, obj):
        return format_html('<a href="{}">open</a>', reverse("handoff_detail", args=[obj.pk]))

    @admin.display(description="language", ordering="conversation__language")
    def language(self, obj):
        """The visitor's language, as the conversation has it ("Español")."""
        return obj.conversation.get_language_display()

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


class LLMSettingsAdmin(admin.ModelAdmin):
    """Endpoints and classifier configs decide where turns go, with which key, and what the bot
    does, so adding, changing and deleting them also needs ``agent.manage_llm`` (superusers
    have it; the "Chat staff" group does not). Viewing needs the model's view permission."""

    def has_add_permission(self, request):
        return request.user.has_perm("agent.manage_llm") and super().has_add_permission(request)

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("agent.manage_llm") and super().has_change_permission(
            request, obj
        )

    def has_delete_permission(self, request, obj=None):
        return request.user.has_perm("agent.manage_llm") and super().has_delete_permission(
            request, obj
        )


@admin.register(Endpoint)
class EndpointAdmin(LLMSettingsAdmin):
    """LLM servers: URL, API style, the name of the variable holding the key, call slots."""

    list_display = ["name", "base_url_or_default", "api_style", "api_key_env", "max_in_flight"]
    fields = ["name", "base_url", "api_style", "api_key_env", "max_in_flight"]
    # Django 6's default, asked for now: a scheme-less URL typed in the form means https.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description="base URL")
    def base_url_or_default(self, obj):
        return obj.base_url or "LLM_BASE_URL setting"


@admin.register(ClassifierConfig)
class ClassifierConfigAdmin(LLMSettingsAdmin):
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


from agent.crm import admin as crm_admin  # noqa: E402, F401  leads and webhooks (agent/crm/)
