"""The search and facts routes (agent/chat/homes.py), called through the router with
classifier outcomes, on the demo listings."""

import io
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command

from agent.chat.router import route_turn
from agent.llm.classifiers import ListingFacts, ListingQuestion, ListingSearch, Pricing
from agent.llm.fanout import Outcome
from agent.models import Conversation, Handoff, Message, Route
from listings.models import Listing, OpenHouse

NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=NY)  # a Monday, noon

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(db):
    call_command("seed_demo", stdout=io.StringIO())


def find(place=None, min_price=None, max_price=None, beds=None, baths=None, kind=None,
         features=()) -> ListingSearch:
    return ListingSearch(True, place, min_price, max_price, beds, baths, kind, tuple(features))


def ask(listing_id=None, facts=(), features=(), about_people=False) -> ListingFacts:
    return ListingFacts(bool(facts or features), listing_id, tuple(facts), tuple(features),
                        about_people)


NO_SEARCH = ListingSearch(False, None, None, None, None, None, None, ())
NO_FACTS = ListingFacts(False, None, (), (), False)


def outcomes(facts=NO_FACTS, search=NO_SEARCH, pricing=None, question=False):
    said = [("pricing", pricing or Pricing(False, None)), ("listing_facts", facts),
            ("listing_search", search), ("listing_question", ListingQuestion(question))]
    return [Outcome(name, "m", output, "{}", 5) for name, output in said]


def turn(conversation, text, page_listing="", **said):
    message = Message.objects.store(conversation.id, Message.Role.USER, text,
                                    page_listing=page_listing)
    reply = route_turn(conversation, message, outcomes(**said), NOW)
    conversation.refresh_from_db()
    return reply


def test_a_search_shows_three_cards_best_first_with_the_total(conversation, demo):
    reply = turn(conversation, "3 bed homes in Cedar Hollow under $500k",
                 search=find("cedar hollow", max_price=500000, beds=3))
    assert reply.route == Route.LISTING_SEARCH
    assert reply.text.startswith(
        "I found 4 homes matching: homes in Cedar Hollow under $500,000 with 3+ bedrooms.")
    assert [card["listing_id"] for card in reply.listings] == ["123456", "210001", "210008"]
    assert reply.listings[0] == {
        "listing_id": "123456", "url": "/listings/123456/", "price": "$350,000",
        "bedrooms": 3, "bathrooms": 2.0, "town": "Maple Park, Cedar Hollow",
        "address": "14 Maple Court, Cedar Hollow, NJ", "photo": None,
    }
    assert "- 123456: $350,000, 3 bed, 2 bath, Maple Park, Cedar Hollow (/listings/123456/)" in (
        reply.text)
    assert conversation.search == {"place": "cedar hollow", "max_price": 500000,
                                   "min_bedrooms": 3}


def test_criteria_carry_across_turns(conversation, demo):
    turn(conversation, "homes in Port Ellis under 700k",
         search=find("Port Ellis", max_price=700000))
    reply = turn(conversation, "what about with a garage?", search=find(features=["garage"]))
    assert reply.route == Route.LISTING_SEARCH
    assert "homes in Port Ellis under $700,000 with a garage" in reply.text
    assert {c["listing_id"] for c in reply.listings} <= {"654321", "310003", "310004", "310007"}
    assert conversation.search["features"] == ["garage"]


def test_the_stored_place_is_never_repeated_as_typed(conversation, demo):
    reply = turn(conversation, "in pORT eLLIS", search=find("pORT eLLIS"))
    assert "in Port Ellis" in reply.text and "pORT" not in reply.text


def test_nothing_under_the_budget_names_the_lowest_price_there(conversation, demo):
    reply = turn(conversation, "under 300k in Port Ellis",
                 search=find("port ellis", max_price=300000))
    assert reply.route == Route.LISTING_SEARCH_NONE
    assert reply.text == ("Nothing matches homes in Port Ellis under $300,000 right now. The "
                          "lowest price in Port Ellis for the rest is $415,000.")
    assert reply.listings == ()


def test_an_unknown_place_is_not_repeated_and_the_towns_are_offered(conversation, demo):
    reply = turn(conversation, "homes in <b>Atlantis</b>", search=find("<b>Atlantis</b>"))
    assert reply.route == Route.LISTING_SEARCH_NONE
    assert "Atlantis" not in reply.text
    assert "Ashford Green, Cedar Hollow, Millbrook Falls, Port Ellis" in reply.text
    assert "place" not in conversation.search


def test_a_search_without_criteria_asks_one_question(conversation, demo):
    reply = turn(conversation, "show me some homes", search=find())
    assert reply.route == Route.LISTING_SEARCH_NEEDS_CRITERIA
    assert reply.text.count("?") == 1 and conversation.search == {}


def test_a_search_turn_adds_one_query_and_the_criteria_update(conversation, demo,
                                                              django_assert_num_queries,
                                                              monkeypatch):
    monkeypatch.setattr("agent.crm.leads.record_turn", lambda *a, **k: None)  # the CRM's own
    message = Message.objects.store(conversation.id, Message.Role.USER, "condos in Port Ellis")
    said = outcomes(search=find("Port Ellis", kind="condo"))
    with django_assert_num_queries(2):  # the search, and the UPDATE of conversation.search
        route_turn(conversation, message, said, NOW)


def test_facts_come_from_the_record(conversation, demo):
    reply = turn(conversation, "How many bedrooms and is there parking at 654321?",
                 facts=ask("654321", ["bedrooms", "bathrooms", "area", "parking"]))
    assert reply.route == Route.LISTING_FACTS
    assert reply.text == ("Listing 654321, 88 Harbor View Drive, Apt 5B, Port Ellis, NY: It has "
                          "2 bedrooms. It has 2 bathrooms. It has 1,120 sq ft. It has 1 parking "
                          "space.")


def test_this_one_is_the_listing_on_screen(conversation, demo):
    reply = turn(conversation, "does it have a garage and a pool?", page_listing="654321",
                 facts=ask(None, ["features"], ["garage", "pool"]))
    assert reply.route == Route.LISTING_FACTS
    assert "Listing 654321" in reply.text
    assert "It has a garage. It does not have a pool." in reply.text


def test_open_houses_still_to_come_are_named(conversation, demo):
    listing = Listing.objects.get(listing_id="112233")
    OpenHouse.objects.create(listing=listing, starts_at=datetime(2026, 11, 28, 13, tzinfo=NY),
                             ends_at=datetime(2026, 11, 28, 15, tzinfo=NY))
    reply = turn(conversation, "open house?", facts=ask("112233", ["open_houses"]))
    assert "Open house: Saturday, November 28, 13:00 to 15:00 EST." in reply.text


def test_a_fact_the_record_lacks_is_handed_to_a_person_not_guessed(conversation, demo):
    Listing.objects.filter(listing_id="123456").update(year_built=None)
    reply = turn(conversation, "when was 123456 built?", facts=ask("123456", ["year_built"]))
    assert reply.route == Route.HANDOFF
    assert reply.text.startswith("I don't have the year it was built on record for listing "
                                 "123456")
    assert Handoff.objects.get(conversation=conversation).reason == (
        "listing 123456: facts not on record")


def test_a_known_fact_and_an_unknown_one_answer_the_first_and_offer_a_person(conversation, demo):
    reply = turn(conversation, "bedrooms and the view?", facts=ask("654321", ["bedrooms", "other"]))
    assert reply.route == Route.LISTING_FACTS
    assert reply.text.endswith("It has 2 bedrooms. I don't have that on record; shall I ask a "
                               "realtor?")
    assert not Handoff.objects.exists()


def test_features_nobody_recorded_are_not_guessed(conversation, demo):
    Listing.objects.filter(listing_id="654321").update(features=None)
    reply = turn(conversation, "garage?", facts=ask("654321", ["features"], ["garage"]))
    assert reply.route == Route.HANDOFF and "its features" in reply.text


def test_an_unknown_listing_says_so_and_offers_a_person(conversation, demo):
    reply = turn(conversation, "how big is 999999?", facts=ask("999999", ["area"]))
    assert reply.route == Route.LISTING_FACTS_UNKNOWN_LISTING
    assert "999999" in reply.text and "realtor" in reply.text


def test_facts_without_any_listing_ask_which(conversation, demo):
    reply = turn(conversation, "how many bedrooms?", facts=ask(None, ["bedrooms"]))
    assert reply.route == Route.LISTING_FACTS_NEEDS_LISTING


def test_a_question_about_the_people_goes_to_a_person_and_beats_the_search(conversation, demo):
    reply = turn(conversation, "homes in a safe area with good schools",
                 facts=ask(about_people=True), search=find(features=["garden"]))
    assert reply.route == Route.FAIR_HOUSING
    assert "fair-housing" in reply.text and reply.listings == ()
    assert Handoff.objects.get(conversation=conversation).reason.startswith("fair housing")
    assert Conversation.objects.get(pk=conversation.pk).search == {}


def test_a_price_question_on_the_page_beats_facts(conversation, demo):
    reply = turn(conversation, "how much is this one?", page_listing="654321",
                 pricing=Pricing(True, "654321"), facts=ask(None, ["status"]))
    assert reply.route == Route.PRICE and "$450,000" in reply.text


def test_the_cards_reach_the_frame():
    message = Message(role=Message.Role.ASSISTANT, text="x", seq=2, route="listing_search",
                      listings=[{"listing_id": "123456"}])
    assert message.as_frame()["listings"] == [{"listing_id": "123456"}]
    assert "listings" not in Message(role=Message.Role.ASSISTANT, text="x", seq=3).as_frame()
