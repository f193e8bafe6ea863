"""The router: turns what the classifiers said into an action and a reply.

It acts on the first classifier, in their priority order, that answers yes; with the default
priorities, as in the tutorial this product grew from: a price question first, then a request
for a call, then any other question about a listing, else a person takes over.
"""

import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, time

from dateparser.date import DateDataParser
from dateparser.search import search_dates
from django.db import transaction

from agent.chat.contact import Contact, display_phone, find_contact
from agent.llm.classifiers import AppointmentChange, ListingQuestion, Pricing, Scheduling, decides
from agent.llm.fanout import Outcome
from agent.models import Conversation, Message, Route
from agent.staff import handoffs, hours
from listings import booking
from listings.booking import (
    SlotUnavailable,
    book_call,
    describe_hours,
    format_day,
    format_slot,
    free_slots_on,
    local,
    nearest_free_slots,
    parse_slot,
    upcoming_appointment,
)
from listings.emails import send_confirmation
from listings.models import Appointment, Listing

logger = logging.getLogger(__name__)

LISTING_ID = re.compile(r"(?<!\d)\d{6}(?!\d)")
ORDINALS = {"first": 0, "1st": 0, "second": 1, "2nd": 1, "third": 2, "3rd": 2, "last": -1}
_ORDINAL = re.compile(r"\b(" + "|".join(ORDINALS) + r")\b")
_NUMBERED = re.compile(r"^\s*(?:(?:number|option|no\.?|#)\s*)?([1-9])\s*[.!]?\s*$|"
                       r"\b(?:number|option|no\.|#)\s*([1-9])\b")


@dataclass(frozen=True)
class Reply:
    """The router's decision: the route and the text to send the visitor."""

    route: str
    text: str


def route_turn(
    conversation: Conversation, message: Message, outcomes: list[Outcome], now: datetime
) -> Reply:
    """Decide a turn's route and act on it: look up a price, book, cancel or move a call, save
    contact details, or queue a handoff.

    The first classifier, in priority order, that says "yes" decides (by default: a price
    question; cancelling or moving the conversation's upcoming call; a call request, which
    may pick one of the times offered last turn: "the second one", "Thursday works", "3pm";
    any other question about a listing). When none does: a pick from the offered times;
    contact details alone; else a person takes over. A phone number or email in the message
    is saved whatever the route.

    Runs in a database transaction of the caller's (sync code; call it off the event loop);
    emails go out when it commits.

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
    contact = _save_contact(conversation, message.text, now)
    offer, conversation.offer = conversation.offer or {}, {}
    reply = _decide(conversation, message, outcomes, now, contact, offer)
    if conversation.offer != offer:
        conversation.save(update_fields=["offer"])
    return reply


def _decide(conversation, message, outcomes, now, contact: Contact, offer: dict) -> Reply:
    for outcome in outcomes:  # in the classifiers' priority order: the first "yes" decides
        said = outcome.output
        if not decides(said):
            continue
        if isinstance(said, Pricing):
            return _price(said.listing_id)
        if isinstance(said, AppointmentChange):
            if said.action == "cancel":
                return _cancel(conversation, now)
            return _move(conversation, _scheduling_of(outcomes), now)
        if isinstance(said, Scheduling):
            return _schedule(conversation, message, said, offer, contact, now)
        if isinstance(said, ListingQuestion):
            handoffs.queue_handoff(conversation, message, "listing question")
            return Reply(
                Route.HANDOFF,
                "Good question! I've passed it to one of our realtors. "
                + hours.when_staff_answer(conversation, now),
            )
    picked = _from_offer(conversation, message, _scheduling_of(outcomes), offer, now)
    if picked is not None:
        return picked
    if contact:
        return _contact_saved(conversation, contact, now)
    failed = [o for o in outcomes if o.status in ("error", "timeout") or o.error]
    if not failed:
        handoffs.queue_handoff(conversation, message, "no classifier matched")
        return Reply(
            Route.FALLBACK,
            "Let me transfer you to a human representative. "
            + hours.when_staff_answer(conversation, now),
        )
    every = "every classifier failed" if len(failed) == len(outcomes) else "no classifier matched"
    reason = f"{every}: " + "; ".join(f"{o.classifier}: {o.error}" for o in failed)
    handoffs.queue_handoff(conversation, message, reason)
    return Reply(
        Route.FALLBACK,
        "Sorry, I couldn't understand that one in time. I've passed your message to our team. "
        + hours.when_staff_answer(conversation, now),
    )


def _scheduling_of(outcomes: list[Outcome]) -> Scheduling:
    """The scheduling classifier's answer, or "no call" when it failed, was cancelled or is
    not enabled."""
    for outcome in outcomes:
        if isinstance(outcome.output, Scheduling):
            return outcome.output
    return Scheduling(False, None, None)


def _schedule(conversation, message, scheduling: Scheduling, offer: dict, contact: Contact, now):
    """A call request: one of the times offered last turn, a full day and time, or neither
    (then contact details given in the message are acknowledged first)."""
    picked = _from_offer(conversation, message, scheduling, offer, now)
    if picked is not None:
        return picked
    if scheduling.date and scheduling.time:
        try:
            starts_at = parse_slot(scheduling.date, scheduling.time)
        except SlotUnavailable as exc:
            return _unavailable(conversation, str(exc), None, now)
        return _book(conversation, starts_at, now)
    if contact:
        return _contact_saved(conversation, contact, now)
    return _needs_time(conversation, scheduling, now, "book")


def _from_offer(conversation, message, scheduling: Scheduling, offer: dict, now) -> Reply | None:
    """Book (or move to) the offered time the visitor picked, ask again when several match,
    or None when the message picks none of them (or nothing was offered)."""
    picked = _pick_offered(offer, message.text, scheduling, now)
    if len(picked) == 1:
        if offer.get("action") == "move":
            appointment = upcoming_appointment(conversation, now)
            if appointment is not None:
                return _move_to(conversation, appointment, picked[0], now)
        return _book(conversation, picked[0], now)
    if picked:
        return _offer(
            conversation, Route.BOOKING_NEEDS_TIME, "Which of these do you mean?", picked,
            offer.get("action", "book"),
        )
    return None


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


def _listing_under_discussion(conversation: Conversation) -> Listing | None:
    """The listing named last (by its 6-digit ID) in the visitor's recent messages, if it
    exists."""
    texts = conversation.messages.filter(role=Message.Role.USER).order_by("-seq")
    for text in texts.values_list("text", flat=True)[:10]:
        for listing_id in reversed(LISTING_ID.findall(text)):
            listing = Listing.objects.filter(listing_id=listing_id).first()
            if listing is not None:
                return listing
    return None


def _book(conversation: Conversation, starts_at: datetime, now: datetime) -> Reply:
    try:
        appointment = book_call(
            starts_at, now=now, conversation=conversation,
            listing=_listing_under_discussion(conversation),
        )
    except SlotUnavailable as exc:
        return _unavailable(conversation, str(exc), starts_at, now)
    logger.info("booked appointment %s for conversation %s", appointment.pk, conversation.pk)
    transaction.on_commit(lambda: send_confirmation(appointment))
    return Reply(Route.BOOKING, _booked_text(conversation, appointment, "is booked for"))


def _booked_text(conversation: Conversation, appointment: Appointment, verb: str) -> str:
    text = f"Your call with {appointment.realtor} {verb} {format_slot(appointment.starts_at)}."
    if conversation.visitor_email:
        text += f" A confirmation is on its way to {conversation.visitor_email}."
    if not (conversation.visitor_phone or conversation.visitor_email):
        text += (
            f" How should {appointment.realtor} reach you? Please give me a phone number or an "
            "email address."
        )
    return text


def _unavailable(
    conversation: Conversation, why: str, requested: datetime | None, now: datetime,
    action: str = "book", ignore: Appointment | None = None,
) -> Reply:
    """Say why a time can't be booked and offer the nearest free times (kept as the offer)."""
    text = f"Sorry, I can't book that call: {why}."
    slots = nearest_free_slots(requested, now=now, ignore=ignore) if requested else []
    if not slots:
        return Reply(
            Route.BOOKING_UNAVAILABLE,
            f"{text} We usually take calls {describe_hours()}. Which other day and time would "
            "suit you?",
        )
    return _offer(conversation, Route.BOOKING_UNAVAILABLE, text, slots, action)


def _offer(conversation, route: str, text: str, slots: list[datetime], action: str) -> Reply:
    """A reply listing numbered call times, stored as the conversation's offer."""
    conversation.offer = {"action": action, "slots": [s.isoformat() for s in slots]}
    listed = "; ".join(f"{n}) {format_slot(s)}" for n, s in enumerate(slots, start=1))
    nearest = "The nearest free time is" if len(slots) == 1 else "The nearest free times are"
    return Reply(
        route, f"{text} {nearest}: {listed}. Which one suits you, or which other day and time?"
    )


def _needs_time(conversation, scheduling: Scheduling, now: datetime, action: str) -> Reply:
    """A call request without a full time: offer the first free times on the day given, or ask
    for a day and time."""
    day = _iso_date(scheduling.date)
    if day is not None:
        slots = free_slots_on(day, now=now)
        if slots:
            return _offer(
                conversation, Route.BOOKING_NEEDS_TIME,
                f"What time on {format_day(slots[0])}?", slots, action,
            )
    return Reply(
        Route.BOOKING_NEEDS_TIME,
        "I'd be glad to set up a call with one of our realtors. What day and time suit you? "
        f"We usually take calls {describe_hours()}.",
    )


def _iso_date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _pick_offered(offer: dict, text: str, scheduling: Scheduling, now: datetime) -> list:
    """The offered call times the visitor's message picks: by ordinal ("the second one", "2"),
    by the classifier's date and time, or by a day or time dateparser finds in the text
    ("Thursday works", "3pm"). Empty when there is no offer or nothing matches."""
    try:
        slots = [datetime.fromisoformat(s) for s in offer.get("slots", [])]
    except (TypeError, ValueError):
        logger.warning("ignoring a malformed offer: %r", offer)
        return []
    if not slots:
        return []
    day, clock = _iso_date(scheduling.date), None
    if scheduling.time:
        try:
            clock = time.fromisoformat(scheduling.time)
        except ValueError:
            clock = None
    if day is None and clock is None:
        lowered = text.lower()
        ordinal = _ORDINAL.search(lowered)
        if ordinal:
            index = ORDINALS[ordinal.group(1)]
            return [slots[index]] if index < len(slots) else []
        numbered = _NUMBERED.search(lowered)
        if numbered:
            index = int(numbered.group(1) or numbered.group(2)) - 1
            return [slots[index]] if index < len(slots) else []
        day, clock = _mentioned(text, now)
    if day is None and clock is None:
        return []
    return [
        s for s in slots
        if (day is None or local(s).date() == day)
        and (clock is None or local(s).time().replace(tzinfo=None) == clock)
    ]


def _mentioned(text: str, now: datetime) -> tuple[date | None, time | None]:
    """A day and a clock time the text names, each None when absent, by dateparser relative to
    ``now`` in agency time. A time found with no day gives only the clock time."""
    settings = {
        "RELATIVE_BASE": local(now).replace(tzinfo=None),
        "PREFER_DATES_FROM": "future",
        "RETURN_TIME_AS_PERIOD": True,
    }
    parser = DateDataParser(languages=["en"], settings=settings)
    found = search_dates(text, languages=["en"], settings=settings) or []
    if not found:
        found = [(text, None)]
    day, clock = None, None
    for substring, _ in found:
        data = parser.get_date_data(substring)
        if data.date_obj is None:
            continue
        if data.period == "time" and clock is None:
            clock = data.date_obj.time().replace(second=0, microsecond=0)
        elif data.period == "day" and day is None:
            day = data.date_obj.date()
    return day, clock


def _cancel(conversation: Conversation, now: datetime) -> Reply:
    appointment = upcoming_appointment(conversation, now)
    if appointment is None:
        return Reply(Route.BOOKING_NOT_FOUND, "I can't find an upcoming call of yours to cancel.")
    booking.cancel(appointment)
    logger.info("cancelled appointment %s from the chat", appointment.pk)
    return Reply(
        Route.BOOKING_CANCELLED,
        f"Your call with {appointment.realtor} on {format_slot(appointment.starts_at)} is "
        "cancelled. Would you like another time?",
    )


def _move(conversation: Conversation, scheduling: Scheduling, now: datetime) -> Reply:
    """Move the upcoming call: a day alone keeps its time of day, a time alone keeps its day."""
    appointment = upcoming_appointment(conversation, now)
    if appointment is None:
        return Reply(Route.BOOKING_NOT_FOUND, "I can't find an upcoming call of yours to move.")
    current = local(appointment.starts_at)
    day = _iso_date(scheduling.date)
    clock = scheduling.time
    if day is None and clock is None:
        return Reply(
            Route.BOOKING_NEEDS_TIME,
            f"Your call is on {format_slot(appointment.starts_at)}. To which day and time "
            "should I move your call?",
        )
    try:
        starts_at = parse_slot((day or current.date()).isoformat(), clock or f"{current:%H:%M}")
    except SlotUnavailable as exc:
        return _unavailable(conversation, str(exc), None, now, "move", appointment)
    return _move_to(conversation, appointment, starts_at, now)


def _move_to(conversation, appointment: Appointment, starts_at: datetime, now) -> Reply:
    try:
        new = booking.move(appointment, starts_at, now=now)
    except SlotUnavailable as exc:
        return _unavailable(conversation, str(exc), starts_at, now, "move", appointment)
    logger.info("moved appointment %s to %s", appointment.pk, new.pk)
    return Reply(Route.BOOKING, _booked_text(conversation, new, "is moved to"))


def _save_contact(conversation: Conversation, text: str, now: datetime) -> Contact:
    """Save the phone number and email a message gives on the conversation and its upcoming
    appointments; a new email gets the confirmations of those appointments."""
    contact = find_contact(text)
    fields = {}
    if contact.phone and contact.phone != conversation.visitor_phone:
        fields["visitor_phone"] = contact.phone
    if contact.email and contact.email != conversation.visitor_email:
        fields["visitor_email"] = contact.email
    if not fields:
        return contact
    for name, value in fields.items():
        setattr(conversation, name, value)
    conversation.save(update_fields=list(fields))
    upcoming = Appointment.objects.filter(
        conversation=conversation, status__in=booking.ACTIVE, starts_at__gt=now
    )
    upcoming.update(**fields)
    if "visitor_email" in fields:
        for appointment in upcoming.select_related("realtor__user", "listing"):
            transaction.on_commit(lambda a=appointment: send_confirmation(a, realtor=False))
    return contact


def _contact_saved(conversation: Conversation, contact: Contact, now: datetime) -> Reply:
    given = [display_phone(contact.phone)] if contact.phone else []
    given += [contact.email] if contact.email else []
    text = f"Thank you, I've noted {' and '.join(given)}."
    appointment = upcoming_appointment(conversation, now)
    if appointment is not None:
        text += (
            f" {appointment.realtor} will use it for your call on "
            f"{format_slot(appointment.starts_at)}."
        )
    return Reply(Route.CONTACT_SAVED, text)
