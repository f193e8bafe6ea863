"""The two listing classifiers' answers: what a visitor searches for (``listing_search``) and
what they ask about one listing (``listing_facts``); their prompts, schemas and parsers.
``agent.llm.classifiers`` makes them ``Classifier``s and gives their priorities and reasons."""

from dataclasses import dataclass
from typing import Any

from agent.llm.fields import (
    BOOLEAN,
    LISTING_ID,
    ClassifierOutputError,
    nullable,
    read_field,
    schema_object,
)

# The listings.models vocabularies, copied here (agent.llm does not import the listings app);
# tests/llm/test_listing_classifiers.py checks they stay equal.
FEATURES = ("garage", "pool", "garden", "balcony", "fireplace", "basement", "waterfront",
            "elevator", "air_conditioning", "laundry_in_unit")
PROPERTY_TYPES = ("house", "condo", "townhouse", "apartment", "land")
FACTS = ("bedrooms", "bathrooms", "area", "address", "year_built", "lot", "parking", "hoa",
         "pets", "features", "status", "open_houses", "type", "other")
MAX_PRICE = 1_000_000_000  # dollars: a bound on what a model may put in a price criterion
MAX_PLACE = 60  # characters of a place name


@dataclass(frozen=True)
class ListingSearch:
    """Does the visitor want to see listings, and by which criteria, as the LATEST message
    gives them (the router merges them with the conversation's earlier criteria)? Prices are
    whole units of the listing currency (dollars); ``features`` are ``listings.models.Feature``
    values; ``property_type`` one of ``PROPERTY_TYPES`` or None."""

    wants_listings: bool
    place: str | None
    min_price: int | None
    max_price: int | None
    min_bedrooms: int | None
    min_bathrooms: float | None
    property_type: str | None
    features: tuple[str, ...]


@dataclass(frozen=True)
class ListingFacts:
    """Is this a question about one listing's facts: which listing (6-digit id, or None when
    the message and conversation name none: the router then uses the listing on screen), and
    which facts (``FACTS``; "other" for anything the record cannot answer) and features? And
    does it ask about the people of a neighbourhood (safety, schools by who attends, religion,
    ethnicity, families), which the bot never answers (fair housing)?"""

    asks_facts: bool
    listing_id: str | None
    facts: tuple[str, ...]
    features: tuple[str, ...]
    about_people: bool


def _nullable_number(kind: str, maximum: float) -> dict:
    return {"anyOf": [{"type": kind, "minimum": 0, "maximum": maximum}, {"type": "null"}]}


def _list_of(values: tuple[str, ...]) -> dict:
    return {"type": "array", "items": {"type": "string", "enum": list(values)},
            "maxItems": len(values)}


FACTS_PROMPT = (
        "You classify messages for a real-estate agency's chat. "
        "The messages may be in any language (English, Spanish or another). "
        "Decide whether the visitor's "
        "latest message asks about the facts of ONE listing (the one named by its 6-digit id "
        "in the conversation, or the one the visitor is looking at, or 'this one', 'it'). "
        "Asking for homes that match criteria, or for a price, is not. Set listing_id to the "
        "6-digit id meant if the conversation gives one, else null. Set facts to what is "
        "asked, among: bedrooms, bathrooms, area, address, year_built, lot, parking, hoa, "
        "pets, features, status, open_houses, type; 'other' for anything else. Set features "
        "to the features asked about, among: garage, pool, garden, balcony, fireplace, "
        "basement, waterfront, elevator, air_conditioning, laundry_in_unit. Set about_people "
        "to true when the message asks about the people of a place: safety or crime, schools "
        "ranked by who attends, religion, ethnicity, nationality, families or children nearby "
        "(then asks_facts may be false). "
        'Answer with JSON only: {"asks_facts": true|false, "listing_id": "123456"|null, '
        '"facts": [...], "features": [...], "about_people": true|false}.'
)
FACTS_SCHEMA = schema_object(
        asks_facts=BOOLEAN, listing_id=nullable(f"^{LISTING_ID}$"), facts=_list_of(FACTS),
        features=_list_of(FEATURES), about_people=BOOLEAN,
)
SEARCH_PROMPT = (
        "You classify messages for a real-estate agency's chat. "
        "The messages may be in any language (English, Spanish or another). "
        "Decide whether the visitor's "
        "latest message asks to see or find listings (homes for sale) matching criteria, "
        "counting a reply that refines or adds to a search ('what about with a garage?', "
        "'under 400k then'). A question about one listing's facts or price is not. Give only "
        "the criteria the LATEST message states, others null or empty: place (a town or "
        "neighbourhood, as written), min_price and max_price (whole dollars: '500k' is "
        "500000), min_bedrooms, min_bathrooms, property_type (house, condo, townhouse, "
        "apartment, land), features (garage, pool, garden, balcony, fireplace, basement, "
        "waterfront, elevator, air_conditioning, laundry_in_unit). "
        'Answer with JSON only: {"wants_listings": true|false, "place": "..."|null, '
        '"min_price": 0|null, "max_price": 0|null, "min_bedrooms": 0|null, '
        '"min_bathrooms": 0|null, "property_type": "house"|null, "features": [...]}.'
)
SEARCH_SCHEMA = schema_object(
        wants_listings=BOOLEAN,
        place={"anyOf": [{"type": "string", "maxLength": MAX_PLACE}, {"type": "null"}]},
        min_price=_nullable_number("integer", MAX_PRICE),
        max_price=_nullable_number("integer", MAX_PRICE),
        min_bedrooms=_nullable_number("integer", 50),
        min_bathrooms=_nullable_number("number", 50),
        property_type={"anyOf": [{"type": "string", "enum": list(PROPERTY_TYPES)},
                                 {"type": "null"}]},
        features=_list_of(FEATURES),
)


def _number(data: dict, name: str, kind: type, top: float) -> Any:
    """A nullable number field within 0..``top`` (a JSON integer may come as 3.0)."""
    if name not in data:
        raise ClassifierOutputError(f"missing field {name!r}")
    value = data[name]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= top:
        raise ClassifierOutputError(f"{name!r} should be a number from 0 to {top}, got {value!r}")
    if kind is int:
        if value != int(value):
            raise ClassifierOutputError(f"{name!r} should be a whole number, got {value!r}")
        return int(value)
    return float(value)


def _choices(data: dict, name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """A list field whose items are all in ``allowed``, as a tuple without repeats."""
    value = read_field(data, name, list)
    if any(item not in allowed for item in value):
        raise ClassifierOutputError(f"{name!r} items should be among {allowed}, got {value!r}")
    return tuple(dict.fromkeys(value))


def _listing_search(data: dict) -> ListingSearch:
    place = read_field(data, "place", str, rf"(?s).{{0,{MAX_PLACE}}}")
    kind = read_field(data, "property_type", str, "|".join(PROPERTY_TYPES))
    return ListingSearch(
        wants_listings=read_field(data, "wants_listings", bool),
        place=place.strip() or None if place else None,
        min_price=_number(data, "min_price", int, MAX_PRICE),
        max_price=_number(data, "max_price", int, MAX_PRICE),
        min_bedrooms=_number(data, "min_bedrooms", int, 50),
        min_bathrooms=_number(data, "min_bathrooms", float, 50),
        property_type=kind,
        features=_choices(data, "features", FEATURES),
    )


def parse_search(data: dict) -> ListingSearch:
    """The typed ``listing_search`` answer.

    Raises:
        ClassifierOutputError: a field is missing, of the wrong type or out of bounds.
    """
    return _listing_search(data)


def parse_facts(data: dict) -> ListingFacts:
    """The typed ``listing_facts`` answer.

    Raises:
        ClassifierOutputError: a field is missing, of the wrong type or out of bounds.
    """
    return ListingFacts(
        asks_facts=read_field(data, "asks_facts", bool),
        listing_id=read_field(data, "listing_id", str, LISTING_ID),
        facts=_choices(data, "facts", FACTS),
        features=_choices(data, "features", FEATURES),
        about_people=read_field(data, "about_people", bool),
    )
