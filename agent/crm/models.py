"""Leads and CRM webhooks: a Lead per visitor, webhook endpoints, the outbox of events and
their deliveries (issue 15). Imported into ``agent.models`` so Django finds them in the app.

Nothing here imports ``agent.models``: relations to conversations are by the string
``"agent.Conversation"``.
"""

import uuid

from django.db import models


class Lead(models.Model):
    """A visitor the agency can work: one per conversation, merged when the same email or phone
    comes back in another conversation (``agent.crm.leads``).

    Money is in whole units of the agency's currency (``budget_min``/``budget_max``). The
    search-criteria fields (intent, budget, towns, bedrooms, timeline, pre-approval) are filled
    through ``agent.crm.leads.apply_criteria``, the seam for the search classifiers (issue 14).
    """

    class Stage(models.TextChoices):
        NEW = "new", "New"
        CONTACTED = "contacted", "Contacted"
        QUALIFIED = "qualified", "Qualified"
        VIEWING_BOOKED = "viewing_booked", "Viewing booked"
        WON = "won", "Won"
        LOST = "lost", "Lost"

    class Intent(models.TextChoices):
        UNKNOWN = "", "Unknown"
        BUY = "buy", "Buy"
        RENT = "rent", "Rent"
        SELL = "sell", "Sell"

    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(blank=True, db_index=True)
    phone = models.CharField(max_length=32, blank=True, db_index=True, help_text="E.164")
    intent = models.CharField(max_length=4, choices=Intent.choices, blank=True)
    budget_min = models.PositiveBigIntegerField(null=True, blank=True)
    budget_max = models.PositiveBigIntegerField(null=True, blank=True)
    towns = models.JSONField(default=list, blank=True, help_text='e.g. ["Springfield"]')
    bedrooms = models.PositiveSmallIntegerField(null=True, blank=True)
    timeline = models.CharField(max_length=100, blank=True, help_text='e.g. "within 3 months"')
    preapproved = models.BooleanField(null=True, blank=True, help_text="Mortgage pre-approval")
    listing_ids = models.JSONField(
        default=list, blank=True, help_text="6-digit ids of the listings asked about, in order"
    )
    source_page = models.URLField(max_length=500, blank=True)
    first_contact_at = models.DateTimeField()
    last_contact_at = models.DateTimeField(db_index=True)
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.NEW)
    owner = models.ForeignKey(
        "listings.Realtor", on_delete=models.SET_NULL, null=True, blank=True, related_name="leads"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-last_contact_at", "-id"]

    def __str__(self):
        return self.name or self.email or self.phone or f"Lead {self.pk}"


class LeadConversation(models.Model):
    """Which lead a conversation belongs to: one lead per conversation, several conversations
    per lead after a merge."""

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="links")
    conversation = models.OneToOneField(
        "agent.Conversation", on_delete=models.CASCADE, related_name="lead_link"
    )


class WebhookEndpoint(models.Model):
    """A CRM's URL that receives the events it subscribes to, signed with its secret.

    Staff need this model's own permissions (``agent.add_webhookendpoint`` and so on) to see or
    change endpoints. ``paused_at`` is set when a delivery failed for ``WEBHOOK_RETRY_HOURS``;
    a paused endpoint holds its deliveries until staff resume it in the admin.
    """

    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=100, help_text="Shared HMAC-SHA256 key; shown masked.")
    events = models.JSONField(default=list, help_text="Event types it receives, e.g. lead.created")
    active = models.BooleanField(default=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name

    def masked_secret(self) -> str:
        """The secret as staff may see it again: its last four characters only."""
        return f"…{self.secret[-4:]}" if len(self.secret) > 8 else "…"


class Event(models.Model):
    """The outbox: a row per event, written in the transaction of the change that caused it,
    with its payload frozen then (documented in docs/webhooks.md). ``id`` orders events;
    ``event_id`` is what receivers dedupe by."""

    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    type = models.CharField(max_length=40, db_index=True)
    lead = models.ForeignKey(
        Lead, on_delete=models.SET_NULL, null=True, blank=True, related_name="events"
    )
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"{self.type} {str(self.event_id)[:8]}"


class Delivery(models.Model):
    """One event to one endpoint: its status, attempts and the last response."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RETRYING = "retrying", "Retrying"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed (endpoint paused)"
        HELD = "held", "Held (endpoint paused)"

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="delivery_once_per_endpoint")
        ]

    def __str__(self):
        return f"{self.event} → {self.endpoint}"

