"""The router: turns what the classifiers said into an action and a reply.

Priority, as in the tutorial this product grew from: a price question first, then a request
for a call, then any other question about a listing, else a person takes over.
"""

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from agent import metrics
from agent.classifiers import ListingQuestion, Pricing, Scheduling
from agent.fanout import Outcome
from agent.models import Conversation, Handoff, Message, Route
from listings.booking import SlotUnavailable, book_call, describe_hours, format_slot, parse_slot
from listings.models import Listing

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reply:
    """The router's decision: the route and the text to send the visitor."""

    route: str
    text: str


def route_turn(
    conversation: Conversation, message: Message, outcomes: list[Outcome], now: datetime
) -> Reply:
    """Decide a turn's route and act on it: look up a price, book a call, or queue a handoff.

    Runs in a database transaction of the caller's (sync code; call it off the event loop).

    Args:
        conversation: the visitor's conversation.
        message: the visitor message of this turn.
        outcomes: every classifier's outcome; a failed one (``output is None``) counts as "no".
        now: the current time, aware.
    Returns:
        The ``Reply``. Nothing here raises for a classifier's answer; database errors propagate.
    """
    said = {o.classifier: o.output for o in outcomes if o.output is not None}
    pricing, scheduling = said.get("pricing"), said.get("scheduling")
    listing_question = said.get("listing_question")

    if isinstance(pricing, Pricing) and pricing.asks_price:
        return _price(pricing.listing_id)
    if isinstance(scheduling, Scheduling) and scheduling.wants_call:
        return _booking(conversation, scheduling, now)
    if isinstance(listing_question, ListingQuestion) and listing_question.is_listing_question:
        _queue_handoff(conversation, message, "listing question")
        return Reply(
            Route.HANDOFF,
            "Good question! I've passed it to one of our realtors, who will answer you here "
            "shortly.",
        )
    failed = [o for o in outcomes if o.error]
    if failed and len(failed) == len(outcomes):
        reason = "every classifier failed: " + "; ".join(
            f"{o.classifier}: {o.error}" for o in failed
        )
    else:
        reason = "no classifier matched"
    _queue_handoff(conversation, message, reason)
    return Reply(
        Route.FALLBACK,
        "Let me transfer you to a human representative. Someone from our team will reply here "
        "shortly.",
    )


def _price(listing_id: str | None) -> Reply:
    if listing_id is None:
        return Reply(
            Route.PRICE_NEEDS_LISTING,
            "Happy to help with prices! Which listing do you mean? Please give me its 6-digit "
            "listing ID.",
        )
    listing = Listing.objects.filter(listing_id=listing_id).first()
    if listing is None:
        return Reply(
            Route.PRICE_UNKNOWN_LISTING,
            f"I couldn't find listing {listing_id}. Could you check the 6-digit listing ID?",
        )
    text = f"The price for listing {listing.listing_id} is {listing.formatted_price()}."
    if listing.status == Listing.Status.UNDER_OFFER:
        text += " It is currently under offer."
    elif listing.status == Listing.Status.SOLD:
        price = listing.formatted_price()
        text = f"Listing {listing.listing_id} has been sold; it was listed at {price}."
    return Reply(Route.PRICE, text)


def _booking(conversation: Conversation, scheduling: Scheduling, now: datetime) -> Reply:
    if scheduling.date is None or scheduling.time is None:
        return Reply(
            Route.BOOKING_NEEDS_TIME,
            "I'd be glad to set up a call with one of our realtors. What day and time suit you? "
            f"We take calls {describe_hours()}.",
        )
    try:
        appointment = book_call(
            parse_slot(scheduling.date, scheduling.time), now=now, conversation=conversation
        )
    except SlotUnavailable as exc:
        return Reply(
            Route.BOOKING_UNAVAILABLE,
            f"Sorry, I can't book that call: {exc}. We take calls {describe_hours()}. "
            "Which other day and time would suit you?",
        )
    logger.info("booked appointment %s for conversation %s", appointment.pk, conversation.pk)
    return Reply(
        Route.BOOKING,
        f"Your call with {appointment.realtor} is booked for {format_slot(appointment.starts_at)}.",
    )


def _queue_handoff(conversation: Conversation, message: Message, reason: str) -> Handoff:
    """Queue a handoff, unless the conversation already waits for or has a person."""
    waiting = conversation.handoffs.filter(
        status__in=(Handoff.Status.QUEUED, Handoff.Status.CLAIMED)
    ).first()
    if waiting is not None:
        return waiting
    handoff = Handoff.objects.create(conversation=conversation, message=message, reason=reason)
    transaction.on_commit(metrics.record_handoff_queued)  # a rolled-back turn queued none
    return handoff
