"""Conversation logs: every visitor message, every reply with its route, every classifier call."""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class Route(models.TextChoices):
    """What the router decided for a turn, kept on the reply and sent to the client."""

    PRICE = "price", "Price given"
    PRICE_UNKNOWN_LISTING = "price_unknown_listing", "Price: unknown listing"
    PRICE_NEEDS_LISTING = "price_needs_listing", "Price: asked for listing"
    BOOKING = "booking", "Call booked"
    BOOKING_UNAVAILABLE = "booking_unavailable", "Booking: slot unavailable"
    BOOKING_NEEDS_TIME = "booking_needs_time", "Booking: asked for time"
    BOOKING_CANCELLED = "booking_cancelled", "Call cancelled"
    BOOKING_NOT_FOUND = "booking_not_found", "Cancel/move: no upcoming call"
    CONTACT_SAVED = "contact_saved", "Contact details saved"
    HANDOFF = "handoff", "Listing question handed off"
    FALLBACK = "fallback", "Fallback to a human"


class Conversation(models.Model):
    """One visitor's chat, tied to the Django session of the chat page."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session_key = models.CharField(max_length=40, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    visitor_name = models.CharField(max_length=200, blank=True)
    visitor_email = models.EmailField(blank=True)
    visitor_phone = models.CharField(max_length=32, blank=True)
    last_seq = models.PositiveIntegerField(default=0, editable=False)
    offer = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="Call times last offered to the visitor: "
        '{"action": "book"|"move", "slots": ["<UTC ISO datetime>", ...]}, or {} when none.',
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        created = timezone.localtime(self.created_at) if self.created_at else None
        return f"Conversation {str(self.id)[:8]} ({created:%Y-%m-%d %H:%M})"


class Message(models.Model):
    """A message in a conversation, numbered by ``seq`` (1, 2, 3, ...) within it.

    Assistant messages carry the turn's ``route`` and ``latency_ms``: milliseconds from storing
    the visitor's message to storing the reply.
    """

    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"
        STAFF = "staff"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    seq = models.PositiveIntegerField()
    role = models.CharField(max_length=10, choices=Role.choices)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    route = models.CharField(max_length=32, choices=Route.choices, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["conversation_id", "seq"]  # no join to order by the FK
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="message_seq_unique")
        ]

    def __str__(self):
        return f"#{self.seq} {self.role}: {self.text[:60]}"

    def as_frame(self) -> dict:
        """The websocket frame for this message: type, role, text, seq, and route if any."""
        frame = {"type": "message", "role": self.role, "text": self.text, "seq": self.seq}
        if self.role == self.Role.ASSISTANT:
            frame["route"] = self.route
        return frame


class ClassifierCall(models.Model):
    """One classifier's answer in one turn, linked to the visitor message it classified.

    ``output`` is the parsed answer (null when the call failed), ``raw_output`` the model's text
    as received, ``latency_ms`` the call's wall time in milliseconds, ``error`` why it failed.
    """

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="classifier_calls")
    classifier = models.CharField(max_length=64)
    model = models.CharField(max_length=200)
    output = models.JSONField(null=True, blank=True)
    raw_output = models.TextField(blank=True)
    latency_ms = models.PositiveIntegerField()
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["message_id", "classifier"]

    def __str__(self):
        return f"{self.classifier} on message #{self.message.seq}"


class Handoff(models.Model):
    """A conversation waiting for a person: queued, then claimed by staff, then resolved."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        CLAIMED = "claimed"
        RESOLVED = "resolved"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="handoffs"
    )
    message = models.ForeignKey(
        Message,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The visitor message that caused the handoff.",
    )
    reason = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self):
        return f"Handoff {self.pk} ({self.status})"
