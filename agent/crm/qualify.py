"""One short qualification question at a natural moment, and reading its answer back.

Which facts, in this order (the first the lead lacks is asked):

1. ``intent``: buy, rent or sell. It decides who at the agency works the lead and whether the
   other questions apply at all (pre-approval is a buyer's question); with the budget a search
   gives, it makes the lead concrete for the "hot" rule (``agent.crm.leads.hot_q``).
2. ``contact``: a phone number or email when the lead has neither. Without one nobody can
   follow up, and a lead is never hot. Not asked after a booking: the booking reply already
   asks for it (``agent.chat.dialogue``), and a reply carries one question of ours at most.
3. ``timeline``: how soon they mean to move, so realtors call the soonest first.
4. ``preapproved``: mortgage pre-approval, asked of buyers only; it tells a ready buyer from
   one who is browsing.

When: only after a reply that found homes (route ``listing_search``) or booked a call
(``booking``). Those are the moments a visitor has shown concrete interest (what makes the lead
serious) and has just been helped, so a question costs little; a question appended to a
refusal or an apology would not be natural. Never on the turn right after a turn that asked
(``Conversation.qualification["pending"]``), never again once the lead has the fact (whoever
filled it: this question, a search, staff in the admin), and a fact asked twice without an
answer is not asked again. ``route_turn`` runs only when staff do not hold the conversation
(``agent.chat.turn.finish_turn`` checks in the same transaction), so nothing is asked then.

Reading the answer (the rule-based path; our code writes the lead): the visitor message right
after the question (at most 3 ``seq`` after the asking turn's message, allowing for a
``busy`` notice) is read by ``parse`` for the fact asked: buy/rent/sell words (one kind only,
else nothing), a timeline phrase ("3 months", "asap", "next year", "just looking"), a yes or
no (a negation wins; "cash" counts as yes: a cash buyer needs no mortgage). A phone number or
email is saved by the router from any message, as before. What the classifiers say in that
same turn still routes it; when none routes it, the router thanks the visitor
(``Route.QUALIFY_ANSWER``) instead of handing off.
"""

import logging
import re

from django.utils.translation import gettext_lazy as _

from agent.chat.reply import Reply

logger = logging.getLogger(__name__)

ORDER = ("intent", "contact", "timeline", "preapproved")
MAX_ASKS = 2  # a fact asked this many times without an answer is not asked again
ANSWER_WITHIN = 3  # the answer's seq is at most this many after the asking turn's message
AFTER_ROUTES = ("listing_search", "booking")  # agent.models.Route values

QUESTIONS = {  # translated when the reply is written, in the conversation's language
    "intent": _("Are you looking to buy, to rent or to sell?"),
    "contact": _("If you'd like a realtor to follow up, what's the best phone number or email?"),
    "timeline": _("How soon are you hoping to move: within 3 months, 6 months, or later?"),
    "preapproved": _("Have you been pre-approved for a mortgage yet?"),
}
THANKS = _("Thank you, that helps. Is there anything else I can do for you?")

_INTENT = {
    "buy": re.compile(r"\b(buy|buying|purchas(e|ing))\b"),
    "rent": re.compile(r"\b(rent|renting|rental|lease|leasing)\b"),
    "sell": re.compile(r"\b(sell|selling)\b"),
}
_NUMBERS = {"one": 1, "a": 1, "an": 1, "two": 2, "three": 3, "four": 4, "six": 6, "twelve": 12}
_SPAN = re.compile(r"\b(\d{1,2}|one|two|three|four|six|twelve|a|an)\s+(week|month|year)s?\b")
_TIMELINE_WORDS = [
    (re.compile(r"\b(asap|as soon as possible|right away|immediately|urgently)\b"), "asap"),
    (re.compile(r"\bthis (month|summer|spring|autumn|fall|winter|year)\b"), None),
    (re.compile(r"\bnext (month|summer|spring|autumn|fall|winter|year)\b"), None),
    (re.compile(r"\b(just (looking|browsing)|no rush|not sure|not in a hurry)\b"), "no rush"),
    (re.compile(r"\blater\b"), "later"),
]
_NO = re.compile(r"\b(no|nope|not|never|havent)\b|n't\b")
_UNSURE = re.compile(r"\b(not sure|don'?t know|no idea|maybe)\b")
_YES = re.compile(r"\b(yes|yep|yeah|yup|sure|already|approved|pre-?approved|cash)\b")


def parse(fact: str, text: str) -> dict:
    """What a visitor's answer to the question about ``fact`` says, as ``Lead`` field values.

    Args:
        fact: one of ``ORDER``.
        text: the visitor's message (bounded by the chat's 2,000 characters).
    Returns:
        ``{"intent": "buy"|"rent"|"sell"}``, ``{"timeline": "3 months"}`` (at most 100
        characters), ``{"preapproved": True|False}``, or ``{}`` when it does not answer (and
        always for ``contact``: the router saves contact details from any message).
    """
    lowered = text.lower()
    if fact == "intent":
        kinds = [kind for kind, words in _INTENT.items() if words.search(lowered)]
        return {"intent": kinds[0]} if len(kinds) == 1 else {}
    if fact == "timeline":
        span = _SPAN.search(lowered)
        if span:
            number, unit = span.groups()
            n = int(number) if number.isdigit() else _NUMBERS[number]
            return {"timeline": f"{n} {unit}" + ("s" if n != 1 else "")}
        for words, label in _TIMELINE_WORDS:
            found = words.search(lowered)
            if found:
                return {"timeline": (label or found.group(0))[:100]}
        return {}
    if fact == "preapproved":
        if _UNSURE.search(lowered):
            return {}
        if _NO.search(lowered):
            return {"preapproved": False}
        return {"preapproved": True} if _YES.search(lowered) else {}
    return {}


def read_answer(conversation, message) -> dict:
    """Consume the conversation's pending question and read ``message`` as its answer.

    Clears ``conversation.qualification["pending"]`` (in memory; the router saves it).

    Args:
        conversation: the turn's ``agent.Conversation``.
        message: the turn's visitor ``agent.Message``.
    Returns:
        The ``Lead`` field values the answer gives (see ``parse``), or ``{}``.
    """
    state = dict(conversation.qualification or {})
    fact, after = state.pop("pending", None), state.pop("after", None)
    if fact is None:
        return {}
    conversation.qualification = state
    if not isinstance(after, int) or not 0 < message.seq - after <= ANSWER_WITHIN:
        return {}
    answer = parse(fact, message.text)
    if answer:
        logger.info("conversation %s answered %s", conversation.pk, fact)
    return answer


def missing(lead, conversation) -> list[str]:
    """The facts of ``ORDER`` the lead lacks (contact: neither an email nor a phone on the lead
    or the conversation; pre-approval: only for a buyer)."""
    lacks = {
        "intent": lead.intent == "",
        "contact": not (lead.email or lead.phone or conversation.visitor_email
                        or conversation.visitor_phone),
        "timeline": lead.timeline == "",
        "preapproved": lead.intent == "buy" and lead.preapproved is None,
    }
    return [fact for fact in ORDER if lacks[fact]]


def follow_up(conversation, lead, message, reply: Reply, asked_last_turn: bool) -> Reply:
    """The reply with one qualification question appended when it is the moment (the rules
    are in the module docstring); records the question on ``conversation.qualification``
    (in memory; the router saves it).

    Args:
        conversation: the turn's ``agent.Conversation``.
        lead: its ``agent.crm.models.Lead``, as this turn left it (None: no question).
        message: the turn's visitor message (its ``seq`` is where the answer is awaited).
        reply: the router's reply.
        asked_last_turn: whether the previous turn asked a question.
    Returns:
        ``reply`` itself, or a copy whose text ends with the question.
    """
    if lead is None or asked_last_turn or reply.route not in AFTER_ROUTES:
        return reply
    has_contact = bool(conversation.visitor_email or conversation.visitor_phone)
    if reply.route == "booking" and not has_contact:
        return reply  # the booking reply asks for a phone or email itself
    asked = dict((conversation.qualification or {}).get("asked", {}))
    facts = [f for f in missing(lead, conversation) if asked.get(f, 0) < MAX_ASKS]
    if reply.route == "booking":
        facts = [f for f in facts if f != "contact"]
    if not facts:
        return reply
    fact = facts[0]
    asked[fact] = asked.get(fact, 0) + 1
    conversation.qualification = {"asked": asked, "pending": fact, "after": message.seq}
    return Reply(reply.route, f"{reply.text}\n{QUESTIONS[fact]}", reply.listings)
