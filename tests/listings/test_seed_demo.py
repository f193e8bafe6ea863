"""``manage.py seed_demo``: the demo data, safe to run twice, and a working admin login."""

import re
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from listings.models import Listing, Realtor

pytestmark = pytest.mark.django_db

LOGIN = re.compile(r"admin login: http://127\.0\.0\.1:8000/admin/ user admin password (\S+)")


def seed(*args) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def counts() -> tuple[int, int, int]:
    return Listing.objects.count(), Realtor.objects.count(), get_user_model().objects.count()


def printed_password(output: str) -> str:
    match = LOGIN.search(output)
    assert match, output
    return match.group(1)


def test_running_it_twice_leaves_the_same_rows():
    seed()
    first = counts()
    seed()
    assert counts() == first
    assert first[0] >= 7
    assert first[1] == 2


def test_the_tutorial_listings_have_their_prices():
    seed()
    prices = dict(Listing.objects.values_list("listing_id", "price"))
    assert prices["123456"] == Decimal("350000")
    assert prices["654321"] == Decimal("450000")
    assert prices["112233"] == Decimal("550000")
    assert Listing.objects.get(listing_id="123456").formatted_price() == "$350,000"


def test_there_is_one_listing_under_offer_and_one_sold():
    seed()
    assert Listing.objects.filter(status=Listing.Status.UNDER_OFFER).count() == 1
    assert Listing.objects.filter(status=Listing.Status.SOLD).count() == 1


def test_forty_listings_over_five_towns_and_old_rows_get_the_new_fields():
    Listing.objects.create(listing_id="654321", address="88 Harbor View Drive", price=1, city="")
    seed()
    assert Listing.objects.count() == 40
    assert Listing.objects.values("city").distinct().count() == 5
    old = Listing.objects.get(listing_id="654321")
    assert (old.price, old.city, old.features[:2]) == (1, "Port Ellis", ["balcony", "garage"])


def test_running_it_again_keeps_a_price_staff_edited():
    seed()
    Listing.objects.filter(listing_id="123456").update(price=Decimal("340000"))
    seed()
    assert Listing.objects.get(listing_id="123456").price == Decimal("340000")


def test_the_realtors_are_staff_who_take_calls_but_cannot_log_in():
    seed()
    anna = Realtor.objects.get(user__username="anna")
    assert str(anna) == "Anna Novak"
    assert anna.is_active
    assert anna.user.is_staff
    assert not anna.user.is_superuser
    assert not anna.user.has_usable_password()
    assert str(Realtor.objects.get(user__username="ben")) == "Ben Carter"


def test_without_the_admin_option_no_superuser_is_made():
    output = seed()
    assert "admin login" not in output
    assert not get_user_model().objects.filter(username="admin").exists()


def test_the_printed_admin_login_works(monkeypatch):
    monkeypatch.delenv("DEMO_ADMIN_PASSWORD", raising=False)
    password = printed_password(seed("--admin"))
    user = authenticate(username="admin", password=password)
    assert user is not None
    assert user.is_superuser and user.is_staff


def test_each_run_prints_a_fresh_password_that_replaces_the_old_one(monkeypatch):
    monkeypatch.delenv("DEMO_ADMIN_PASSWORD", raising=False)
    old = printed_password(seed("--admin"))
    new = printed_password(seed("--admin"))
    assert new != old
    assert authenticate(username="admin", password=old) is None
    assert authenticate(username="admin", password=new) is not None
    assert get_user_model().objects.filter(username="admin").count() == 1


def test_the_admin_password_comes_from_the_environment_when_set(monkeypatch):
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "local-demo-pass")
    assert printed_password(seed("--admin")) == "local-demo-pass"
    assert authenticate(username="admin", password="local-demo-pass") is not None


def test_the_admin_login_names_the_sites_own_port(monkeypatch, settings):
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "local-demo-pass")
    settings.SITE_URL = "http://127.0.0.1:8731"  # as make run sets it for PORT=8731
    assert "admin login: http://127.0.0.1:8731/admin/ user admin" in seed("--admin")
