"""Staff views of listings, realtors and the calls booked with them: appointments by day and
realtor, realtors with their hours and days off, and a day view per realtor."""

from datetime import date, timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from agent.admin import contact, conversation_link
from listings import booking, feeds
from listings.agencytime import local, local_midnight
from listings.models import (
    Appointment,
    DayOff,
    Feature,
    Listing,
    ListingPhoto,
    OpenHouse,
    Realtor,
    WorkingHours,
)
from listings.schedule import load_schedule


class PriceRangeFilter(admin.SimpleListFilter):
    """Listings by price band (in the listing's currency units)."""

    title = "price"
    parameter_name = "price_range"
    BANDS = {"-300000": (None, 300000), "300000-500000": (300000, 500000),
             "500000-750000": (500000, 750000), "750000-": (750000, None)}

    def lookups(self, request, model_admin):
        return [("-300000", "under 300,000"), ("300000-500000", "300,000 to 500,000"),
                ("500000-750000", "500,000 to 750,000"), ("750000-", "750,000 and over")]

    def queryset(self, request, queryset):
        low, high = self.BANDS.get(self.value(), (None, None))
        if low is not None:
            queryset = queryset.filter(price__gte=low)
        if high is not None:
            queryset = queryset.filter(price__lt=high)
        return queryset


class BedroomsFilter(admin.SimpleListFilter):
    """Listings with at least N bedrooms."""

    title = "bedrooms"
    parameter_name = "bedrooms_min"

    def lookups(self, request, model_admin):
        return [(str(n), f"{n}+") for n in range(1, 6)]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(bedrooms__gte=int(value)) if value and value.isdigit() else queryset


class ListingForm(forms.ModelForm):
    """The listing form, with features as checkboxes from the fixed vocabulary."""

    features = forms.MultipleChoiceField(
        choices=Feature.choices, widget=forms.CheckboxSelectMultiple, required=False,
        help_text="Ticking none records that it has none of them.",
    )

    class Meta:
        model = Listing
        fields = "__all__"


class ListingPhotoInline(admin.TabularInline):
    model = ListingPhoto
    extra = 1
    fields = ["image", "caption", "position", "preview"]
    readonly_fields = ["preview"]

    @admin.display(description="thumbnail")
    def preview(self, photo):
        if not photo.thumbnail:
            return "-"
        return format_html('<img src="{}" alt="" width="120">', photo.thumbnail.url)


class OpenHouseInline(admin.TabularInline):
    model = OpenHouse
    extra = 0


@admin.register(Listing)
class ListingAdmin(admin.ModelAdmin):
    form = ListingForm
    list_display = ["listing_id", "address", "city", "property_type", "price", "currency",
                    "status", "bedrooms", "realtor"]
    list_editable = ["price"]
    list_filter = ["status", "city", "property_type", BedroomsFilter, PriceRangeFilter, "realtor"]
    list_select_related = ["realtor__user"]
    search_fields = ["listing_id", "address", "city", "neighbourhood", "postal_code"]
    inlines = [ListingPhotoInline, OpenHouseInline]


class WorkingHoursInline(admin.TabularInline):
    model = WorkingHours
    extra = 0
    verbose_name_plural = "weekly hours (agency time; none means the agency's default hours)"


class DayOffInline(admin.TabularInline):
    model = DayOff
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).filter(day__gte=timezone.localdate() - timedelta(30))


@admin.register(Realtor)
class RealtorAdmin(admin.ModelAdmin):
    list_display = ["name", "email", "phone", "is_active", "call_minutes", "buffer_minutes",
                    "day_view"]
    list_filter = ["is_active"]
    list_select_related = ["user"]
    search_fields = ["user__first_name", "user__last_name", "user__email", "phone"]
    inlines = [WorkingHoursInline, DayOffInline]
    actions = ["regenerate_feed", "revoke_feed"]

    def has_manage_calendar_feed_permission(self, request):
        """Feed actions need ``listings.manage_calendar_feed``."""
        return request.user.has_perm("listings.manage_calendar_feed")

    @admin.action(description="New calendar feed URL (the old one stops)",
                  permissions=["manage_calendar_feed"])
    def regenerate_feed(self, request, queryset):
        for realtor in queryset:
            url = feeds.regenerate(realtor)
            self.message_user(request, f"{realtor}'s calendar feed: {url}", messages.SUCCESS)

    @admin.action(description="Revoke calendar feed URL", permissions=["manage_calendar_feed"])
    def revoke_feed(self, request, queryset):
        for realtor in queryset:
            feeds.revoke(realtor)
        self.message_user(request, f"Revoked {queryset.count()} feed(s).", messages.SUCCESS)

    @admin.display(ordering="user__first_name")
    def name(self, obj):
        return str(obj)

    @admin.display(ordering="user__email")
    def email(self, obj):
        return obj.user.email

    @admin.display(description="calls")
    def day_view(self, obj):
        url = reverse("admin:listings_realtor_day", args=[obj.pk])
        return format_html('<a href="{}">day view</a>', url)

    def get_urls(self):
        day = path(
            "<int:realtor_id>/day/",
            self.admin_site.admin_view(self.day_view_page),
            name="listings_realtor_day",
        )
        return [day, *super().get_urls()]

    def day_view_page(self, request, realtor_id):
        """One realtor's day (``?day=YYYY-MM-DD``, default today, agency time): their hours,
        days off and calls, with links to the previous and next day."""
        realtor = get_object_or_404(Realtor.objects.select_related("user"), pk=realtor_id)
        if not self.has_view_permission(request, realtor):
            raise PermissionDenied
        try:
            day = date.fromisoformat(request.GET.get("day", ""))
        except ValueError:
            day = timezone.localdate()
        start = local_midnight(day)
        calls = (
            Appointment.objects.filter(
                realtor=realtor, starts_at__gte=start,
                starts_at__lt=local_midnight(day + timedelta(days=1)),
            )
            .select_related("listing")
            .order_by("starts_at")
        )
        schedule = load_schedule(start, start)
        mine = next((r for r in schedule.realtors if r.pk == realtor.pk), None)
        shifts = schedule.shifts(mine, day) if mine is not None else []
        context = {
            **self.admin_site.each_context(request),
            "title": f"{realtor}: {day:%A, %B} {day.day}, {day.year}",
            "opts": self.model._meta,
            "original": realtor,
            "realtor": realtor,
            "day": day,
            "previous_day": day - timedelta(days=1),
            "next_day": day + timedelta(days=1),
            "shifts": [(local(a), local(b)) for a, b in shifts],
            "day_off": realtor.days_off.filter(day=day).first(),
            "calls": [(local(c.starts_at), local(c.ends_at), c) for c in calls],
            "zone": settings.TIME_ZONE,
        }
        return TemplateResponse(request, "admin/listings/realtor_day.html", context)


class WhenFilter(admin.SimpleListFilter):
    """Upcoming (not started yet) or today's calls, agency time."""

    title = "when"
    parameter_name = "when"

    def lookups(self, request, model_admin):
        return [("upcoming", "Upcoming"), ("today", "Today"), ("past", "Past")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "upcoming":
            return queryset.filter(starts_at__gte=now)
        if self.value() == "past":
            return queryset.filter(starts_at__lt=now)
        if self.value() == "today":
            today = timezone.localdate()
            return queryset.filter(
                starts_at__gte=local_midnight(today),
                starts_at__lt=local_midnight(today + timedelta(days=1)),
            )
        return queryset


@admin.register(Appointment)
class AppointmentAdmin(admin.ModelAdmin):
    list_display = ["starts", "realtor", "status", "visitor", "listing", "conversation_link"]
    list_filter = [WhenFilter, "status", "realtor"]
    list_select_related = ["realtor__user", "listing"]
    date_hierarchy = "starts_at"
    ordering = ["starts_at", "realtor"]
    search_fields = ["visitor_name", "visitor_email", "visitor_phone", "listing__listing_id"]
    raw_id_fields = ["listing", "conversation"]
    actions = ["confirm", "cancel"]

    def save_model(self, request, obj, form, change):
        """Save; an edit of the call's time, realtor or status is a change of its calendar
        event (``sequence`` + 1, listings/ics.py)."""
        if change and {"starts_at", "ends_at", "realtor", "status"} & set(form.changed_data):
            obj.sequence += 1
        super().save_model(request, obj, form, change)

    @admin.action(description="Confirm selected calls", permissions=["change"])
    def confirm(self, request, queryset):
        count = queryset.filter(status=Appointment.Status.BOOKED).update(
            status=Appointment.Status.CONFIRMED
        )
        self.message_user(request, f"Confirmed {count} call(s).", messages.SUCCESS)

    @admin.action(
        description="Cancel selected calls (frees their time, emails both sides)",
        permissions=["change"],
    )
    def cancel(self, request, queryset):
        active = queryset.filter(status__in=booking.ACTIVE).select_related("realtor__user")
        with transaction.atomic():
            cancelled = [booking.cancel(appointment) for appointment in active]
        self.message_user(request, f"Cancelled {len(cancelled)} call(s).", messages.SUCCESS)

    # Datetimes are shown in the current time zone, which is TIME_ZONE, the agency's zone.
    @admin.display(description=f"starts ({settings.TIME_ZONE})", ordering="starts_at")
    def starts(self, obj):
        return obj.starts_at

    @admin.display(description="visitor")
    def visitor(self, obj):
        return contact(obj.visitor_name, obj.visitor_email, obj.visitor_phone)

    @admin.display(description="conversation")
    def conversation_link(self, obj):
        return conversation_link(obj.conversation_id)
