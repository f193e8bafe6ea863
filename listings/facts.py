"""A listing's facts as sentences a visitor reads, from its record only.

Each fact of ``agent.llm.listing_classifiers.FACTS`` has a sentence here; a fact the record
does not hold (an empty field, features nobody recorded, "other") has none, and the chat says
so instead of guessing.
"""

import logging
from datetime import datetime

from listings.agencytime import format_day, local
from listings.models import CURRENCY_SYMBOLS, Feature, Listing

logger = logging.getLogger(__name__)

# What a visitor reads for each fact that cannot be answered: "I don't have <this> on record".
FACT_NAMES = {
    "bedrooms": "the number of bedrooms", "bathrooms": "the number of bathrooms",
    "area": "the floor area", "address": "the address", "year_built": "the year it was built",
    "lot": "the lot size", "parking": "the parking", "hoa": "the HOA fee",
    "pets": "the pet rules", "features": "its features", "status": "its status",
    "open_houses": "open houses", "type": "the type of property", "other": "that",
}
STATUS_TEXT = {
    Listing.Status.ACTIVE: "It is for sale.",
    Listing.Status.UNDER_OFFER: "It is under offer.",
    Listing.Status.SOLD: "It has been sold.",
}


def _plural(count, word: str) -> str:
    number = f"{count:g}" if not isinstance(count, int) else f"{count:,}"
    return f"{number} {word}" + ("" if count == 1 else "s")


def _money(listing: Listing, amount) -> str:
    symbol = CURRENCY_SYMBOLS.get(listing.currency)
    text = f"{amount:,.0f}" if amount == amount.to_integral() else f"{amount:,.2f}"
    return f"{symbol}{text}" if symbol else f"{text} {listing.currency}"


def feature_name(value: str) -> str:
    """A feature's words: ``laundry_in_unit`` is "laundry in unit"."""
    return Feature(value).label.lower()


def features_sentence(listing: Listing, asked: tuple[str, ...]) -> str | None:
    """Which of the ``asked`` features the listing has (all its features when none is
    asked), or None when its features were never recorded."""
    if listing.features is None:
        return None
    have = [f for f in asked if f in listing.features]
    lack = [f for f in asked if f not in listing.features]
    if not asked:
        if not listing.features:
            return "It has none of the features we record (garage, pool, garden and so on)."
        return "It has: " + ", ".join(feature_name(f) for f in listing.features) + "."
    parts = []
    if have:
        parts.append("It has " + join_words([article(f) for f in have]) + ".")
    if lack:
        parts.append("It does not have " + join_words([article(f) for f in lack]) + ".")
    return " ".join(parts)


def article(value: str) -> str:
    """A feature with its article: "a garage", "an elevator", "air conditioning"."""
    name = feature_name(value)
    if value in ("air_conditioning", "laundry_in_unit"):
        return name
    return ("an " if name[0] in "aeiou" else "a ") + name


def join_words(parts: list[str]) -> str:
    """Words joined as a list is read: "a, b and c"."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def sentence(listing: Listing, fact: str, features: tuple[str, ...], now: datetime) -> str | None:
    """One fact of ``listing`` as a sentence, or None when the record does not hold it.

    Args:
        listing: the listing, with ``open_houses`` loaded or loadable.
        fact: one of ``agent.llm.listing_classifiers.FACTS``.
        features: the features asked about (``Feature`` values), for the "features" fact.
        now: the current time, aware: only open houses still to come are named.
    """
    if fact == "bedrooms":
        return f"It has {_plural(listing.bedrooms, 'bedroom')}."
    if fact == "bathrooms":
        return f"It has {_plural(listing.bathrooms.normalize(), 'bathroom')}."
    if fact == "area" and listing.area_sqft:
        return f"It has {listing.area_sqft:,} sq ft."
    if fact == "address" and listing.address:
        return f"It is at {listing.address}."
    if fact == "year_built" and listing.year_built:
        return f"It was built in {listing.year_built}."
    if fact == "lot" and listing.lot_sqft:
        return f"The lot is {listing.lot_sqft:,} sq ft."
    if fact == "parking" and listing.parking_spaces is not None:
        if listing.parking_spaces == 0:
            return "It has no parking space."
        return f"It has {_plural(listing.parking_spaces, 'parking space')}."
    if fact == "hoa" and listing.hoa_monthly is not None:
        if not listing.hoa_monthly:
            return "It has no HOA fee."
        return f"The HOA fee is {_money(listing, listing.hoa_monthly)} a month."
    if fact == "pets" and listing.pets_allowed is not None:
        return "Pets are allowed." if listing.pets_allowed else "Pets are not allowed."
    if fact == "features":
        return features_sentence(listing, features)
    if fact == "status":
        return STATUS_TEXT.get(listing.status)
    if fact == "open_houses":
        coming = [o for o in listing.open_houses.all() if o.ends_at > now]
        if not coming:
            return "No open house is planned."
        times = [f"{format_day(o.starts_at)}, {local(o.starts_at):%H:%M} to "
                 f"{local(o.ends_at):%H:%M %Z}" for o in coming[:3]]
        return "Open house: " + "; ".join(times) + "."
    if fact == "type" and listing.property_type:
        kind = listing.get_property_type_display().lower()
        return f"It is {'an' if kind[0] in 'aeiou' else 'a'} {kind}."
    return None
