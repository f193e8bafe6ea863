"""Staff pages of the CRM room: leads (stage, owner, hot, filters, search, bulk stage change,
CSV export; a lead's page links its conversations and appointments), webhook endpoints
(their own model permissions; the secret is write-only, shown masked) and deliveries
(status, attempts, response code; "redeliver").

Registered by ``agent/admin.py`` importing this module. Everything shown goes through
``format_html``.
"""

import csv
import logging

from django import forms
from django.contrib import admin
from django.contrib import messages as notices
from django.db import models, transaction
from django.http import HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from agent.crm import leads, outbox, signing
from agent.crm.models import Delivery, Lead, WebhookEndpoint
from agent.crm.urls import UnsafeURL, check_url

logger = logging.getLogger(__name__)

CSV_FIELDS = [
    "id", "name", "email", "phone", "stage", "owner", "intent", "budget_min", "budget_max",
    "towns", "bedrooms", "timeline", "preapproved", "listing_ids", "source_page",
    "first_contact_at", "last_contact_at",
]


class HotFilter(admin.SimpleListFilter):
    """Hot or not, by ``agent.crm.leads.hot_q``."""

    title = "hot"
    parameter_name = "hot"

    def lookups(self, request, model_admin):
        return [("yes", "Hot"), ("no", "Not hot")]

    def queryset(self, request, queryset):
        rule = leads.hot_q(timezone.now())
        if self.value() == "yes":
            return queryset.filter(rule)
        if self.value() == "no":
            return queryset.exclude(rule)
        return queryset


def _stage_action(stage: Lead.Stage):
    def action(modeladmin, request, queryset):
        with transaction.atomic():
            for lead in queryset.select_for_update(of=("self",)):
                if lead.stage != stage:
                    lead.stage = stage
                    lead.save(update_fields=["stage", "updated_at"])
                    data = leads.lead_data(lead) | {"changed": ["stage"]}
                    outbox.emit("lead.updated", lead, data)
        modeladmin.message_user(request, f"Stage set to {stage.label}.", notices.SUCCESS)

    action.__name__ = f"set_stage_{stage.value}"
    action.short_description = f"Set stage: {stage.label}"
    action.allowed_permissions = ("change",)
    return action


@admin.register(Lead)
class LeadAdmin(admin.ModelAdmin):
    """The lead list and a lead's page."""

    list_display = ["__str__", "stage", "owner", "hot", "intent", "listings", "last_contact_at"]
    list_filter = ["stage", HotFilter, "owner", "intent", "last_contact_at"]
    search_fields = ["name", "email", "phone", "listing_ids", "towns"]
    list_select_related = ["owner"]
    readonly_fields = ["conversations", "appointments", "first_contact_at", "last_contact_at"]
    actions = [*(_stage_action(s) for s in Lead.Stage), "export_csv"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(boolean=True, description="hot")
    def hot(self, lead):
        return Lead.objects.filter(leads.hot_q(timezone.now()), pk=lead.pk).exists()

    @admin.display(description="listings asked about")
    def listings(self, lead):
        return ", ".join(lead.listing_ids) or "—"

    @admin.display(description="conversations")
    def conversations(self, lead):
        ids = lead.links.values_list("conversation_id", flat=True)
        return format_html_join(
            " · ", '<a href="{}">{}</a>',
            ((reverse("admin:agent_conversation_change", args=[c]), str(c)[:8]) for c in ids),
        ) or "—"

    @admin.display(description="appointments")
    def appointments(self, lead):
        from listings.models import Appointment

        found = Appointment.objects.filter(
            conversation__lead_link__lead=lead
        ).select_related("realtor")
        return format_html_join(
            " · ", '<a href="{}">{} with {} ({})</a>',
            (
                (reverse("admin:listings_appointment_change", args=[a.pk]),
                 timezone.localtime(a.starts_at).strftime("%Y-%m-%d %H:%M"), a.realtor, a.status)
                for a in found
            ),
        ) or "—"

    @admin.action(description="Export as CSV", permissions=["view"])
    def export_csv(self, request, queryset):
        response = HttpResponse(content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="leads.csv"'
        writer = csv.writer(response)
        writer.writerow(CSV_FIELDS)
        for lead in queryset.select_related("owner"):
            writer.writerow([_csv_cell(getattr(lead, f)) for f in CSV_FIELDS])
        return response


def _csv_cell(value) -> str:
    """A CSV cell: lists joined by ";", None empty, and a leading =+-@ quoted away (a
    spreadsheet would run it as a formula; OWASP's CSV injection advice)."""
    if isinstance(value, list):
        value = ";".join(map(str, value))
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


class EndpointForm(forms.ModelForm):
    """The endpoint form: events as checkboxes, the URL checked (``agent.crm.urls``), the
    secret write-only (blank on change keeps it; blank on add generates one, shown once)."""

    url = forms.URLField(max_length=500, assume_scheme="https")
    events = forms.MultipleChoiceField(
        choices=[(e, e) for e in outbox.EVENT_TYPES], widget=forms.CheckboxSelectMultiple
    )
    secret = forms.CharField(
        required=False,
        max_length=100,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave blank to keep the current one (or, for a new endpoint, generate one).",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["name", "url", "secret", "events", "active"]

    def clean_url(self):
        url = self.cleaned_data["url"]
        try:
            check_url(url)
        except UnsafeURL as exc:
            raise forms.ValidationError(str(exc)) from None
        return url

    def clean_secret(self):
        secret = self.cleaned_data["secret"].strip()
        if secret and len(secret) < 16:
            raise forms.ValidationError("Use at least 16 characters.")
        return secret or (self.instance.secret if self.instance.pk else "")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Webhook endpoints; staff need this model's permissions."""

    form = EndpointForm
    list_display = ["name", "url", "secret_shown", "active", "paused_at", "paused_reason"]
    readonly_fields = ["secret_shown", "paused_at", "paused_reason"]
    actions = ["resume"]

    @admin.display(description="secret")
    def secret_shown(self, endpoint):
        return endpoint.masked_secret()

    def save_model(self, request, obj, form, change):
        if not obj.secret:
            obj.secret = signing.new_secret()
            self.message_user(
                request,
                f"The new secret is {obj.secret}; copy it now, it is not shown again.",
                notices.WARNING,
            )
        super().save_model(request, obj, form, change)

    @admin.action(description="Resume: unpause and send held deliveries", permissions=["change"])
    def resume(self, request, queryset):
        resumed = 0
        with transaction.atomic():
            for endpoint in queryset.select_for_update():
                endpoint.paused_at, endpoint.paused_reason = None, ""
                endpoint.save(update_fields=["paused_at", "paused_reason"])
                waiting = endpoint.deliveries.filter(
                    status__in=(Delivery.Status.HELD, Delivery.Status.FAILED)
                ).select_related("event").order_by("event_id")
                resumed += _resend(waiting)
        self.message_user(request, f"{resumed} held deliveries sent again, in order.")


def _resend(deliveries) -> int:
    """Defer the deliveries again, in the given order, in the current transaction."""
    count = 0
    for delivery in deliveries:
        Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.PENDING)
        outbox.schedule(delivery)
        count += 1
    return count


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    """Every delivery, read-only, with "redeliver"."""

    list_display = [
        "id", "event_type", "event_uuid", "endpoint", "status", "attempts", "response_code",
        "last_attempt_at", "delivered_at",
    ]
    list_filter = ["status", "endpoint", "event__type"]
    search_fields = ["event__event_id", "last_error"]
    list_select_related = ["event", "endpoint"]
    readonly_fields = [f.name for f in Delivery._meta.fields] + ["payload"]
    actions = ["redeliver"]

    @admin.display(description="event", ordering="event__type")
    def event_type(self, delivery):
        return delivery.event.type

    @admin.display(description="event id")
    def event_uuid(self, delivery):
        return str(delivery.event.event_id)

    @admin.display(description="payload")
    def payload(self, delivery):
        return format_html("<pre>{}</pre>", outbox.pretty(delivery.event.payload))

    def has_add_permission(self, request):
        return False

    @admin.action(description="Redeliver the selected deliveries", permissions=["change"])
    def redeliver(self, request, queryset):
        with transaction.atomic():
            count = _resend(queryset.select_related("event").order_by("event_id"))
        self.message_user(request, f"{count} deliveries queued again (same event ids).")
