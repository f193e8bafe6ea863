"""``manage.py seed_demo [--admin]``: the demo listings and realtors, safe to run again.

Rows are keyed on natural keys (listing ID, username) and only created when missing, so a
second run changes nothing and keeps what staff edited in the admin. ``--admin`` also
ensures a local superuser "admin" and prints a working login.
"""

import os
import secrets
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from listings.models import Listing, Realtor

# The first three are the tutorial's: "how much is 123456?" answers $350,000.
LISTINGS = [
    {
        "listing_id": "123456",
        "address": "14 Maple Court, Cedar Hollow, NJ",
        "price": Decimal("350000"),
        "bedrooms": 3,
        "bathrooms": Decimal("2.0"),
        "area_sqft": 1650,
        "description": "Colonial on a quiet cul-de-sac with a fenced yard and a new roof (2022).",
    },
    {
        "listing_id": "654321",
        "address": "88 Harbor View Drive, Apt 5B, Port Ellis, NY",
        "price": Decimal("450000"),
        "bedrooms": 2,
        "bathrooms": Decimal("2.0"),
        "area_sqft": 1120,
        "description": "Fifth-floor condo with water views, a balcony and one garage space.",
    },
    {
        "listing_id": "112233",
        "address": "7 Orchard Lane, Millbrook Falls, CT",
        "price": Decimal("550000"),
        "bedrooms": 4,
        "bathrooms": Decimal("2.5"),
        "area_sqft": 2400,
        "description": "Renovated farmhouse on an acre, with a barn and an updated kitchen.",
    },
    {
        "listing_id": "204518",
        "address": "231 Elm Street, Unit 2, Cedar Hollow, NJ",
        "price": Decimal("289000"),
        "bedrooms": 1,
        "bathrooms": Decimal("1.0"),
        "area_sqft": 780,
        "description": "Bright one-bedroom near the train station; laundry in the building.",
    },
    {
        "listing_id": "318840",
        "address": "52 Birchwood Road, Port Ellis, NY",
        "price": Decimal("615000"),
        "bedrooms": 4,
        "bathrooms": Decimal("3.0"),
        "area_sqft": 2650,
        "description": "Split-level with a finished basement, a two-car garage and a heated pool.",
        "status": Listing.Status.UNDER_OFFER,
    },
    {
        "listing_id": "407712",
        "address": "19 Quarry Hill Road, Millbrook Falls, CT",
        "price": Decimal("398500"),
        "bedrooms": 3,
        "bathrooms": Decimal("1.5"),
        "area_sqft": 1480,
        "description": "Cape Cod with hardwood floors, a sunroom and a detached workshop.",
        "status": Listing.Status.SOLD,
    },
    {
        "listing_id": "509934",
        "address": "3 Lighthouse Point, Port Ellis, NY",
        "price": Decimal("1250000"),
        "bedrooms": 5,
        "bathrooms": Decimal("4.5"),
        "area_sqft": 4100,
        "description": "Waterfront shingle-style house with a private dock and a guest cottage.",
    },
]

# Demo realtors are staff users without a usable password: they take calls, not log in.
REALTORS = [
    {"username": "anna", "first_name": "Anna", "last_name": "Novak",
     "email": "anna.novak@agency.example", "phone": "+1 201 555 0142"},
    {"username": "ben", "first_name": "Ben", "last_name": "Carter",
     "email": "ben.carter@agency.example", "phone": "+1 201 555 0187"},
]

ADMIN_USERNAME = "admin"
ADMIN_URL = "http://127.0.0.1:8000/admin/"


class Command(BaseCommand):
    help = "Create or restore the demo listings and realtors; with --admin, a local superuser."

    def add_arguments(self, parser):
        parser.add_argument(
            "--admin", action="store_true",
            help="Ensure a superuser 'admin' and print its login. The password is "
                 "DEMO_ADMIN_PASSWORD if set, else a fresh random one on every run.",
        )

    @transaction.atomic
    def handle(self, *args, admin=False, **options):
        created = sum(seed_listing(data) for data in LISTINGS)
        self.stdout.write(f"listings: {len(LISTINGS)} ({created} new)")
        created = sum(seed_realtor(data) for data in REALTORS)
        self.stdout.write(f"realtors: {len(REALTORS)} ({created} new)")
        if admin:
            password = ensure_admin()
            self.stdout.write(f"admin login: {ADMIN_URL} user {ADMIN_USERNAME} password {password}")


def seed_listing(data: dict) -> bool:
    """Create one demo listing unless its listing ID exists; return whether it was new."""
    fields = {"currency": "USD", "status": Listing.Status.ACTIVE, **data}
    listing_id = fields.pop("listing_id")
    _, created = Listing.objects.get_or_create(listing_id=listing_id, defaults=fields)
    return created


def seed_realtor(data: dict) -> bool:
    """Create one demo realtor and their staff user unless the user exists; return whether
    it was new."""
    fields = dict(data)
    username, phone = fields.pop("username"), fields.pop("phone")
    user, created = get_user_model().objects.get_or_create(
        username=username, defaults={**fields, "is_staff": True, "is_active": True}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    Realtor.objects.get_or_create(user=user, defaults={"phone": phone, "is_active": True})
    return created


def ensure_admin() -> str:
    """Make sure the superuser "admin" exists with a known password, and return that password."""
    password = os.environ.get("DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    user, _ = get_user_model().objects.update_or_create(
        username=ADMIN_USERNAME,
        defaults={"is_staff": True, "is_superuser": True, "is_active": True},
        create_defaults={"email": "admin@agency.example", "is_staff": True,
                         "is_superuser": True, "is_active": True},
    )
    user.set_password(password)
    user.save(update_fields=["password"])
    return password
