"""A listing's facts as sentences a visitor reads, from its record only.

Each fact of ``agent.llm.listing_classifiers.FACTS`` has a sentence here; a fact the record
does not hold (an empty field, features nobody recorded, "other") has none, and the chat says
so instead of guessing. Sentences are in the active language (``django.utils.translation``).
"""

import logging
from datetime import datetime

from babel.numbers import format_decimal
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop, ngettext

from listings import money
from listings.agencytime import babel_locale, format_day, local
from listings.models import CURRENCY_SYMBOLS, Feature, Listing

logger = logging.getLogger(__name__)

# What a visitor reads for each fact that cannot be answered: "I don't have <this> on record".
# (English; read them through gettext: ``_(FACT_NAMES[fact])``.)
FACT_NAMES = {
    "bedrooms": gettext_noop("the number of bedrooms"),
    "bathrooms": gettext_noop("the number of bathrooms"),
    "area": gettext_noop("the floor area"), "address": gettext_noop("the address"),
    "year_built": gettext_noop("the year it was built"), "lot": gettext_noop("the lot size"),
    "parking": gettext_noop("the parking"), "hoa": gettext_noop("the HOA fee"),
    "pets": gettext_noop("the pet rules"), "features": gettext_noop("its features"),
    "status": gettext_noop("its status"), "open_houses": gettext_noop("open houses"),
    "type": gettext_noop("the type of property"), "other": gettext_noop("that"),
}
STATUS_TEXT = {
    Listing.Status.ACTIVE: gettext_noop("It is for sale."),
    Listing.Status.UNDER_OFFER: gettext_noop("It is under offer."),
    Listing.Status.SOLD: gettext_noop("It has been sold."),
}
TYPE_TEXT = {  # each kind with its article, which other languages give by the noun's gender
    "house": gettext_noop("It is a house."), "condo": gettext_noop("It is a condo."),
    "townhouse": gettext_noop("It is a townhouse."),
    "apartment": gettext_noop("It is an apartment."), "land": gettext_noop("It is a land."),
}
FEATURE_WORDS = (  # each feature alone and with its article, for the catalogues
    gettext_noop("garage"), gettext_noop("a garage"), gettext_noop("pool"),
    gettext_noop("a pool"), gettext_noop("garden"), gettext_noop("a garden"),
    gettext_noop("balcony"), gettext_noop("a balcony"), gettext_noop("fireplace"),
    gettext_noop("a fireplace"), gettext_noop("basement"), gettext_noop("a basement"),
    gettext_noop("waterfront"), gettext_noop("a waterfront"), gettext_noop("elevator"),
    gettext_noop("an elevator"), gettext_noop("air conditioning"),
    gettext_noop("laundry in unit"),
)


def number(value) -> str:
    """A count or a decimal as the active language writes it: "1,200", "2.5" ("1.200", "2,5")."""
    return format_decimal(value, locale=babel_locale())


def _money(listing: Listing, amount) -> str:
    if not (translation.get_language() or "en").startswith("en"):
        return money.written(amount, listing.currency)
    symbol = CURRENCY_SYMBOLS.get(listing.currency)
    text = f"{amount:,.0f}" if amount == amount.to_integral() else f"{amount:,.2f}"
    return f"{symbol}{text}" if symbol else f"{text} {listing.currency}"


def feature_name(value: str) -> str:
    """A feature's words in the active language: ``laundry_in_unit`` is "laundry in unit"."""
    return _(Feature(value).label.lower())


def features_sentence(listing: Listing, asked: tuple[str, ...]) -> str | None:
    """Which of the ``asked`` features the listing has (all its features when none is
    asked), or None when its features were never recorded."""
    if listing.features is None:
        return None
    have = [f for f in asked if f in listing.features]
    lack = [f for f in asked if f not in listing.features]
    if not asked:
        if not listing.features:
            return _("It has none of the features we record (garage, pool, garden and so on).")
        return _("It has: %(features)s.") % {
            "features": ", ".join(feature_name(f) for f in listing.features)}
    parts = []
    if have:
        parts.append(_("It has %(features)s.") % {
            "features": join_words([article(f) for f in have])})
    if lack:
        parts.append(_("It does not have %(features)s.") % {
            "features": join_words([article(f) for f in lack])})
    return " ".join(parts)


def article(value: str) -> str:
    """A feature with its article, in the active language: "a garage", "an elevator", "air
    conditioning" ("un garaje")."""
    name = Feature(value).label.lower()
    if value in ("air_conditioning", "laundry_in_unit"):
        return _(name)
    return _(("an " if name[0] in "aeiou" else "a ") + name)


def join_words(parts: list[str]) -> str:
    """Words joined as a list is read, in the active language: "a, b and c"."""
    if len(parts) == 1:
        return parts[0]
    return _("%(list)s and %(last)s") % {"list": ", ".join(parts[:-1]), "last": parts[-1]}


def sentence(listing: Listing, fact: str, features: tuple[str, ...], now: datetime) -> str | None:
    """One fact of ``listing`` as a sentence, or None when the record does not hold it.

    Args:
        listing: the listing, with ``open_houses`` loaded or loadable.
        fact: one of ``agent.llm.listing_classifiers.FACTS``.
        features: the features asked about (``Feature`` values), for the "features" fact.
        now: the current time, aware: only open houses still to come are named.
    """
    if fact == "bedrooms":
        count = listing.bedrooms
        return ngettext("It has %(n)s bedroom.", "It has %(n)s bedrooms.", count) % {
            "n": number(count)}
    if fact == "bathrooms":
        count = listing.bathrooms.normalize()
        return ngettext("It has %(n)s bathroom.", "It has %(n)s bathrooms.",
                        1 if count == 1 else 2) % {"n": number(count)}
    if fact == "area" and listing.area_sqft:
        return _("It has %(n)s sq ft.") % {"n": number(listing.area_sqft)}
    if fact == "address" and listing.address:
        return _("It is at %(address)s.") % {"address": listing.address}
    if fact == "year_built" and listing.year_built:
        return _("It was built in %(year)s.") % {"year": listing.year_built}
    if fact == "lot" and listing.lot_sqft:
        return _("The lot is %(n)s sq ft.") % {"n": number(listing.lot_sqft)}
    if fact == "parking" and listing.parking_spaces is not None:
        if listing.parking_spaces == 0:
            return _("It has no parking space.")
        count = listing.parking_spaces
        return ngettext("It has %(n)s parking space.", "It has %(n)s parking spaces.",
                        count) % {"n": number(count)}
    if fact == "hoa" and listing.hoa_monthly is not None:
        if not listing.hoa_monthly:
            return _("It has no HOA fee.")
        return _("The HOA fee is %(amount)s a month.") % {
            "amount": _money(listing, listing.hoa_monthly)}
    if fact == "pets" and listing.pets_allowed is not None:
        return _("Pets are allowed.") if listing.pets_allowed else _("Pets are not allowed.")
    if fact == "features":
        return features_sentence(listing, features)
    if fact == "status":
        status = STATUS_TEXT.get(listing.status)
        return _(status) if status else None
    if fact == "open_houses":
        coming = [o for o in listing.open_houses.all() if o.ends_at > now]
        if not coming:
            return _("No open house is planned.")
        times = [_("%(day)s, %(start)s to %(end)s") % {
            "day": format_day(o.starts_at), "start": f"{local(o.starts_at):%H:%M}",
            "end": f"{local(o.ends_at):%H:%M %Z}"} for o in coming[:3]]
        return _("Open house: %(times)s.") % {"times": "; ".join(times)}
    if fact == "type" and listing.property_type:
        if listing.property_type in TYPE_TEXT:
            return _(TYPE_TEXT[listing.property_type])
        kind = listing.get_property_type_display().lower()
        return f"It is {'an' if kind[0] in 'aeiou' else 'a'} {kind}."
    return None
