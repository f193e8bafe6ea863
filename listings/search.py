"""Listing search: a visitor's criteria to one query, ranked best first, and what to relax
when nothing matches.

**Ranking** (ours, from the issue "search by criteria"): the criteria are hard limits, so
every listing returned meets all of them; among those, the best is the one that gives the
most home for the money: lowest price per square foot first, listings without a recorded
area after those with one, then the lower price, then the listing ID (so the order is total
and the same on every run). A visitor can check the rule on the cards themselves, and it
favours neither the priciest listing nor the agency's stock: it is the visitor's measure.

**One query.** ``search`` reads the top listings, the total number of matches (a window
``COUNT(*) OVER ()``, computed before the ``LIMIT``) and each card's cover thumbnail (a
subquery) in one SELECT. Only when nothing matches does ``relax`` make a second one, an
aggregate over the listings that any one criterion fewer could find, that says which single
criterion, dropped, finds homes, with a real figure (the lowest price there, the most
bedrooms, a town); and a third, the towns to offer, when the place itself is unknown. The
indexes they use are on ``Listing`` (partial, active listings only): ``UPPER(city), price``,
``UPPER(neighbourhood)``, ``price`` and GIN on ``features``.
"""

import logging
from dataclasses import asdict, dataclass, field, fields, replace
from decimal import Decimal

from django.db.models import (
    Case,
    Count,
    DecimalField,
    ExpressionWrapper,
    F,
    Max,
    Min,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
    Window,
)
from django.db.models.functions import Upper

from listings.models import Listing, ListingPhoto

logger = logging.getLogger(__name__)

RESULTS = 3  # listings shown per search turn
TOWNS_SHOWN = 4  # towns named when a place is unknown


@dataclass(frozen=True)
class Criteria:
    """What a visitor searches by; None (or no features) means "any".

    ``place`` is a town or neighbourhood as the visitor wrote it (matched without regard to
    case, never shown back as written); prices are in the listings' currency units (dollars);
    ``features`` are ``listings.models.Feature`` values, all required.
    """

    place: str | None = None
    min_price: int | None = None
    max_price: int | None = None
    min_bedrooms: int | None = None
    min_bathrooms: float | None = None
    property_type: str | None = None
    features: tuple[str, ...] = field(default_factory=tuple)

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) not in (None, "", ()) for f in fields(self))

    def merged(self, newer: "Criteria") -> "Criteria":
        """These criteria updated by a later turn's: a value it gives replaces this one, and
        its features are added to these ("what about with a garage?" keeps the town)."""
        changes = {f.name: getattr(newer, f.name) for f in fields(newer)
                   if f.name != "features" and getattr(newer, f.name) is not None}
        features = tuple(dict.fromkeys(self.features + newer.features))
        return replace(self, **changes, features=features)

    def as_dict(self) -> dict:
        """A JSON-ready dict (for ``Conversation.search``), None values left out."""
        return {k: (list(v) if k == "features" else v)
                for k, v in asdict(self).items() if v not in (None, ())}

    @classmethod
    def from_dict(cls, data: dict | None) -> "Criteria":
        """Criteria from ``as_dict``'s output; unknown keys are ignored, {} gives none."""
        data = data or {}
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["features"] = tuple(values.get("features") or ())
        return cls(**values)

    def conditions(self) -> dict[str, Q]:
        """One ``Q`` per criterion given, keyed by the criterion's name."""
        found = {}
        if self.place:
            place = self.place.upper()
            found["place"] = Q(city_upper=place) | Q(neighbourhood_upper=place)
        if self.min_price is not None:
            found["min_price"] = Q(price__gte=self.min_price)
        if self.max_price is not None:
            found["max_price"] = Q(price__lte=self.max_price)
        if self.min_bedrooms is not None:
            found["min_bedrooms"] = Q(bedrooms__gte=self.min_bedrooms)
        if self.min_bathrooms is not None:
            found["min_bathrooms"] = Q(bathrooms__gte=Decimal(str(self.min_bathrooms)))
        if self.property_type:
            found["property_type"] = Q(property_type=self.property_type)
        if self.features:
            found["features"] = Q(features__contains=list(self.features))
        return found


@dataclass(frozen=True)
class Found:
    """A search's answer: up to ``RESULTS`` listings, best first (each with ``cover``, its
    first photo's thumbnail path or None), and how many match in all."""

    listings: list[Listing]
    total: int


@dataclass(frozen=True)
class Relaxation:
    """What to drop when nothing matched: ``criterion`` (a ``Criteria`` field name, or None
    when no single one helps), how many listings match without it (``count``), and a real
    figure from the database: the lowest or highest price, the most bedrooms or bathrooms
    (``value``) or a town (``town``). ``place`` is the database's own spelling of the
    searched place, None when no active listing is there; ``towns`` a few towns that have
    listings."""

    criterion: str | None
    count: int
    value: Decimal | int | None = None
    town: str | None = None
    place: str | None = None
    towns: tuple[str, ...] = ()


# The order in which criteria are offered for dropping: the least essential first. A feature
# wish gives way before the kind of home, the size before the budget, the town last.
RELAX_ORDER = ("features", "property_type", "min_bathrooms", "min_bedrooms", "max_price",
               "min_price", "place")


def _active():
    return Listing.objects.filter(status=Listing.Status.ACTIVE).annotate(
        city_upper=Upper("city"), neighbourhood_upper=Upper("neighbourhood")
    )


def search(criteria: Criteria, limit: int = RESULTS) -> Found:
    """The active listings meeting every criterion, best first (see the module's ranking),
    in one query.

    Args:
        criteria: what to search by; empty criteria match every active listing.
        limit: how many listings to return at most.
    Returns:
        ``Found``: the listings (with ``cover``) and the total number of matches.
    """
    cover = ListingPhoto.objects.filter(listing=OuterRef("pk")).order_by("position", "id")
    per_sqft = ExpressionWrapper(
        F("price") / F("area_sqft"), output_field=DecimalField(max_digits=14, decimal_places=4)
    )
    query = (
        _active()
        .filter(*criteria.conditions().values())
        .annotate(
            total=Window(Count("id")),
            cover=Subquery(cover.values("thumbnail")[:1]),
            per_sqft=Case(When(area_sqft__gt=0, then=per_sqft), default=Value(None)),
        )
        .order_by(F("per_sqft").asc(nulls_last=True), "price", "listing_id")
    )
    listings = list(query[:limit])
    return Found(listings, listings[0].total if listings else 0)


def relax(criteria: Criteria) -> Relaxation:
    """Which single criterion to drop so that something matches, with a real figure, in one
    aggregate query over the active listings (made only when ``search`` found nothing).

    Returns:
        ``Relaxation``; its ``criterion`` is the first of ``RELAX_ORDER`` that, dropped alone,
        leaves matches, or None when none does.
    """
    conditions = criteria.conditions()

    def without(name: str) -> Q:
        rest = Q()
        for other, condition in conditions.items():
            if other != name:
                rest &= condition
        return rest

    aggregates = {f"n_{name}": Count("id", filter=without(name)) for name in conditions}
    figures = {"max_price": Min("price", filter=without("max_price")),
               "min_price": Max("price", filter=without("min_price")),
               "min_bedrooms": Max("bedrooms", filter=without("min_bedrooms")),
               "min_bathrooms": Max("bathrooms", filter=without("min_bathrooms")),
               "place": Min("city", filter=without("place"))}
    aggregates |= {f"v_{name}": figure for name, figure in figures.items() if name in conditions}
    if "place" in conditions:
        upper = criteria.place.upper()
        aggregates["place_city"] = Min("city", filter=Q(city_upper=upper))
        aggregates["place_hood"] = Min("neighbourhood", filter=Q(neighbourhood_upper=upper))
    # Only the rows some leave-one-out set could hold: each branch keeps the other criteria,
    # so the indexes serve it, rather than a scan of every active listing.
    branches = [without(name) for name in conditions]
    if "place" in conditions:
        branches.append(conditions["place"])
    reach = Q()  # every active listing, when one branch has no condition left
    if all(branches):
        for branch in branches:
            reach |= branch
    row = _active().filter(reach).aggregate(**aggregates)
    place = row.get("place_hood") or row.get("place_city")
    towns = ()
    if "place" in conditions and place is None:  # a third query, for an unknown place only
        towns = tuple(_active().exclude(city="").order_by("city").values_list("city", flat=True)
                      .distinct()[:TOWNS_SHOWN])
    for name in RELAX_ORDER:
        count = row.get(f"n_{name}") or 0
        if name in conditions and count:
            value = row.get(f"v_{name}")
            if name == "place":
                return Relaxation(name, count, town=value, place=place, towns=towns)
            return Relaxation(name, count, value=value, place=place, towns=towns)
    return Relaxation(None, 0, place=place, towns=towns)

