"""listings.search: criteria, the ranking, one query, what to relax, and the indexes."""

import io
import random
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection

from listings.models import Listing
from listings.search import Criteria, relax, search

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(db):
    call_command("seed_demo", stdout=io.StringIO())


def ids(found):
    return [listing.listing_id for listing in found.listings]


def test_every_listing_found_meets_every_criterion_and_the_total_counts_them_all(demo):
    criteria = Criteria(place="cedar hollow", max_price=500000, min_bedrooms=3)
    found = search(criteria, limit=50)
    assert found.total == len(found.listings) == 4
    for listing in found.listings:
        assert listing.city == "Cedar Hollow" and listing.price <= 500000
        assert listing.bedrooms >= 3 and listing.status == Listing.Status.ACTIVE
    assert search(criteria).total == 4 and len(search(criteria).listings) == 3


def test_the_best_value_comes_first_lowest_price_per_square_foot(demo):
    found = search(Criteria(place="Cedar Hollow", min_bedrooms=3), limit=50)
    per_sqft = [listing.price / listing.area_sqft for listing in found.listings]
    assert per_sqft == sorted(per_sqft)
    assert ids(found)[0] == "123456"  # $350,000 for 1,650 sq ft: $212 a square foot


def test_listings_without_an_area_come_after_those_with_one(demo):
    found = search(Criteria(place="Cedar Hollow"), limit=50)
    assert ids(found)[-1] == "210007"  # the land, no floor area


def test_a_neighbourhood_is_a_place_too_and_features_are_all_required(demo):
    found = search(Criteria(place="harbor district", features=("balcony", "garage")), limit=50)
    assert sorted(ids(found)) == ["310003", "654321"]
    assert search(Criteria(features=("pool", "waterfront")), limit=50).total == 2


def test_a_search_is_one_query(demo, django_assert_num_queries):
    with django_assert_num_queries(1):
        found = search(Criteria(place="Port Ellis", features=("garage",)))
        assert found.total and [listing.cover for listing in found.listings]


def test_later_criteria_replace_earlier_ones_and_add_features():
    before = Criteria(place="Port Ellis", max_price=500000, features=("balcony",))
    after = before.merged(Criteria(max_price=600000, features=("garage",)))
    assert after == Criteria(place="Port Ellis", max_price=600000,
                             features=("balcony", "garage"))
    assert Criteria.from_dict(after.as_dict()) == after
    assert not Criteria() and Criteria(min_price=0)


def test_nothing_under_the_budget_says_the_lowest_price_there(demo):
    relaxation = relax(Criteria(place="port ellis", max_price=300000))
    assert (relaxation.criterion, relaxation.value) == ("max_price", Decimal("415000"))
    assert relaxation.place == "Port Ellis"


def test_the_least_essential_criterion_is_dropped_first(demo):
    relaxation = relax(Criteria(place="Millbrook Falls", min_bedrooms=3, features=("elevator",)))
    assert relaxation.criterion == "features" and relaxation.count == 4
    relaxation = relax(Criteria(place="Riverton Bay", min_bedrooms=6))
    assert (relaxation.criterion, relaxation.value) == ("min_bedrooms", 5)


def test_an_unknown_place_has_no_spelling_and_the_towns_are_named(demo):
    relaxation = relax(Criteria(place="Atlantis", max_price=400000))
    assert relaxation.criterion == "place" and relaxation.place is None
    assert relaxation.towns == ("Ashford Green", "Cedar Hollow", "Millbrook Falls", "Port Ellis")


TOWNS = [f"Town {n}" for n in range(40)]


@pytest.fixture
def many_listings(db):
    """3,000 listings over 40 towns, analysed, so the planner sees a real distribution (and
    the GIN index's pending list merged, as autovacuum would have done)."""
    rng = random.Random(14)
    features = ["garage", "pool", "garden", "balcony", "fireplace", "basement", "waterfront",
                "elevator", "air_conditioning", "laundry_in_unit"]
    Listing.objects.bulk_create(
        Listing(listing_id=f"{100000 + n}", address=f"{n} Road", city=rng.choice(TOWNS),
                neighbourhood=f"Hood {rng.randrange(200)}", price=rng.randrange(100, 2000) * 1000,
                bedrooms=rng.randrange(0, 6), area_sqft=rng.randrange(400, 5000),
                features=rng.sample(features, rng.randrange(0, 4)),
                status=rng.choice(["active"] * 8 + ["sold", "under_offer"]))
        for n in range(3000)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Listing._meta.db_table}")
        cursor.execute("SELECT gin_clean_pending_list('listing_active_features')")


def plan(criteria: Criteria) -> str:
    from listings.search import _active

    query = _active().filter(*criteria.conditions().values())
    return query.explain()


@pytest.mark.parametrize(("criteria", "index"), [
    (Criteria(place="town 7", max_price=500000), "listing_active_city_price"),
    (Criteria(place="hood 12"), "listing_active_neighbourhood"),
    (Criteria(features=("pool", "waterfront", "elevator")), "listing_active_features"),
    (Criteria(max_price=120000), "listing_active_price"),
])
def test_the_search_uses_the_indexes(many_listings, criteria, index):
    text = plan(criteria)
    assert index in text, text
    assert "Seq Scan" not in text, text

