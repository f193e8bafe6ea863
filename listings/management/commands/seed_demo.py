"""``manage.py seed_demo [--admin]``: the demo listings and realtors, safe to run again.

Rows are keyed on natural keys (listing ID, username) and only created when missing, so a
second run changes nothing and keeps what staff edited in the admin. ``--admin`` also
ensures a local superuser "admin" and prints a working login.
"""

import os
import secrets
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from listings.models import Listing, Realtor

# The first three are the tutorial's: "how much is 123456?" answers $350,000. Five towns, a few
# neighbourhoods each, prices from $189,000 to $1,250,000, every type and feature, so that a
# search finds something worth seeing (and Port Ellis has nothing under $415,000, as the
# issue's example of a criterion to relax says).
# Columns: id, address, city, neighbourhood, postal code, type, price, bedrooms, bathrooms,
# sq ft, year built, lot sq ft, parking, HOA a month, pets, features, status, description.
ROWS = [
    ("123456", "14 Maple Court", "Cedar Hollow", "Maple Park", "07410", "house", 350000, 3,
     "2.0", 1650, 1978, 9100, 2, 0, True, ["garage", "garden", "basement"], "active",
     "Colonial on a quiet cul-de-sac with a fenced yard and a new roof (2022)."),
    ("654321", "88 Harbor View Drive, Apt 5B", "Port Ellis", "Harbor District", "11953",
     "condo", 450000, 2, "2.0", 1120, 2004, None, 1, 420, True,
     ["balcony", "garage", "elevator", "waterfront", "air_conditioning"], "active",
     "Fifth-floor condo with water views, a balcony and one garage space."),
    ("112233", "7 Orchard Lane", "Millbrook Falls", "Orchard Hill", "06790", "house", 550000, 4,
     "2.5", 2400, 1910, 43560, 3, 0, True, ["garden", "fireplace", "basement", "garage"],
     "active", "Renovated farmhouse on an acre, with a barn and an updated kitchen."),
    ("204518", "231 Elm Street, Unit 2", "Cedar Hollow", "Station Square", "07410", "apartment",
     289000, 1, "1.0", 780, 1962, None, 0, 250, False, ["elevator"], "active",
     "Bright one-bedroom near the train station; laundry in the building."),
    ("318840", "52 Birchwood Road", "Port Ellis", "Birchwood", "11953", "house", 615000, 4,
     "3.0", 2650, 1986, 12000, 2, 0, True, ["basement", "garage", "pool"], "under_offer",
     "Split-level with a finished basement, a two-car garage and a heated pool."),
    ("407712", "19 Quarry Hill Road", "Millbrook Falls", "Quarry Hill", "06790", "house",
     398500, 3, "1.5", 1480, 1948, 15000, 1, 0, True, ["garden"], "sold",
     "Cape Cod with hardwood floors, a sunroom and a detached workshop."),
    ("509934", "3 Lighthouse Point", "Port Ellis", "Lighthouse Point", "11953", "house",
     1250000, 5, "4.5", 4100, 1999, 30000, 3, 0, True,
     ["waterfront", "garage", "pool", "fireplace", "air_conditioning"], "active",
     "Waterfront shingle-style house with a private dock and a guest cottage."),
    ("210001", "5 Willow Bend", "Cedar Hollow", "Maple Park", "07410", "house", 429000, 3,
     "2.0", 1820, 1995, 8000, 2, 0, True, ["garage", "fireplace", "air_conditioning"],
     "active", "Updated ranch with an open kitchen and a fireplace in the family room."),
    ("210002", "60 Station Plaza, Unit 4C", "Cedar Hollow", "Station Square", "07410", "condo",
     265000, 1, "1.0", 690, 2012, None, 1, 310, True,
     ["elevator", "laundry_in_unit", "air_conditioning"], "active",
     "Condo steps from the station, with laundry in the unit."),
    ("210003", "18 Linden Row", "Cedar Hollow", "Linden", "07411", "townhouse", 375000, 3,
     "2.5", 1560, 2008, 2200, 1, 180, True, ["garage", "balcony", "laundry_in_unit"], "active",
     "End-unit townhouse with a balcony off the main bedroom."),
    ("210004", "402 Ridge Road", "Cedar Hollow", "Linden", "07411", "house", 515000, 4, "3.0",
     2300, 1989, 11000, 2, 0, True, ["garage", "basement", "pool", "garden"], "active",
     "Four-bedroom colonial with an in-ground pool and a finished basement."),
    ("210005", "9 Brook Lane", "Cedar Hollow", "Maple Park", "07410", "house", 319000, 2,
     "1.0", 1100, 1955, 6000, 1, 0, None, ["garden"], "active",
     "Cottage with a deep garden, ready for updating."),
    ("210006", "77 Mill Street, Apt 1", "Cedar Hollow", "Station Square", "07410", "apartment",
     199000, 0, "1.0", 480, 1930, None, 0, 190, False, [], "active",
     "Studio in a converted mill."),
    ("210007", "Lot 12, Hilltop Way", "Cedar Hollow", "Linden", "07411", "land", 145000, 0,
     "0.0", None, None, 21780, None, 0, None, [], "active", "Half-acre building lot with views."),
    ("210008", "33 Cherry Street", "Cedar Hollow", "Maple Park", "07410", "house", 469000, 4,
     "2.0", 1980, 1968, 9500, 2, 0, True, ["garage", "basement", "fireplace"], "active",
     "Four bedrooms on a tree-lined street near the park."),
    ("310001", "12 Harbor View Drive, Apt 2A", "Port Ellis", "Harbor District", "11953",
     "condo", 415000, 1, "1.0", 820, 2004, None, 1, 380, True,
     ["elevator", "balcony", "air_conditioning"], "active",
     "One-bedroom condo in the harbour building with a balcony."),
    ("310002", "40 Dune Road", "Port Ellis", "Dunes", "11954", "house", 890000, 4, "3.5", 3100,
     2015, 14000, 2, 0, True, ["waterfront", "garage", "air_conditioning", "laundry_in_unit"],
     "active", "Modern beach house on the dunes."),
    ("310003", "8 Sail Loft Lane", "Port Ellis", "Harbor District", "11953", "townhouse",
     560000, 3, "2.5", 1750, 2010, 1800, 2, 240, True, ["garage", "balcony", "waterfront"],
     "active", "Townhouse on the marina with a roof deck."),
    ("310004", "21 Birch Court", "Port Ellis", "Birchwood", "11953", "house", 645000, 4, "2.5",
     2200, 1978, 10000, 2, 0, True, ["garage", "garden", "fireplace"], "active",
     "Colonial on a corner lot with a big garden."),
    ("310005", "3 Pier Street, Apt 7", "Port Ellis", "Harbor District", "11953", "apartment",
     435000, 2, "1.0", 900, 1925, None, 0, 290, False, ["elevator", "waterfront"], "active",
     "Loft apartment in a restored warehouse on the pier."),
    ("310006", "66 Dune Road", "Port Ellis", "Dunes", "11954", "house", 720000, 3, "2.0",
     1900, 1962, 9000, 1, 0, True, ["waterfront", "garden"], "active",
     "Classic beach cottage with a wrap-around porch."),
    ("310007", "15 Birchwood Road", "Port Ellis", "Birchwood", "11953", "house", 499000, 3,
     "2.0", 1600, 1972, 8500, 2, 0, True, ["garage", "basement"], "active",
     "Raised ranch with a two-car garage."),
    ("410001", "2 Mill Pond Road", "Millbrook Falls", "Mill Pond", "06790", "house", 465000, 3,
     "2.0", 1900, 1925, 20000, 2, 0, True, ["fireplace", "garden", "waterfront"], "active",
     "Victorian on the mill pond with two fireplaces."),
    ("410002", "48 Main Street, Unit 3", "Millbrook Falls", "Village Center", "06790", "condo",
     239000, 2, "1.0", 950, 1890, None, 1, 275, True, ["laundry_in_unit"], "active",
     "Condo in a brick building on Main Street."),
    ("410003", "110 Quarry Hill Road", "Millbrook Falls", "Quarry Hill", "06790", "house",
     689000, 5, "3.5", 3300, 2002, 60000, 3, 0, True,
     ["garage", "pool", "basement", "air_conditioning", "fireplace"], "active",
     "Five-bedroom colonial on more than an acre, with a pool."),
    ("410004", "7 Church Street", "Millbrook Falls", "Village Center", "06790", "townhouse",
     329000, 2, "1.5", 1250, 1998, 1500, 1, 160, True, ["garage", "laundry_in_unit"], "active",
     "Townhouse a short walk from the village green."),
    ("410005", "Lot 4, Falls Road", "Millbrook Falls", "Mill Pond", "06790", "land", 189000, 0,
     "0.0", None, None, 87120, None, 0, None, ["waterfront"], "active",
     "Two wooded acres along the river."),
    ("410006", "25 Orchard Lane", "Millbrook Falls", "Orchard Hill", "06790", "house", 419000,
     3, "2.0", 1700, 1984, 25000, 2, 0, True, ["garden", "basement"], "active",
     "Contemporary with orchard views and a big vegetable garden."),
    ("510001", "14 Green Street", "Ashford Green", "The Common", "01430", "house", 379000, 3,
     "1.5", 1500, 1950, 7000, 1, 0, True, ["garden", "fireplace"], "active",
     "Cape by the common with a fireplace."),
    ("510002", "3 Academy Road", "Ashford Green", "The Common", "01430", "house", 525000, 4,
     "2.5", 2250, 1996, 15000, 2, 0, True, ["garage", "basement", "air_conditioning"],
     "active", "Colonial with a two-car garage and central air."),
    ("510003", "90 Meadow Way, Unit 12", "Ashford Green", "Meadows", "01431", "condo", 259000,
     2, "2.0", 1050, 2006, None, 1, 230, True, ["elevator", "laundry_in_unit", "balcony"],
     "active", "Two-bedroom condo with a balcony over the meadow."),
    ("510004", "41 Meadow Way", "Ashford Green", "Meadows", "01431", "townhouse", 349000, 3,
     "2.5", 1600, 2011, 2000, 2, 200, True, ["garage", "air_conditioning", "laundry_in_unit"],
     "active", "Three-bedroom townhouse with an attached garage."),
    ("510005", "6 Old Post Road", "Ashford Green", "Old Post", "01430", "house", 610000, 4,
     "3.0", 2700, 1875, 40000, 3, 0, True, ["fireplace", "garden", "basement", "garage"],
     "active", "Restored farmhouse with a barn and three fireplaces."),
    ("510006", "28 Old Post Road", "Ashford Green", "Old Post", "01430", "house", 445000, 3,
     "2.0", 1750, 1965, 18000, 2, 0, False, ["garage", "garden"], "active",
     "Split-level on a wooded lot."),
    ("610001", "1 Riverside Drive, Apt 9C", "Riverton Bay", "Riverside", "02840", "condo",
     385000, 2, "2.0", 1150, 2018, None, 1, 450, True,
     ["elevator", "balcony", "waterfront", "air_conditioning", "laundry_in_unit"], "active",
     "New condo on the river with a balcony and a gym."),
    ("610002", "17 Bay Street", "Riverton Bay", "Old Town", "02840", "house", 575000, 3, "2.5",
     1950, 1905, 5000, 1, 0, True, ["fireplace", "garden"], "active",
     "Federal-style house in the old town."),
    ("610003", "52 Bay Street, Apt 2", "Riverton Bay", "Old Town", "02840", "apartment",
     299000, 1, "1.0", 700, 1915, None, 0, 210, True, ["laundry_in_unit"], "active",
     "Apartment over a café on Bay Street."),
    ("610004", "230 Shore Road", "Riverton Bay", "Shore", "02841", "house", 980000, 5, "4.0",
     3600, 2008, 22000, 3, 0, True,
     ["waterfront", "pool", "garage", "air_conditioning", "fireplace"], "active",
     "Shingle-style house on the bay with a pool."),
    ("610005", "12 Shore Road", "Riverton Bay", "Shore", "02841", "townhouse", 459000, 3,
     "2.5", 1700, 2014, 1900, 2, 260, True, ["garage", "waterfront", "balcony"], "active",
     "Townhouse with a bay-view balcony."),
    ("610006", "8 Riverside Drive", "Riverton Bay", "Riverside", "02840", "house", 689000, 4,
     "3.0", 2500, 1992, 9000, 2, 0, True, ["garage", "basement", "garden", "air_conditioning"],
     "active", "Four-bedroom house a block from the riverwalk."),
]
STATES = {"Cedar Hollow": "NJ", "Port Ellis": "NY", "Millbrook Falls": "CT", "Ashford Green": "MA",
          "Riverton Bay": "RI"}
COLUMNS = ("listing_id", "address", "city", "neighbourhood", "postal_code", "property_type",
           "price", "bedrooms", "bathrooms", "area_sqft", "year_built", "lot_sqft",
           "parking_spaces", "hoa_monthly", "pets_allowed", "features", "status", "description")


def _listing(row: tuple) -> dict:
    data = dict(zip(COLUMNS, row, strict=True))
    data["address"] = f"{data['address']}, {data['city']}, {STATES[data['city']]}"
    data["price"] = Decimal(data["price"])
    data["bathrooms"] = Decimal(data["bathrooms"])
    if data["hoa_monthly"] is not None:
        data["hoa_monthly"] = Decimal(data["hoa_monthly"])
    return data


LISTINGS = [_listing(row) for row in ROWS]
# The fields this command fills on a listing that predates them, when they are still empty.
NEW_FIELDS = COLUMNS[2:6] + COLUMNS[10:16]

# Demo realtors are staff users without a usable password: they take calls, not log in.
REALTORS = [
    {"username": "anna", "first_name": "Anna", "last_name": "Novak",
     "email": "anna.novak@agency.example", "phone": "+1 201 555 0142"},
    {"username": "ben", "first_name": "Ben", "last_name": "Carter",
     "email": "ben.carter@agency.example", "phone": "+1 201 555 0187"},
]

ADMIN_USERNAME = "admin"


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
            self.stdout.write(
                f"admin login: {settings.SITE_URL}/admin/ user {ADMIN_USERNAME} password {password}"
            )


def seed_listing(data: dict) -> bool:
    """Create one demo listing unless its listing ID exists; return whether it was new. A
    listing that exists gets only the ``NEW_FIELDS`` it has empty (it predates them), so what
    staff edited stays."""
    fields = {"currency": "USD", "status": Listing.Status.ACTIVE, **data}
    listing_id = fields.pop("listing_id")
    listing, created = Listing.objects.get_or_create(listing_id=listing_id, defaults=fields)
    if not created:
        empty = [name for name in NEW_FIELDS if getattr(listing, name) in (None, "")]
        for name in empty:
            setattr(listing, name, fields[name])
        if empty:
            listing.save(update_fields=empty)
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
