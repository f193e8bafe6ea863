"""The router: turns what the classifiers said into an action and a reply.

It acts on the first classifier, in their priority order, that answers yes; with the default
priorities (reasons in ``agent.llm.classifiers``): a price question first, then a call to
cancel, move or book, then one listing's facts (or a question about a neighbourhood's people,
which goes to a person), then a search by criteria, then any other question about a listing,
else a person takes over. Booking turns (a call asked for, picked, moved or cancelled) go to
``agent.chat.dialogue``; search and facts turns to ``agent.chat.homes``.
"""

import logging
from datetime import datetime

from django.utils import translation
from django.utils.translation import gettext as _

from agent.chat import dialogue, homes, language
from agent.chat.contact import Contact, display_phone, find_contact
from agent.chat.reply import Reply
from agent.crm import leads, qualify
from agent.llm.classifiers import (
    AppointmentChange,
    ListingFacts,
    ListingQuestion,
    ListingSearch,
    Pricing,
    Scheduling,
    decides,
)
from agent.llm.fanout import Outcome
from agent.models import Conversation, Message, Route
from agent.rows import update_row
from agent.staff import handoffs, hours
from listings import booking
from listings.agencytime import format_slot
from listings.models import Listing, find_listing

logger = logging.getLogger(__name__)


def route_turn(
    conversation: Conversation, message: Message, outcomes: list[Outcome], now: datetime,
    mentioned: tuple | None = None, written: str | None = None, lead=None,
    read_listings: dict | None = None,
) -> Reply:
    """Decide a turn's route and act on it: look up a price, book, cancel or move a call, save
    contact details, or queue a handoff.

    The first classifier, in priority order, that says "yes" decides (by default: a price
    question; cancelling or moving the conversation's upcoming call; a call request, which
    may pick one of the times offered last turn: "the second one", "Thursday works", "3pm";
    a listing's facts, or a question about a neighbourhood's people; a search by criteria,
    merged with the conversation's earlier ones; any other question about a listing). When
    none does: a pick from the offered times; contact details alone; else a person takes
    over. A phone number or email in the message
    is saved whatever the route. A reply that found homes or booked a call may end with one
    lead question (``agent.crm.qualify``), whose answer the next turn reads into the lead;
    an answer nothing else routes is thanked (``qualify_answer``).

    Runs in a database transaction of the caller's (sync code; call it off the event loop);
    emails go out when it commits.

    Args:
        conversation: the visitor's conversation.
        message: the visitor message of this turn.
        outcomes: every classifier's outcome, in priority order: the first "yes" decides; a
            failed, timed-out or cancelled one (``output is None``) counts as "no". When none
            says yes, a handoff is queued; if calls failed, the reply apologises and the
            handoff's reason names them; if every failed call failed for want of an LLM slot
            of this process (``Outcome.sent`` False: our overload), route ``busy`` asks the
            visitor to send it again, with no handoff.
        now: the current time, aware.
        mentioned: ``agent.chat.dialogue.mentioned_in(message.text, ...)`` when the caller
            worked it out off the database thread; None: worked out here if needed.
        written: ``agent.chat.language.guess(message.text)`` when the caller worked it out
            off the database thread ("": unsure); None: worked out here.
        lead: the conversation's ``Lead`` when the caller touched it already
            (``agent.crm.leads.record_turn``'s ``touched``); None: read here.
        read_listings: listings the caller read in this transaction already
            (``listing_to_read``'s, with the message's mark), as ``find_listing`` takes them;
            the route reads the others.
    Returns:
        The ``Reply``, in the conversation's language, which follows the message's
        (``agent.chat.language.detect``). Nothing here raises for a classifier's answer;
        database errors propagate.
    """
    contact = _save_contact(conversation, message.text, now)
    offer, conversation.offer = conversation.offer or {}, {}
    criteria, spoken = conversation.search, conversation.language
    asked = conversation.qualification
    if written is None:
        written = language.guess(message.text)
    conversation.language = written or spoken
    if conversation.language != spoken:
        logger.info("conversation %s now in %s, not %s", conversation.pk, written, spoken)
    answer = qualify.read_answer(conversation, message)  # the lead question asked last turn
    with translation.override(conversation.language):
        reply = _decide(
            conversation, message, outcomes, now, contact, offer, mentioned, answer,
            read_listings,
        )
        # and its webhook events
        lead = leads.record_turn(conversation, outcomes, now, answer, touched=lead)
        reply = qualify.follow_up(
            conversation, lead, message, reply, asked_last_turn="pending" in (asked or {})
        )
    changed = [name for name, before in (("offer", offer), ("search", criteria),
                                         ("language", spoken), ("qualification", asked))
               if getattr(conversation, name) != before]
    if changed:  # one UPDATE for all
        update_row(conversation, changed)
    return reply


def listing_to_read(outcomes: list[Outcome], message: Message) -> str | None:
    """The 6-digit ID of the listing the route of ``outcomes`` will read, or None when it
    reads none: the deciding classifier's, in ``_decide``'s order, when it is a price question
    or a question about a listing's facts (by default the page's listing,
    ``agent.chat.homes.facts_reply``). ``agent.chat.turn`` reads it with the message's mark, one
    statement a price or facts turn fewer, and gives it to ``route_turn`` as ``read_listings``."""
    for outcome in outcomes:
        said = outcome.output
        if not decides(said):
            continue
        if isinstance(said, Pricing):
            return said.listing_id
        if isinstance(said, ListingFacts) and not said.about_people:
            return said.listing_id or message.page_listing or None
        return None
    return None


def _decide(
    conversation, message, outcomes, now, contact: Contact, offer: dict, mentioned,
    answer: dict, read_listings: dict | None,
) -> Reply:
    for outcome in outcomes:  # in the classifiers' priority order: the first "yes" decides
        said = outcome.output
        if not decides(said):
            continue
        if isinstance(said, Pricing):
            return _price(said.listing_id, read_listings)
        if isinstance(said, AppointmentChange):
            if said.action == "cancel":
                return dialogue.cancel(conversation, now)
            return dialogue.move(conversation, _scheduling_of(outcomes), now)
        if isinstance(said, Scheduling):
            reply = dialogue.schedule(
                conversation, message.text, said, offer, now, contact_given=bool(contact),
                mentioned=mentioned,
            )
            return reply or _contact_saved(conversation, contact, now)
        if isinstance(said, ListingFacts):
            return homes.facts_reply(conversation, message, said, now, read_listings)
        if isinstance(said, ListingSearch):
            return homes.search_reply(conversation, said)
        if isinstance(said, ListingQuestion):
            handoffs.queue_handoff(conversation, message, "listing question")
            return Reply(
                Route.HANDOFF,
                _("Good question! I've passed it to one of our realtors.") + " "
                + hours.when_staff_answer(conversation, now),
            )
    picked = dialogue.pick(
        conversation, message.text, _scheduling_of(outcomes), offer, now, mentioned=mentioned
    )
    if picked is not None:
        return picked
    if contact:
        return _contact_saved(conversation, contact, now)
    if answer:  # the visitor answered our lead question, and nothing else
        return Reply(Route.QUALIFY_ANSWER, str(qualify.THANKS))
    failed = [o for o in outcomes if o.status in ("error", "timeout") or o.error]
    if not failed:
        handoffs.queue_handoff(conversation, message, "no classifier matched")
        return Reply(
            Route.FALLBACK,
            _("Let me transfer you to a human representative.") + " "
            + hours.when_staff_answer(conversation, now),
        )
    if all(not o.sent for o in failed):
        # Our own overload (no LLM slot came in time), not the LLM's failure: no person needed.
        return Reply(Route.BUSY, OVERLOADED_TEXT)
    every = "every classifier failed" if len(failed) == len(outcomes) else "no classifier matched"
    reason = f"{every}: " + "; ".join(f"{o.classifier}: {o.error}" for o in failed)
    handoffs.queue_handoff(conversation, message, reason)
    return Reply(
        Route.FALLBACK,
        _("Sorry, I couldn't understand that one in time. I've passed your message to our "
          "team.") + " " + hours.when_staff_answer(conversation, now),
    )


OVERLOADED_TEXT = (
    "Sorry, we're very busy right now and couldn't get to your message in time. "
    "Please send it again in a moment."
)


def _scheduling_of(outcomes: list[Outcome]) -> Scheduling:
    """The scheduling classifier's answer, or "no call" when it failed, was cancelled or is
    not enabled."""
    for outcome in outcomes:
        if isinstance(outcome.output, Scheduling):
            return outcome.output
    return Scheduling(False, None, None)


def _price(listing_id: str | None, read_listings: dict | None) -> Reply:
    if listing_id is None:
        return Reply(
            Route.PRICE_NEEDS_LISTING,
            _("Happy to help with prices! Which listing do you mean? Please give me its 6-digit "
              "listing ID."),
        )
    listing = find_listing(listing_id, read_listings)
    if listing is None:
        return Reply(
            Route.PRICE_UNKNOWN_LISTING,
            _("I couldn't find listing %(id)s. Could you check the 6-digit listing ID?")
            % {"id": listing_id},
        )
    words = {"id": listing.listing_id, "price": listing.formatted_price()}
    text = _("The price for listing %(id)s is %(price)s.") % words
    if listing.status == Listing.Status.UNDER_OFFER:
        text += " " + _("It is currently under offer.")
    elif listing.status == Listing.Status.SOLD:
        text = _("Listing %(id)s has been sold; it was listed at %(price)s.") % words
    return Reply(Route.PRICE, text)


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
    update_row(conversation, list(fields))
    booking.copy_contact(conversation, fields, now)
    return contact


def _contact_saved(conversation: Conversation, contact: Contact, now: datetime) -> Reply:
    given = [display_phone(contact.phone)] if contact.phone else []
    given += [contact.email] if contact.email else []
    text = _("Thank you, I've noted %(contact)s.") % {"contact": _(" and ").join(given)}
    appointment = booking.upcoming_appointment(conversation, now)
    if appointment is not None:
        text += " " + _("%(realtor)s will use it for your call on %(when)s.") % {
            "realtor": appointment.realtor, "when": format_slot(appointment.starts_at)}
    return Reply(Route.CONTACT_SAVED, text)
