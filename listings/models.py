"""Listings, the realtors who take calls, and the appointments booked with them."""

import uuid
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import ArrayField, DateTimeRangeField, RangeOperators
from django.contrib.postgres.indexes import GinIndex
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models.functions import Upper
from django.utils import translation

from agent.rows import select_rows
from listings import money

CURRENCY_SYMBOLS = {"USD": "$", "CAD": "CA$", "EUR": "€", "GBP": "£"}


class PropertyType(models.TextChoices):
    """What kind of property a listing is."""

    HOUSE = "house"
    CONDO = "condo"
    TOWNHOUSE = "townhouse"
    APARTMENT = "apartment"
    LAND = "land"


class Feature(models.TextChoices):
    """The fixed vocabulary of features a listing may have (``Listing.features``); the
    classifiers' schemas and the search read the same values."""

    GARAGE = "garage"
    POOL = "pool"
    GARDEN = "garden"
    BALCONY = "balcony"
    FIREPLACE = "fireplace"
    BASEMENT = "basement"
    WATERFRONT = "waterfront"
    ELEVATOR = "elevator"
    AIR_CONDITIONING = "air_conditioning", "air conditioning"
    LAUNDRY_IN_UNIT = "laundry_in_unit", "laundry in unit"


def validate_features(value) -> None:
    """Every feature is one of ``Feature``, once."""
    unknown = sorted(set(value) - set(Feature.values))
    if unknown:
        raise ValidationError(f"Unknown features: {', '.join(unknown)}.")
    if len(set(value)) != len(value):
        raise ValidationError("A feature is listed twice.")


class Listing(models.Model):
    """A property for sale, known to visitors by its public 6-digit ``listing_id``.

    ``price`` is in ``currency`` (ISO 4217 code); ``area_sqft`` and ``lot_sqft`` in square
    feet; ``hoa_monthly`` in ``currency`` per month. A fact left empty (null) is one the
    record does not hold: the chat says it does not know rather than guess. ``features`` is
    null when nobody recorded them, else the features it has (``Feature`` values); an empty
    list means "none of them". Its GIN index serves "has all of" (``features__contains``).
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
    city = models.CharField(max_length=100, blank=True)
    neighbourhood = models.CharField(max_length=100, blank=True)
    postal_code = models.CharField(max_length=12, blank=True)
    property_type = models.CharField(
        max_length=12, choices=PropertyType.choices, blank=True, help_text="Empty: not recorded."
    )
    year_built = models.PositiveSmallIntegerField(null=True, blank=True)
    lot_sqft = models.PositiveIntegerField("lot size (sq ft)", null=True, blank=True)
    parking_spaces = models.PositiveSmallIntegerField(null=True, blank=True)
    hoa_monthly = models.DecimalField(
        "HOA fee per month", max_digits=8, decimal_places=2, null=True, blank=True,
        validators=[MinValueValidator(Decimal("0"))], help_text="0 when there is none.",
    )
    pets_allowed = models.BooleanField(null=True, blank=True)
    features = ArrayField(
        models.CharField(max_length=20, choices=Feature.choices),
        null=True, blank=True, validators=[validate_features],
        help_text="Empty (null): not recorded. " + ", ".join(Feature.values) + ".",
    )
    realtor = models.ForeignKey(
        "Realtor",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="listings",
        help_text="Takes the calls about this listing when free.",
    )

    class Meta:
        ordering = ["listing_id"]
        # The search (listings/search.py) reads active listings only, so its indexes are
        # partial: a town or neighbourhood matched case-insensitively (iexact is UPPER(x) =
        # UPPER(%s)), a price range, and "has all of these features" through GIN.
        indexes = [
            models.Index(Upper("city"), "price", name="listing_active_city_price",
                         condition=models.Q(status="active")),
            models.Index(Upper("neighbourhood"), name="listing_active_neighbourhood",
                         condition=models.Q(status="active")),
            models.Index("price", name="listing_active_price", condition=models.Q(status="active")),
            GinIndex("features", name="listing_active_features",
                     condition=models.Q(status="active")),
        ]

    def __str__(self):
        return f"{self.listing_id} {self.address}"

    def get_absolute_url(self) -> str:
        """The listing's public page, ``/listings/<listing_id>/``."""
        return f"/listings/{self.listing_id}/"

    def town(self) -> str:
        """Where it is, as a card says it: "Harbor District, Port Ellis", or the city alone."""
        return ", ".join(part for part in (self.neighbourhood, self.city) if part)

    def formatted_price(self) -> str:
        """The price as a visitor reads it, in the listing's currency: ``$350,000``, or
        ``$350,000.50`` with cents, in English; as CLDR writes it in another active language
        (``listings.money``): ``350.000 US$``."""
        if not (translation.get_language() or "en").startswith("en"):
            return money.written(self.price, self.currency)
        amount = (
            f"{self.price:,.0f}" if self.price == self.price.to_integral() else f"{self.price:,.2f}"
        )
        symbol = CURRENCY_SYMBOLS.get(self.currency)
        return f"{symbol}{amount}" if symbol else f"{amount} {self.currency}"


def find_listing(listing_id: str, read: dict | None = None) -> Listing | None:
    """The listing whose 6-digit ``listing_id`` this is, or None; one statement without the
    ORM's compiling, as the chat asks on every price and facts turn (``agent.rows``), unless
    ``read`` (``{listing_id: Listing or None}``, what the caller read already in its
    transaction: ``agent.chat.turn.mark_answered``'s) holds the answer."""
    if read and listing_id in read:
        return read[listing_id]
    found = select_rows(Listing, "WHERE t.listing_id = %s", [listing_id])
    return found[0] if found else None


def default_call_minutes() -> int:
    """A new realtor's call length: ``CALL_MINUTES`` (default 30)."""
    return settings.CALL_MINUTES


class Realtor(models.Model):
    """A staff user who takes calls with visitors.

    ``call_minutes`` is the length of each call; ``buffer_minutes`` the free time kept after
    each call before the next one. Weekly hours are ``WorkingHours`` rows; a realtor with none
    works the agency's ``BUSINESS_HOURS`` on ``BUSINESS_DAYS``. ``DayOff`` rows are days away.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    phone = models.CharField(max_length=32, blank=True)
    is_active = models.BooleanField("takes calls", default=True)
    call_minutes = models.PositiveSmallIntegerField(
        "call length (minutes)",
        default=default_call_minutes,
        validators=[MinValueValidator(5), MaxValueValidator(480)],
    )
    buffer_minutes = models.PositiveSmallIntegerField(
        "buffer after each call (minutes)", default=0, validators=[MaxValueValidator(240)]
    )
    # SHA-256 (hex) of the private calendar feed token; the token itself is shown once.
    calendar_token_hash = models.CharField(
        max_length=64, null=True, blank=True, unique=True, editable=False
    )
    agenda_sent_on = models.DateField(null=True, blank=True, editable=False)  # agency-local

    class Meta:
        ordering = ["user__first_name", "user__last_name"]
        permissions = [("manage_calendar_feed", "Can regenerate or revoke calendar feed URLs")]

    def __str__(self):
        return self.user.get_full_name() or self.user.get_username()


class WorkingHours(models.Model):
    """One stretch of a realtor's weekly hours, in the agency's time zone: e.g. Monday
    09:00-12:00. Several rows on one weekday make a split day."""

    class Weekday(models.IntegerChoices):  # date.weekday() numbers
        MONDAY = 0
        TUESDAY = 1
        WEDNESDAY = 2
        THURSDAY = 3
        FRIDAY = 4
        SATURDAY = 5
        SUNDAY = 6

    realtor = models.ForeignKey(Realtor, on_delete=models.CASCADE, related_name="hours")
    weekday = models.PositiveSmallIntegerField(choices=Weekday.choices)
    starts = models.TimeField()
    ends = models.TimeField()

    class Meta:
        ordering = ["realtor", "weekday", "starts"]
        verbose_name_plural = "working hours"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends__gt=models.F("starts")),
                name="working_hours_end_after_start",
            )
        ]

    def __str__(self):
        return f"{self.get_weekday_display()} {self.starts:%H:%M}-{self.ends:%H:%M}"


class DayOff(models.Model):
    """A day the realtor takes no calls (agency-local date)."""

    realtor = models.ForeignKey(Realtor, on_delete=models.CASCADE, related_name="days_off")
    day = models.DateField()
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["realtor", "day"]
        verbose_name_plural = "days off"
        constraints = [
            models.UniqueConstraint(fields=["realtor", "day"], name="day_off_once_per_realtor")
        ]

    def __str__(self):
        return f"{self.realtor} off on {self.day}"


class TsTzRange(models.Func):
    """PostgreSQL ``tstzrange(lower, upper)``, half open ``[lower, upper)``."""

    function = "TSTZRANGE"
    output_field = DateTimeRangeField()


class Appointment(models.Model):
    """A call booked with a realtor; ``starts_at`` and ``ends_at`` are stored in UTC.

    ``blocked_until`` is ``ends_at`` plus the realtor's buffer: the realtor is busy over
    ``[starts_at, blocked_until)``. PostgreSQL refuses two active (booked or confirmed)
    appointments of one realtor whose busy ranges overlap (exclusion constraint
    ``appointment_no_overlap``, btree_gist), whatever the application checked before.
    """

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
    blocked_until = models.DateTimeField(editable=False)
    # The calendar event's UID, carried to the new row when a call moves; SEQUENCE counts
    # the event's changes (RFC 5545 3.8.7.4), so a move or cancellation updates the event.
    calendar_uid = models.UUIDField(default=uuid.uuid4, editable=False, db_index=True)
    sequence = models.PositiveIntegerField(default=0, editable=False)
    # When each visitor reminder was claimed (listings/reminders.py); null: not yet.
    reminded_24h_at = models.DateTimeField(null=True, blank=True, editable=False)
    reminded_1h_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_at__gt=models.F("starts_at")),
                name="appointment_ends_after_start",
            ),
            models.CheckConstraint(
                condition=models.Q(blocked_until__gte=models.F("ends_at")),
                name="appointment_blocked_until_after_end",
            ),
            ExclusionConstraint(
                name="appointment_no_overlap",
                expressions=[
                    ("realtor", RangeOperators.EQUAL),
                    (TsTzRange("starts_at", "blocked_until"), RangeOperators.OVERLAPS),
                ],
                condition=models.Q(status__in=["booked", "confirmed"]),
            ),
        ]

    def __str__(self):
        return f"{self.realtor} at {self.starts_at:%Y-%m-%d %H:%M}"

    @property
    def is_active(self) -> bool:
        """Booked or confirmed: it holds the realtor's time."""
        return self.status in (self.Status.BOOKED, self.Status.CONFIRMED)

    def set_blocked_until(self) -> None:
        """``blocked_until`` = ``ends_at`` + the realtor's ``buffer_minutes``."""
        if self.ends_at is not None and self.realtor_id is not None:
            self.blocked_until = self.ends_at + timedelta(minutes=self.realtor.buffer_minutes)

    def clean(self):
        """For staff edits: the end after the start, and no overlap with the realtor's other
        active calls (buffers included), said as a form error rather than a database error."""
        if self.starts_at is None or self.ends_at is None or self.realtor_id is None:
            return
        if self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": "A call must end after it starts."})
        self.set_blocked_until()
        if not self.is_active:
            return
        clash = (
            Appointment.objects.filter(
                realtor_id=self.realtor_id,
                status__in=(self.Status.BOOKED, self.Status.CONFIRMED),
                starts_at__lt=self.blocked_until,
                blocked_until__gt=self.starts_at,
            )
            .exclude(pk=self.pk)
            .first()
        )
        if clash is not None:
            raise ValidationError(f"{self.realtor} already has a call then: {clash}.")

    def save(self, *args, **kwargs):
        """Save, setting ``blocked_until`` from the realtor's buffer when not set."""
        if self.blocked_until is None:
            self.set_blocked_until()
        super().save(*args, **kwargs)


class OpenHouse(models.Model):
    """A time the listing is open to walk in, stored in UTC."""

    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="open_houses")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()

    class Meta:
        ordering = ["listing", "starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_at__gt=models.F("starts_at")),
                name="open_house_ends_after_start",
            )
        ]

    def __str__(self):
        return f"{self.listing.listing_id} open {self.starts_at:%Y-%m-%d %H:%M}"


class ListingPhoto(models.Model):
    """A photo of a listing, uploaded in the admin; ``thumbnail`` (made on save by
    ``listings.photos.make_thumbnail``) is what the chat's cards show. The first by
    ``position`` is the listing's cover."""

    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="photos")
    image = models.ImageField(upload_to="listings/%Y/%m/")
    thumbnail = models.ImageField(upload_to="listings/thumbs/%Y/%m/", blank=True, editable=False)
    caption = models.CharField(max_length=200, blank=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["listing", "position", "id"]

    def __str__(self):
        return f"{self.listing.listing_id} photo {self.position}"

    def save(self, *args, **kwargs):
        """Save, making the thumbnail first when it is missing (Pillow; see
        ``listings.photos``)."""
        if self.image and not self.thumbnail:
            from listings.photos import make_thumbnail

            self.thumbnail = make_thumbnail(self.image)
        super().save(*args, **kwargs)
