"""The router: turns what the classifiers said into an action and a reply.

It acts on the first classifier, in their priority order, that answers yes; with the default
priorities, as in the tutorial this product grew from: a price question first, then a request
for a call, then any other question about a listing, else a person takes over.
"""

import logging
from dataclasses import dataclass
from datetime import datetime

from agent import handoffs
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
        outcomes: every classifier's outcome, in priority order: the first "yes" decides; a
            failed, timed-out or cancelled one (``output is None``) counts as "no". When none
            says yes, a handoff is queued; if calls failed, the reply apologises and the
            handoff's reason names them.
        now: the current time, aware.
    Returns:
        The ``Reply``. Nothing here raises for a classifier's answer; database errors propagate.
    """
    for outcome in outcomes:  # in the classifiers' priority order
        said = outcome.output
        if isinstance(said, Pricing) and said.asks_price:
            return _price(said.listing_id)
        if isinstance(said, Scheduling) and said.wants_call:
            return _booking(conversation, said, now)
        if isinstance(said, ListingQuestion) and said.is_listing_question:
            _queue_handoff(conversation, message, "listing question")
            return Reply(
                Route.HANDOFF,
                "Good question! I've passed it to one of our realtors. "
                + handoffs.when_staff_answer(conversation, now),
            )
    failed = [o for o in outcomes if o.status in ("error", "timeout") or o.error]
    if not failed:
        _queue_handoff(conversation, message, "no classifier matched")
        return Reply(
            Route.FALLBACK,
            "Let me transfer you to a human representative. "
            + handoffs.when_staff_answer(conversation, now),
        )
    every = "every classifier failed" if len(failed) == len(outcomes) else "no classifier matched"
    reason = f"{every}: " + "; ".join(f"{o.classifier}: {o.error}" for o in failed)
    _queue_handoff(conversation, message, reason)
    return Reply(
        Route.FALLBACK,
        "Sorry, I couldn't understand that one in time. I've passed your message to our team. "
        + handoffs.when_staff_answer(conversation, now),
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
    return handoffs.queue_handoff(conversation, message, reason)
