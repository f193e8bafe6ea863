"""Listing photos: a thumbnail for the cards on save, and the card's photo URL."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from listings.models import Listing, ListingPhoto
from listings.photos import THUMBNAIL_SIZE, make_thumbnail
from listings.search import Criteria, search

pytestmark = pytest.mark.django_db


def png(width=1200, height=900) -> SimpleUploadedFile:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 80, 120)).save(out, "PNG")
    return SimpleUploadedFile("front.png", out.getvalue(), content_type="image/png")


def test_a_photo_gets_a_jpeg_thumbnail_of_the_card_size_and_the_card_shows_it(settings, tmp_path):
    from agent.chat.homes import card

    settings.MEDIA_ROOT = tmp_path
    listing = Listing.objects.create(listing_id="123456", address="1 Road", price=1, city="X")
    photo = ListingPhoto.objects.create(listing=listing, image=png())
    with Image.open(photo.thumbnail.path) as thumb:
        assert (thumb.format, thumb.size) == ("JPEG", THUMBNAIL_SIZE)
    (found,) = search(Criteria(place="x")).listings
    assert card(found)["photo"] == f"/media/{photo.thumbnail.name}"


def test_a_file_that_is_not_an_image_is_refused():
    with pytest.raises(ValueError, match="not a readable image"):
        make_thumbnail(SimpleUploadedFile("x.png", b"not a png"))
