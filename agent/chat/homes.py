"""The router's listing answers: a search by criteria, one listing's facts, and the
fair-housing handoff. Every word comes from here and the database: the classifiers only said
what was asked (``agent.llm.listing_classifiers``).

Search criteria carry across turns on ``Conversation.search``: each search turn merges what
the latest message adds into what the conversation asked before (``Criteria.merged``).
Replies are in the active language (the router activates the conversation's).
"""

import logging
from datetime import datetime

from django.core.files.storage import default_storage
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop, ngettext

from agent.chat.reply import Reply
from agent.llm.listing_classifiers import ListingFacts, ListingSearch
from agent.models import Conversation, Message, Route
from agent.staff import handoffs, hours
from listings import facts as listing_facts
from listings import money
from listings.facts import FACT_NAMES, feature_name
from listings.models import Listing, PropertyType, find_listing
from listings.search import Criteria, Found, Relaxation, relax, search

logger = logging.getLogger(__name__)

FAIR_HOUSING_REASON = "fair housing: a question about the people of a neighbourhood"
KINDS = {  # each property type in the plural, as a search names it
    "house": gettext_noop("houses"), "condo": gettext_noop("condos"),
    "townhouse": gettext_noop("townhouses"), "apartment": gettext_noop("apartments"),
    "land": gettext_noop("land"),
}


def card(listing: Listing) -> dict:
    """A listing as the widget's card (the ``listings`` of an assistant frame).

    Returns:
        ``{"listing_id", "url" (its page's path), "price" (as the visitor reads it),
        "bedrooms" (int), "bathrooms" (float), "town", "address", "photo" (the cover
        thumbnail's URL, or null)}``. ``listing`` comes from ``listings.search.search``
        (with ``cover``); any other listing has no photo here.
    """
    cover = getattr(listing, "cover", None)
    return {
        "listing_id": listing.listing_id,
        "url": listing.get_absolute_url(),
        "price": listing.formatted_price(),
        "bedrooms": listing.bedrooms,
        "bathrooms": float(listing.bathrooms),
        "town": listing.town(),
        "address": listing.address,
        "photo": default_storage.url(cover) if cover else None,
    }


def criteria_of(said: ListingSearch) -> Criteria:
    """The criteria one ``listing_search`` answer gives."""
    return Criteria(
        place=said.place, min_price=said.min_price, max_price=said.max_price,
        min_bedrooms=said.min_bedrooms, min_bathrooms=said.min_bathrooms,
        property_type=said.property_type, features=said.features,
    )


def _money(amount) -> str:
    if not (translation.get_language() or "en").startswith("en"):
        return money.written(round(amount), "USD")
    return f"${amount:,.0f}"


def describe(criteria: Criteria, place: str | None, skip: str = "") -> str:
    """The criteria in words, e.g. "condos in Port Ellis under $500,000 with 2+ bedrooms and
    a garage". ``place`` is the database's spelling of the place (the visitor's is never
    repeated); ``skip`` leaves one criterion out."""
    kind = _("homes")
    if criteria.property_type and skip != "property_type":
        kind = PropertyType(criteria.property_type).label.lower()
        kind = _(KINDS.get(criteria.property_type, "land" if kind == "land" else kind + "s"))
    parts = [kind]
    if place and skip != "place":
        parts.append(_("in %(place)s") % {"place": place})
    low = criteria.min_price if skip != "min_price" else None
    high = criteria.max_price if skip != "max_price" else None
    if low is not None and high is not None:
        parts.append(_("from %(low)s to %(high)s") % {"low": _money(low), "high": _money(high)})
    elif high is not None:
        parts.append(_("under %(price)s") % {"price": _money(high)})
    elif low is not None:
        parts.append(_("over %(price)s") % {"price": _money(low)})
    withs = []
    if criteria.min_bedrooms and skip != "min_bedrooms":
        withs.append(_("%(n)s+ bedrooms") % {"n": criteria.min_bedrooms})
    if criteria.min_bathrooms and skip != "min_bathrooms":
        withs.append(_("%(n)s+ bathrooms") % {"n": listing_facts.number(criteria.min_bathrooms)})
    if criteria.features and skip != "features":
        withs += [listing_facts.article(f) for f in criteria.features]
    if withs:
        parts.append(_("with %(what)s") % {"what": listing_facts.join_words(withs)})
    return " ".join(parts)


def _place_of(criteria: Criteria, listing: Listing) -> str | None:
    if not criteria.place:
        return None
    wanted = criteria.place.strip().upper()
    return listing.city if listing.city.upper() == wanted else listing.neighbourhood


def search_reply(conversation: Conversation, said: ListingSearch) -> Reply:
    """Search with the conversation's criteria and this turn's, store them, and answer.

    Routes: ``listing_search`` (up to three cards, best first, and the total),
    ``listing_search_none`` (which criterion to relax, with a figure from the database),
    ``listing_search_needs_criteria`` (nothing to search by yet). One query when something
    matches, two when nothing does (``listings.search``).
    """
    criteria = Criteria.from_dict(conversation.search).merged(criteria_of(said))
    if not criteria:
        return Reply(
            Route.LISTING_SEARCH_NEEDS_CRITERIA,
            _("Happy to help you find a home! Which town are you looking in, and up to what "
              "price?"),
        )
    conversation.search = criteria.as_dict()
    found = search(criteria)
    if found.total:
        return _found(criteria, found)
    relaxation = relax(criteria)
    if criteria.place and relaxation.place is None:
        conversation.search = Criteria.from_dict({**criteria.as_dict(), "place": None}).as_dict()
    return Reply(Route.LISTING_SEARCH_NONE, _none_text(criteria, relaxation))


def _found(criteria: Criteria, found: Found) -> Reply:
    place = _place_of(criteria, found.listings[0])
    count = _homes(found.total)
    what = describe(criteria, place)
    text = (ngettext("I found %(count)s matching: %(what)s.",  # the same words in English
                     "I found %(count)s matching: %(what)s.", found.total)
            % {"count": count, "what": what}
            if what != _("homes") else _("I found %(count)s.") % {"count": count})
    if found.total > 1:
        text += " " + _("The best value first (lowest price per square foot):")
    lines = [text]
    for listing in found.listings:
        lines.append(_("- %(id)s: %(price)s, %(beds)s bed, %(baths)s bath, %(town)s (%(url)s)") % {
            "id": listing.listing_id, "price": listing.formatted_price(),
            "beds": listing.bedrooms, "baths": listing_facts.number(listing.bathrooms.normalize()),
            "town": listing.town() or listing.address, "url": listing.get_absolute_url()})
    more = " " + _("Tell me more to narrow it down (a budget, bedrooms, a garage...)") if (
        found.total > len(found.listings)) else ""
    lines.append((more + " " + _("Would you like to book a viewing of one? Give me its ID and a "
                                 "time.")).strip())
    return Reply(Route.LISTING_SEARCH, "\n".join(lines),
                 tuple(card(listing) for listing in found.listings))


def _homes(count: int) -> str:
    """"one home", "1,234 homes" in the active language."""
    if count == 1:
        return _("one home")
    return ngettext("%(n)s home", "%(n)s homes", count) % {"n": listing_facts.number(count)}


def _none_text(criteria: Criteria, relaxation: Relaxation) -> str:
    place = relaxation.place
    if criteria.place and place is None:
        towns = ", ".join(relaxation.towns)
        text = _("I have no homes for sale in the place you named.")
        return text + (" " + _("Our listings are in %(towns)s: shall I look in one of those?")
                       % {"towns": towns} if towns else "")
    nothing = _("Nothing matches %(what)s right now.") % {"what": describe(criteria, place)}
    there = " " + _("in %(place)s") % {"place": place} if place else ""
    name, count, value = relaxation.criterion, relaxation.count, relaxation.value
    homes = _homes(count)
    words = {"there": there, "homes": homes, "Homes": homes[:1].upper() + homes[1:]}
    if name == "max_price":
        return nothing + " " + _("The lowest price%(there)s for the rest is %(value)s.") % {
            **words, "value": _money(value)}
    if name == "min_price":
        return nothing + " " + _("The highest price%(there)s for the rest is %(value)s.") % {
            **words, "value": _money(value)}
    if name == "min_bedrooms":
        return nothing + " " + _("The most bedrooms%(there)s for the rest is %(value)s.") % {
            **words, "value": value}
    if name == "min_bathrooms":
        return nothing + " " + _("The most bathrooms%(there)s for the rest is %(value)s.") % {
            **words, "value": listing_facts.number(value.normalize())}
    if name == "features":
        wanted = listing_facts.join_words([feature_name(f) for f in criteria.features])
        return nothing + " " + ngettext(
            "Without the %(wanted)s, %(homes)s matches: shall I show it?",
            "Without the %(wanted)s, %(homes)s match: shall I show them?", count) % {
            **words, "wanted": wanted}
    if name == "property_type":
        return nothing + " " + ngettext(
            "%(Homes)s of another kind matches: shall I show it?",
            "%(Homes)s of other kinds match: shall I show them?", count) % words
    if name == "place":
        return nothing + " " + ngettext(
            "%(Homes)s matches elsewhere, for example in %(town)s: shall I show it?",
            "%(Homes)s match elsewhere, for example in %(town)s: shall I show them?",
            count) % {**words, "town": relaxation.town}
    return nothing + " " + _("Which of your wishes matters least? I'll search without it.")


def facts_reply(
    conversation: Conversation, message: Message, said: ListingFacts, now: datetime,
    read_listings: dict | None = None,
) -> Reply:
    """Answer a question about one listing's facts from its record.

    The listing is the one the classifier named, else the one on the visitor's screen
    (``Message.page_listing``), read here unless ``read_listings`` holds it
    (``listings.models.find_listing``'s ``read``). Routes:
    ``fair_housing`` (a handoff: the bot never describes the people of a place),
    ``listing_facts``, ``listing_facts_needs_listing``, ``listing_facts_unknown_listing``, and
    ``handoff`` when the record holds none of the facts asked (a person answers; nothing is
    guessed).
    """
    if said.about_people:
        handoffs.queue_handoff(conversation, message, FAIR_HOUSING_REASON)
        return Reply(
            Route.FAIR_HOUSING,
            _("I can't describe a neighbourhood by the people who live there (fair-housing "
              "practice). I've passed your question to one of our realtors, who can point you "
              "to public sources.") + " " + hours.when_staff_answer(conversation, now),
        )
    listing_id = said.listing_id or message.page_listing or None
    if listing_id is None:
        return Reply(
            Route.LISTING_FACTS_NEEDS_LISTING,
            _("Which listing do you mean? Please give me its 6-digit listing ID, or ask from "
              "its page."),
        )
    listing = find_listing(listing_id, read_listings)  # its open houses are read if asked
    if listing is None:
        return Reply(
            Route.LISTING_FACTS_UNKNOWN_LISTING,
            _("I don't have a listing %(id)s. Could you check the 6-digit ID? Or I can pass "
              "your question to a realtor.") % {"id": listing_id},
        )
    asked = said.facts or (("features",) if said.features else ("bedrooms", "bathrooms", "area"))
    known, unknown = [], []
    for fact in asked:
        text = listing_facts.sentence(listing, fact, said.features, now)
        (known if text else unknown).append(text or _(FACT_NAMES[fact]))
    if not known:
        handoffs.queue_handoff(conversation, message, f"listing {listing_id}: facts not on record")
        return Reply(
            Route.HANDOFF,
            _("I don't have %(facts)s on record for listing %(id)s, so I've passed your "
              "question to one of our realtors.") % {
                "facts": listing_facts.join_words(unknown), "id": listing.listing_id}
            + " " + hours.when_staff_answer(conversation, now),
        )
    text = _("Listing %(id)s, %(address)s:") % {
        "id": listing.listing_id, "address": listing.address} + " " + " ".join(known)
    if unknown:
        text += " " + _("I don't have %(facts)s on record; shall I ask a realtor?") % {
            "facts": listing_facts.join_words(unknown)}
    return Reply(Route.LISTING_FACTS, text)
