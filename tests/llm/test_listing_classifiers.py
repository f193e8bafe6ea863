"""The listing classifiers: their vocabularies, the parsed answers and their bounds, the
priorities, and the stand-in's answers (fair-housing phrasings included)."""

import pytest

from agent.llm.classifiers import (
    CLASSIFIERS,
    LISTING_FACTS,
    LISTING_SEARCH,
    ClassifierOutputError,
    ListingFacts,
    ListingSearch,
    decides,
)
from agent.llm.listing_classifiers import FEATURES, PROPERTY_TYPES
from agent.llm.standin.rules import classify
from listings.models import Feature, PropertyType

SEARCH = {"wants_listings": True, "place": "Port Ellis", "min_price": None,
          "max_price": 500000, "min_bedrooms": 2, "min_bathrooms": 1.5,
          "property_type": "condo", "features": ["garage", "garage", "balcony"]}


def test_the_vocabularies_are_the_models():
    assert FEATURES == tuple(Feature.values) and PROPERTY_TYPES == tuple(PropertyType.values)


def test_facts_and_search_come_between_scheduling_and_listing_question():
    assert [c.name for c in CLASSIFIERS] == [
        "pricing", "appointment_change", "scheduling", "listing_facts", "listing_search",
        "listing_question",
    ]


def test_a_search_answer_parses_to_typed_criteria():
    said = LISTING_SEARCH.parse(SEARCH)
    assert said == ListingSearch(True, "Port Ellis", None, 500000, 2, 1.5, "condo",
                                 ("garage", "balcony"))
    assert decides(said) and not decides(LISTING_SEARCH.parse({**SEARCH,
                                                               "wants_listings": False}))


@pytest.mark.parametrize("bad", [
    {"max_price": -1}, {"max_price": 10**10}, {"min_bedrooms": 2.5}, {"min_bedrooms": True},
    {"property_type": "castle"}, {"features": ["moat"]}, {"place": "x" * 61},
    {"features": "garage"},
])
def test_a_search_answer_out_of_bounds_is_refused(bad):
    with pytest.raises(ClassifierOutputError):
        LISTING_SEARCH.parse({**SEARCH, **bad})


def test_a_facts_answer_parses_and_the_people_flag_decides_alone():
    data = {"asks_facts": False, "listing_id": None, "facts": [], "features": [],
            "about_people": True}
    said = LISTING_FACTS.parse(data)
    assert said == ListingFacts(False, None, (), (), True) and decides(said)
    with pytest.raises(ClassifierOutputError):
        LISTING_FACTS.parse({**data, "facts": ["views"]})
    with pytest.raises(ClassifierOutputError):
        LISTING_FACTS.parse({**data, "listing_id": "12345"})


def ask(classifier, text, page=None):
    history = [{"role": "user", "content": text}]
    if page:
        history.append({"role": "system", "content": f"The visitor is looking at listing {page}."})
    body = classifier.request_body("standin", history, __import__("datetime").date(2026, 11, 23),
                                   "shared_prefix")
    return classifier.parse(classify(classifier.name, body["messages"], classifier.schema))


@pytest.mark.parametrize("text", [
    "Is Port Ellis a safe neighbourhood?",
    "How bad is the crime around Cedar Hollow?",
    "Which area has the best schools?",
    "Are there many immigrants living there?",
    "What's the ethnic mix of the neighbourhood?",
    "Is there a church or a mosque nearby, what religion are the neighbours?",
    "Is it a good area for families with kids?",
    "Show me homes in a safe area",
])
def test_questions_about_the_people_of_a_place_are_flagged_and_never_searched(text):
    assert ask(LISTING_FACTS, text).about_people
    assert not ask(LISTING_SEARCH, text).wants_listings


def test_the_stand_in_reads_towns_budgets_bedrooms_types_and_features():
    said = ask(LISTING_SEARCH, "Any 3 bed townhouses in Millbrook Falls under $450k with a garage?")
    assert said == ListingSearch(True, "Millbrook Falls", None, 450000, 3, None, "townhouse",
                                 ("garage",))
    said = ask(LISTING_SEARCH, "something between 300k and 1.2m near riverton bay")
    assert (said.place, said.min_price, said.max_price) == ("riverton bay", 300000, 1200000)


def test_this_one_is_the_page_listing_for_price_and_facts_not_a_search():
    from agent.llm.classifiers import PRICING

    assert ask(PRICING, "How much is this one?", "654321").listing_id == "654321"
    facts = ask(LISTING_FACTS, "does it have a fireplace?", "654321")
    assert facts.asks_facts and facts.features == ("fireplace",) and facts.listing_id is None
    assert not ask(LISTING_SEARCH, "does it have a fireplace?", "654321").wants_listings
    assert not ask(LISTING_FACTS, "what about with a fireplace?", "654321").asks_facts
    assert ask(LISTING_SEARCH, "what about with a fireplace?", "654321").wants_listings
