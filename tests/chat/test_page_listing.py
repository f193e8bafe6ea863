"""The listing on the visitor's screen: the frame's "listing", stored on the message, told to
the classifiers, used for "this one", and the cards of a search in the reply frame."""

import io
import json

import pytest
from django.core.management import call_command

from agent.chat.consumer import BadFrame, parse_page_listing
from agent.chat.turn import chat_history
from agent.models import ClassifierCall, Message

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo(db):
    call_command("seed_demo", stdout=io.StringIO())


@pytest.mark.parametrize("listing", ["12345", "1234567", 654321, "６５４３２１", "65432a", [1]])
def test_a_listing_that_is_not_six_digits_is_a_bad_frame(listing):
    with pytest.raises(BadFrame) as raised:
        parse_page_listing({"type": "message", "text": "hi", "listing": listing})
    assert raised.value.code == "bad_listing"
    assert parse_page_listing({"type": "message", "text": "hi"}) == ""


async def frames_of(communicator, frame):
    await communicator.send_json_to(frame)
    frames = []
    while not frames or frames[-1] != {"type": "typing", "active": False}:
        frames.append(await communicator.receive_json_from(timeout=5))
    return frames


async def test_this_one_on_a_listing_page_is_that_listing(connect, standin, demo):
    communicator, history = await connect()
    frames = await frames_of(communicator, {"type": "message", "text": "Does it have a garage?",
                                            "listing": "654321"})
    (reply,) = [f for f in frames if f.get("role") == "assistant"]
    assert reply["route"] == "listing_facts" and "It has a garage" in reply["text"]
    message = await Message.objects.aget(role="user")
    assert message.page_listing == "654321"
    call = await ClassifierCall.objects.aget(classifier="listing_facts")
    assert call.output["asks_facts"] is True

    frames = await frames_of(communicator, {"type": "message", "listing": "654321",
                                            "text": "Show me condos in Port Ellis"})
    (reply,) = [f for f in frames if f.get("role") == "assistant"]
    assert reply["route"] == "listing_search"
    assert [card["listing_id"] for card in reply["listings"]] == ["654321", "310001"]
    await communicator.disconnect()

    communicator, history = await connect()  # a reload: the cards come with the history
    assert history["messages"][-1]["listings"] == reply["listings"]
    await communicator.disconnect()


async def test_a_bad_listing_stores_nothing(connect, standin):
    communicator, _ = await connect()
    await communicator.send_json_to({"type": "message", "text": "hi", "listing": "12"})
    error = await communicator.receive_json_from()
    assert error["code"] == "bad_listing"
    assert not await Message.objects.aexists()
    await communicator.disconnect()


def test_the_classifiers_are_told_the_listing_on_screen(conversation):
    Message.objects.store(conversation.id, Message.Role.USER, "is it sold?",
                          page_listing="123456")
    assert chat_history(conversation.id)[-1] == {
        "role": "system", "content": "The visitor is looking at listing 123456."
    }
    Message.objects.store(conversation.id, Message.Role.ASSISTANT, "It is for sale.")
    assert chat_history(conversation.id)[-1]["role"] == "assistant"


def test_the_listing_pages_carry_the_widget_and_the_page_listing(client, demo):
    page = client.get("/listings/", {"place": "Port Ellis", "property_type": "condo"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "2 homes found" in html and "/listings/654321/" in html and "widget.js" in html
    assert "data-listing" not in html
    page = client.get("/listings/654321/")
    html = page.content.decode()
    assert 'data-listing="654321"' in html and "$450,000" in html and "balcony" in html
    assert client.get("/listings/999999/").status_code == 404
    assert client.get("/listings/", {"max_price": "lots"}).status_code == 200  # ignored
    assert json.loads(json.dumps(page.context["features"]))
