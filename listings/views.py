"""The agency's public listing pages: ``/listings/`` (a filterable list) and
``/listings/<listing_id>/`` (one listing's facts and photos), server-rendered, each with the
chat widget; on a listing's page the widget sends that listing with every message."""

import logging

from django import forms
from django.core.files.storage import default_storage
from django.http import Http404
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

from listings.facts import feature_name
from listings.models import Feature, Listing, PropertyType
from listings.search import Criteria, search

logger = logging.getLogger(__name__)

PAGE_SIZE = 24  # listings shown on /listings/ at most (the total is said)
CHOICE_LABELS = (  # the form's choices and the statuses, for the catalogues
    gettext_noop("House"), gettext_noop("Condo"), gettext_noop("Townhouse"),
    gettext_noop("Apartment"), gettext_noop("Land"), gettext_noop("Garage"), gettext_noop("Pool"),
    gettext_noop("Garden"), gettext_noop("Balcony"), gettext_noop("Fireplace"),
    gettext_noop("Basement"), gettext_noop("Waterfront"), gettext_noop("Elevator"),
    gettext_noop("Active"), gettext_noop("Under offer"), gettext_noop("Sold"),
)


class SearchForm(forms.Form):
    """The list page's filters, as GET parameters; all optional and bounded."""

    place = forms.CharField(required=False, max_length=60, label=_("Town or neighbourhood"))
    max_price = forms.IntegerField(required=False, min_value=0, max_value=10**9,
                                   label=_("Up to (price)"))
    min_bedrooms = forms.IntegerField(required=False, min_value=0, max_value=20,
                                      label=_("Bedrooms at least"))
    property_type = forms.ChoiceField(required=False, label=_("Type"), choices=[("", _("Any"))] + [
        (value, _(label)) for value, label in PropertyType.choices])
    features = forms.MultipleChoiceField(required=False, label=_("Features"), choices=[
        (value, _(label)) for value, label in Feature.choices],
                                         widget=forms.CheckboxSelectMultiple)

    def criteria(self) -> Criteria:
        """The valid filters as search criteria (none when the form is invalid)."""
        if not self.is_valid():
            return Criteria()
        data = self.cleaned_data
        return Criteria(place=data["place"] or None, max_price=data["max_price"],
                        min_bedrooms=data["min_bedrooms"],
                        property_type=data["property_type"] or None,
                        features=tuple(data["features"]))


def listing_list(request):
    """``GET /listings/``: active listings matching the filters, ranked as the chat ranks
    them (``listings.search``), at most ``PAGE_SIZE``."""
    form = SearchForm(request.GET or None)
    found = search(form.criteria() if request.GET else Criteria(), limit=PAGE_SIZE)
    for listing in found.listings:
        listing.cover_url = default_storage.url(listing.cover) if listing.cover else ""
    return render(request, "listings/list.html",
                  {"form": form, "listings": found.listings, "total": found.total})


def listing_detail(request, listing_id: str):
    """``GET /listings/<listing_id>/``: one listing (any status) with its facts, photos and
    coming open houses.

    Raises:
        Http404: no listing has that ID.
    """
    listing = (Listing.objects.filter(listing_id=listing_id)
               .prefetch_related("photos", "open_houses").first())
    if listing is None:
        raise Http404("No such listing.")
    now = timezone.now()
    return render(request, "listings/detail.html", {
        "listing": listing,
        "features": [feature_name(f) for f in listing.features or []],
        "open_houses": [o for o in listing.open_houses.all() if o.ends_at > now],
    })
