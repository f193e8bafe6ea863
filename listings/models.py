"""Listings, the realtors who take calls, and the appointments booked with them."""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

CURRENCY_SYMBOLS = {"USD": "$", "CAD": "CA$", "EUR": "€", "GBP": "£"}


class Listing(models.Model):
    """A property for sale, known to visitors by its public 6-digit ``listing_id``.

    ``price`` is in ``currency`` (ISO 4217 code); ``area_sqft`` in square feet.
    """

    class Status(models.TextChoices):
        ACTIVE = "active"
        UNDER_OFFER = "under_offer", "Under offer"
        SOLD = "sold"

    listing_id = models.CharField(
        "listing ID",
        max_length=6,
        unique=True,
        validators=[RegexValidator(r"^\d{6}$", "A listing ID is exactly 6 digits.")],
    )
    address = models.CharField(max_length=300)
    price = models.DecimalField(
        max_digits=12, decimal_places=2, validators=[MinValueValidator(Decimal("0"))]
    )
    currency = models.CharField(max_length=3, default="USD", help_text="ISO 4217 code, e.g. USD.")
    bedrooms = models.PositiveSmallIntegerField(default=0)
    bathrooms = models.DecimalField(max_digits=3, decimal_places=1, default=Decimal("1.0"))
    area_sqft = models.PositiveIntegerField("area (sq ft)", null=True, blank=True)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)

    class Meta:
        ordering = ["listing_id"]

    def __str__(self):
        return f"{self.listing_id} {self.address}"

    def formatted_price(self) -> str:
        """The price as a visitor reads it: ``$350,000``, or ``$350,000.50`` with cents."""
        amount = (
            f"{self.price:,.0f}" if self.price == self.price.to_integral() else f"{self.price:,.2f}"
        )
        symbol = CURRENCY_SYMBOLS.get(self.currency)
        return f"{symbol}{amount}" if symbol else f"{amount} {self.currency}"


class Realtor(models.Model):
    """A staff user who takes calls with visitors."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    phone = models.CharField(max_length=32, blank=True)
    is_active = models.BooleanField("takes calls", default=True)

    class Meta:
        ordering = ["user__first_name", "user__last_name"]

    def __str__(self):
        return self.user.get_full_name() or self.user.get_username()


class Appointment(models.Model):
    """A call booked with a realtor; ``starts_at`` and ``ends_at`` are stored in UTC."""

    class Status(models.TextChoices):
        BOOKED = "booked"
        CONFIRMED = "confirmed"
        CANCELLED = "cancelled"

    realtor = models.ForeignKey(Realtor, on_delete=models.PROTECT, related_name="appointments")
    starts_at = models.DateTimeField(db_index=True)
    ends_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.BOOKED)
    visitor_name = models.CharField(max_length=200, blank=True)
    visitor_email = models.EmailField(blank=True)
    visitor_phone = models.CharField(max_length=32, blank=True)
    listing = models.ForeignKey(Listing, on_delete=models.SET_NULL, null=True, blank=True)
    conversation = models.ForeignKey(
        "agent.Conversation",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="appointments",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_at__gt=models.F("starts_at")),
                name="appointment_ends_after_start",
            )
        ]

    def __str__(self):
        return f"{self.realtor} at {self.starts_at:%Y-%m-%d %H:%M}"
