"""The booking dialogue: a visitor asks for, picks, moves or cancels a call with a realtor.

The router hands it a turn with one call per case (``schedule``, ``pick``, ``cancel``,
``move``); it reads what the classifiers extracted and the times offered last turn, acts
through ``listings.booking`` (which books, cancels, moves and schedules the emails) and writes
every word of the reply. Times offered are stored as ``conversation.offer``
(``{"action": "book" | "move", "slots": [ISO datetimes]}``); the router saves it.
"""

import logging
import re
from datetime import date, datetime, time

from dateparser.date import DateDataParser
from dateparser.search import search_dates
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from agent.chat.reply import Reply
from agent.llm.classifiers import Scheduling
from agent.models import Conversation, Message, Route
from listings import booking
from listings.agencytime import describe_hours, format_day, format_slot, local
from listings.booking import SlotUnavailable, TooManyCalls
from listings.models import Appointment, Listing

logger = logging.getLogger(__name__)

LISTING_ID = re.compile(r"(?<!\d)\d{6}(?!\d)")
ORDINALS = {"first": 0, "1st": 0, "second": 1, "2nd": 1, "third": 2, "3rd": 2, "last": -1,
            "primera": 0, "primero": 0, "segunda": 1, "segundo": 1, "tercera": 2,
            "tercero": 2, "última": -1, "último": -1}
DATE_LANGUAGES = ["en", "es"]  # the languages dateparser reads a visitor's day and time in
_ORDINAL = re.compile(r"\b(" + "|".join(ORDINALS) + r")\b")
_WORD = r"number|option|no\.?|#|opci[oó]n|n[uú]mero"  # "option 2", "la opción 2"
_NUMBERED = re.compile(r"^\s*(?:(?:" + _WORD + r")\s*)?([1-9])\s*[.!]?\s*$|"
                       r"\b(?:" + _WORD.replace(r"no\.?", r"no\.") + r")\s*([1-9])\b")
# Words and figures that name a day or a time, in English and Spanish; dateparser reads only
# the text around the first of them. Its time grows with the text: a crafted 2,000-character
# message took 1 to 1.7 s (issue 13; bench/dateparse.py has the figures).
_DATE_WORD = re.compile(
    r"\b(?:mon|tue|wed|thu|fri|sat|sun|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*"
    r"|\b(?:today|tomorrow|tonight|noon|midnight|morning|afternoon|evening|week|day|days)\b"
    r"|\b(?:lunes|martes|mi[eé]rcoles|jueves|viernes|s[aá]bado|domingo|hoy|ma[nñ]ana|tarde"
    r"|noche|mediod[ií]a|semana|d[ií]as?|enero|febrero|marzo|abril|mayo|junio|julio|agosto"
    r"|septiembre|setiembre|octubre|noviembre|diciembre)\b|\ba\s+las?\s+\d"
    r"|\d{1,2}(?::\d{2})?\s*[ap]\.?m\b|\d{1,2}:\d{2}|\d{1,4}[/-]\d{1,2}(?:[/-]\d{1,4})?"
    r"|\d{1,2}(?:st|nd|rd|th)\b"
)
DATE_TEXT_BEFORE = 40  # characters before the first date word that dateparser reads
DATE_TEXT = 200  # characters dateparser reads in all, a sentence or two


def schedule(
    conversation: Conversation, text: str, scheduling: Scheduling, offer: dict, now: datetime,
    *, contact_given: bool = False, mentioned: tuple | None = None,
) -> Reply | None:
    """A call request: book one of the times offered last turn, or the full day and time asked
    for, or offer times on the day given, or ask for a day and time.

    Args:
        conversation: the visitor's conversation; its ``offer`` is set when times are offered.
        text: the visitor's message.
        scheduling: the scheduling classifier's answer.
        offer: the times offered last turn (``conversation.offer`` as it was), maybe empty.
        now: the current time, aware.
        contact_given: the message gave a phone number or an email.
        mentioned: ``mentioned(text, now)``, worked out before the database trip (it is slow
            CPU work); None: worked out here if it is needed.
    Returns:
        The ``Reply``, or None when the message names no time and ``contact_given``: the router
        then acknowledges the contact details instead.
    """
    picked = pick(conversation, text, scheduling, offer, now, mentioned=mentioned)
    if picked is not None:
        return picked
    if scheduling.date and scheduling.time:
        try:
            starts_at = booking.parse_slot(scheduling.date, scheduling.time)
        except SlotUnavailable as exc:
            return _unavailable(conversation, str(exc), None, now)
        return _book(conversation, starts_at, now)
    if contact_given:
        return None
    return _needs_time(conversation, scheduling, now, "book")


def pick(
    conversation: Conversation, text: str, scheduling: Scheduling, offer: dict, now: datetime,
    *, mentioned: tuple | None = None,
) -> Reply | None:
    """Book (or move the upcoming call to) the offered time the visitor picked, or ask again
    when several match.

    Args: as ``schedule``; ``scheduling`` may be "no call" (the classifier failed or is off).
    Returns:
        The ``Reply``, or None when the message picks none of the offered times (or nothing was
        offered).
    """
    picked = _pick_offered(offer, text, scheduling, now, mentioned)
    if len(picked) == 1:
        if offer.get("action") == "move":
            appointment = booking.upcoming_appointment(conversation, now)
            if appointment is not None:
                return _move_to(conversation, appointment, picked[0], now)
        return _book(conversation, picked[0], now)
    if picked:
        return _offer(
            conversation, Route.BOOKING_NEEDS_TIME, _("Which of these do you mean?"), picked,
            offer.get("action", "book"),
        )
    return None


def cancel(conversation: Conversation, now: datetime) -> Reply:
    """Cancel the conversation's upcoming call (the emails go out on commit).

    Returns:
        The ``Reply``: ``booking_cancelled``, or ``booking_not_found`` when there is no call.
    """
    appointment = booking.upcoming_appointment(conversation, now)
    if appointment is None:
        return Reply(Route.BOOKING_NOT_FOUND,
                     _("I can't find an upcoming call of yours to cancel."))
    booking.cancel(appointment)
    logger.info("cancelled appointment %s from the chat", appointment.pk)
    return Reply(
        Route.BOOKING_CANCELLED,
        _("Your call with %(realtor)s on %(when)s is cancelled. Would you like another time?")
        % {"realtor": appointment.realtor, "when": format_slot(appointment.starts_at)},
    )


def move(conversation: Conversation, scheduling: Scheduling, now: datetime) -> Reply:
    """Move the upcoming call: a day alone keeps its time of day, a time alone keeps its day.

    Args:
        conversation: the visitor's conversation.
        scheduling: the scheduling classifier's answer (the new day and/or time), or "no call".
        now: the current time, aware.
    Returns:
        The ``Reply``: ``booking``, ``booking_unavailable`` with alternatives (kept as the
        offer), ``booking_needs_time``, or ``booking_not_found`` when there is no call.
    """
    appointment = booking.upcoming_appointment(conversation, now)
    if appointment is None:
        return Reply(Route.BOOKING_NOT_FOUND, _("I can't find an upcoming call of yours to move."))
    current = local(appointment.starts_at)
    day = _iso_date(scheduling.date)
    clock = scheduling.time
    if day is None and clock is None:
        return Reply(
            Route.BOOKING_NEEDS_TIME,
            _("Your call is on %(when)s. To which day and time should I move your call?")
            % {"when": format_slot(appointment.starts_at)},
        )
    try:
        starts_at = booking.parse_slot(
            (day or current.date()).isoformat(), clock or f"{current:%H:%M}"
        )
    except SlotUnavailable as exc:
        return _unavailable(conversation, str(exc), None, now, "move", appointment)
    return _move_to(conversation, appointment, starts_at, now)


def _listing_under_discussion(conversation: Conversation) -> Listing | None:
    """The listing named last in the visitor's ten latest messages, if it exists: by its 6-digit
    ID in a message's text, else the listing on screen when the message was sent. Two queries,
    whatever the number of IDs (one query per ID was thousands for a message of numbers,
    issue 13)."""
    texts = conversation.messages.filter(role=Message.Role.USER).order_by("-seq")
    named = [
        listing_id
        for text, page_listing in texts.values_list("text", "page_listing")[:10]
        for listing_id in [*reversed(LISTING_ID.findall(text)), *filter(None, [page_listing])]
    ]
    if not named:
        return None
    found = {
        listing.listing_id: listing
        for listing in Listing.objects.filter(listing_id__in=set(named))
    }
    return next((found[i] for i in named if i in found), None)


def _book(conversation: Conversation, starts_at: datetime, now: datetime) -> Reply:
    try:
        appointment = booking.book(
            starts_at, now=now, conversation=conversation,
            listing=_listing_under_discussion(conversation),
        )
    except SlotUnavailable as exc:
        return _unavailable(conversation, str(exc), starts_at, now)
    except TooManyCalls as exc:
        logger.info("conversation %s refused a call: %s", conversation.pk, exc)
        return Reply(
            Route.BOOKING_LIMIT,
            f"You already have {exc.upcoming} calls booked with us, which is as many as we can "
            "hold for you at once. To book another, cancel or move one of them first.",
        )
    logger.info("booked appointment %s for conversation %s", appointment.pk, conversation.pk)
    return Reply(Route.BOOKING, _booked_text(conversation, appointment, "booked"))


def _booked_text(conversation: Conversation, appointment: Appointment, verb: str) -> str:
    """``verb`` is "booked" or "moved"."""
    words = {"realtor": appointment.realtor, "when": format_slot(appointment.starts_at)}
    if verb == "moved":
        text = _("Your call with %(realtor)s is moved to %(when)s.") % words
    else:
        text = _("Your call with %(realtor)s is booked for %(when)s.") % words
    if conversation.visitor_email:
        text += " " + _("A confirmation is on its way to %(email)s.") % {
            "email": conversation.visitor_email}
    if not (conversation.visitor_phone or conversation.visitor_email):
        text += " " + _(
            "How should %(realtor)s reach you? Please give me a phone number or an email address."
        ) % words
    return text


def _move_to(conversation, appointment: Appointment, starts_at: datetime, now) -> Reply:
    try:
        new = booking.move(appointment, starts_at, now=now)
    except SlotUnavailable as exc:
        return _unavailable(conversation, str(exc), starts_at, now, "move", appointment)
    logger.info("moved appointment %s to %s", appointment.pk, new.pk)
    return Reply(Route.BOOKING, _booked_text(conversation, new, "moved"))


def _unavailable(
    conversation: Conversation, why: str, requested: datetime | None, now: datetime,
    action: str = "book", ignore: Appointment | None = None,
) -> Reply:
    """Say why a time can't be booked and offer the nearest free times (kept as the offer)."""
    text = _("Sorry, I can't book that call: %(why)s.") % {"why": why}
    slots = booking.nearest_free_slots(requested, now=now, ignore=ignore) if requested else []
    if not slots:
        return Reply(
            Route.BOOKING_UNAVAILABLE,
            text + " " + _("We usually take calls %(hours)s. Which other day and time would suit "
                           "you?") % {"hours": describe_hours()},
        )
    return _offer(conversation, Route.BOOKING_UNAVAILABLE, text, slots, action)


def _offer(conversation, route: str, text: str, slots: list[datetime], action: str) -> Reply:
    """A reply listing numbered call times, stored as the conversation's offer."""
    conversation.offer = {"action": action, "slots": [s.isoformat() for s in slots]}
    listed = "; ".join(f"{n}) {format_slot(s)}" for n, s in enumerate(slots, start=1))
    nearest = ngettext(
        "The nearest free time is: %(times)s. Which one suits you, or which other day and time?",
        "The nearest free times are: %(times)s. Which one suits you, or which other day and "
        "time?", len(slots)) % {"times": listed}
    return Reply(route, f"{text} {nearest}")


def _needs_time(conversation, scheduling: Scheduling, now: datetime, action: str) -> Reply:
    """A call request without a full time: offer the first free times on the day given, or ask
    for a day and time."""
    day = _iso_date(scheduling.date)
    if day is not None:
        slots = booking.free_slots_on(day, now=now)
        if slots:
            return _offer(
                conversation, Route.BOOKING_NEEDS_TIME,
                _("What time on %(day)s?") % {"day": format_day(slots[0])}, slots, action,
            )
    return Reply(
        Route.BOOKING_NEEDS_TIME,
        _("I'd be glad to set up a call with one of our realtors. What day and time suit you? "
          "We usually take calls %(hours)s.") % {"hours": describe_hours()},
    )


def _iso_date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _pick_offered(
    offer: dict, text: str, scheduling: Scheduling, now: datetime, mentioned: tuple | None
) -> list:
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
        day, clock = mentioned if mentioned is not None else mentioned_in(text, now)
    if day is None and clock is None:
        return []
    return [
        s for s in slots
        if (day is None or local(s).date() == day)
        and (clock is None or local(s).time().replace(tzinfo=None) == clock)
    ]


def date_text(text: str) -> str:
    """The part of ``text`` dateparser reads: ``DATE_TEXT`` characters from a little before
    the first word or figure that names a day or a time (``_DATE_WORD``); empty when none
    does."""
    first = _DATE_WORD.search(text.lower())
    if first is None:
        return ""
    start = max(first.start() - DATE_TEXT_BEFORE, 0)
    return text[start:start + DATE_TEXT]


def mentioned_in(text: str, now: datetime) -> tuple[date | None, time | None]:
    """A day and a clock time the text names, each None when absent, by dateparser relative to
    ``now`` in agency time, reading only ``date_text(text)``. A time found with no day gives
    only the clock time.

    CPU work of up to some 0.1 s (bench/dateparse.py): the turn runs it in a worker thread
    while the classifiers answer, not on the database thread.
    """
    text = date_text(text)
    if not text:
        return None, None
    settings = {
        "RELATIVE_BASE": local(now).replace(tzinfo=None),
        "PREFER_DATES_FROM": "future",
        "RETURN_TIME_AS_PERIOD": True,
    }
    parser = DateDataParser(languages=DATE_LANGUAGES, settings=settings)
    found = search_dates(text, languages=DATE_LANGUAGES, settings=settings) or []
    if not found:
        found = [(text, None)]
    day, clock = None, None
    for substring, _found_at in found:
        data = parser.get_date_data(substring)
        if data.date_obj is None:
            continue
        if data.period == "time" and clock is None:
            clock = data.date_obj.time().replace(second=0, microsecond=0)
        elif data.period == "day" and day is None:
            day = data.date_obj.date()
    return day, clock
