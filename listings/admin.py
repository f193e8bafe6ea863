"""Staff views of listings, realtors and the calls booked with them."""

from django.conf import settings
from django.contrib import admin

from agent.admin import contact, conversation_link

from .models import Appointment, Listing, Realtor


@admin.register(Listing)
class ListingAdmin(admin.ModelAdmin):
    list_display = ["listing_id", "address", "price", "currency", "status", "bedrooms"]
    list_editable = ["price"]
    list_filter = ["status"]
    search_fields = ["listing_id", "address"]


@admin.register(Realtor)
class RealtorAdmin(admin.ModelAdmin):
    list_display = ["name", "email", "phone", "is_active"]
    list_filter = ["is_active"]
    list_select_related = ["user"]
    search_fields = ["user__first_name", "user__last_name", "user__email", "phone"]

    @admin.display(ordering="user__first_name")
    def name(self, obj):
        return str(obj)

    @admin.display(ordering="user__email")
    def email(self, obj):
        return obj.user.email


@admin.register(Appointment)
class AppointmentAdmin(admin.ModelAdmin):
    list_display = ["starts", "realtor", "status", "visitor", "listing", "conversation_link"]
    list_filter = ["starts_at", "status", "realtor"]
    list_select_related = ["realtor__user", "listing"]
    date_hierarchy = "starts_at"
    search_fields = ["visitor_name", "visitor_email", "visitor_phone", "listing__listing_id"]
    raw_id_fields = ["listing", "conversation"]

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
