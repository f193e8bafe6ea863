"""The six classifier prompts of a turn, their JSON schemas and their typed outputs.

Each classifier asks the LLM one question about the visitor's latest message, with the
conversation so far as context, and gets a small JSON object back through structured output
(``response_format: {"type": "json_schema", ...}``, accepted by vLLM, OpenAI, llama.cpp and
Ollama). The outputs are also the labels of ``../shared/eval`` data.

The product reads its classifiers from ``agent.models.ClassifierConfig`` rows (editable in the
admin); the router keys on the names pricing, appointment_change, scheduling, listing_facts,
listing_search and listing_question and reads the typed answers defined here.

Priorities (lower first; the router acts on the first "yes", and the fan-out's early exit
cancels every lower one as soon as a higher one says yes), and why:

1. pricing (10): "how much is this one?" is a price, whatever else the message says; the
   price route already words sold and under-offer listings.
2. appointment_change (15), 3. scheduling (20): a request to book, move or cancel is an
   action with a time in it ("can I see it Friday at 10?"); answering a fact instead would
   drop it.
4. listing_facts (22): one listing's facts, and the fair-housing flag (``about_people``): a
   question about the people of a neighbourhood must beat the search, which would otherwise
   answer "homes in a safe area" with listings, so the flag lives in the higher of the two.
5. listing_search (24): after facts, because "does 654321 have a garage?" names one listing
   and is a fact, while "what about with a garage?" names none and refines the search; the
   facts prompt says yes only when one listing is meant.
6. listing_question (30): the catch-all that hands any other listing question to a person.

Early exit: ``decides`` is a "yes" of any of the six (for listing_facts, a fact asked or the
fair-housing flag). A "no" never ends the round early.
"""

import uuid
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any, Callable

from agent.llm import listing_classifiers
from agent.llm.client import Server, to_json
from agent.llm.fields import (
    BOOLEAN,
    LISTING_ID,
    ClassifierOutputError,
    nullable,
    read_field,
    schema_object,
)
from agent.llm.listing_classifiers import ListingFacts, ListingSearch

__all__ = ["ClassifierOutputError", "ListingFacts", "ListingSearch"]  # re-exported

HISTORY_MESSAGES = 10  # the latest messages sent as context, the visitor's newest included
MAX_TOKENS = 64  # every answer is a one-line JSON object


@dataclass(frozen=True)
class Pricing:
    """Does the visitor ask for a price, and of which listing (6-digit id, or None)?"""

    asks_price: bool
    listing_id: str | None


@dataclass(frozen=True)
class Scheduling:
    """Does the visitor want a call, and when? ``date`` is ``YYYY-MM-DD`` and ``time`` ``HH:MM``
    in the agency's time zone, as the model wrote them: the router checks they are real."""

    wants_call: bool
    date: str | None
    time: str | None


@dataclass(frozen=True)
class ListingQuestion:
    """Is this a question about a listing?"""

    is_listing_question: bool


@dataclass(frozen=True)
class AppointmentChange:
    """Does the visitor want to cancel or move a call already booked? ``action`` is "none",
    "cancel" or "move"; the new time of a move comes from the scheduling classifier."""

    action: str


DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
TIME = r"[0-9]{2}:[0-9]{2}"
CHANGE_ACTIONS = ("none", "cancel", "move")


AGENCY_CONTEXT = (
    "You classify messages for a real-estate agency's chat. "
    "The messages may be in any language (English, Spanish or another). "
    "Today is {today}. Listings have "
    "6-digit ids. After the conversation, a last system message asks one question about the "
    "visitor's latest message; answer it with one JSON object only."
)
LAYOUTS = ("shared_prefix", "system_first")


@dataclass(frozen=True)
class Classifier:
    """One question asked of the LLM on every turn.

    ``instructions`` is the classifier's system prompt; ``{today}`` in it becomes e.g.
    ``Sunday, 2026-11-22`` (other braces are plain text). ``schema`` is the JSON schema of its
    answer. ``model`` empty means the settings' model for its name; ``server`` None means the
    default server (``LLM_BASE_URL``). ``version`` is the stored row's version, 0 for the
    built-in defaults below.
    """

    name: str
    instructions: str
    schema: dict
    model: str = ""
    max_tokens: int = MAX_TOKENS
    temperature: float = 0.0
    version: int = 0
    server: Server | None = None
    # ``request_json``'s serialized parts: {(model, today, layout): (head, tail)}. Per instance,
    # so a changed row (a new ``Classifier``) starts empty.
    _json_parts: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def system_prompt(self, today: date) -> str:
        """The system prompt with today's date and weekday (agency time) filled in."""
        return fill_today(self.instructions, today)

    def request_body(
        self, model: str, history: list[dict], today: date, layout: str = "system_first"
    ) -> dict:
        """The chat-completions request body (without ``stream``).

        Args:
            model: the model name the LLM server serves.
            history: OpenAI chat messages (``{"role": "user"|"assistant", "content": str}``),
                oldest first, ending with the visitor's newest message.
            today: the agency's current date.
            layout: "system_first", the tutorial's: this classifier's system prompt, then the
                conversation; or "shared_prefix": ``AGENCY_CONTEXT`` and the conversation,
                which every classifier shares so vLLM's prefix cache computes them once, then
                this classifier's prompt as a last system message.
        Raises:
            ValueError: an unknown layout.
        """
        if layout == "system_first":
            messages = [{"role": "system", "content": self.system_prompt(today)}, *history]
        elif layout == "shared_prefix":
            messages = [
                {"role": "system", "content": fill_today(AGENCY_CONTEXT, today)},
                *history,
                {"role": "system", "content": self.system_prompt(today)},
            ]
        else:
            raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
        return {
            "model": model,
            "messages": messages,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": self.name, "schema": self.schema, "strict": True},
            },
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    def request_json(
        self, model: str, history: bytes, today: date, layout: str = "system_first"
    ) -> bytes:
        """``request_body`` with ``"stream": false``, serialized: the same bytes as ``to_json``
        of it, made from the conversation serialized once per turn and the rest of the body
        serialized once per model, date and layout (issue 16).

        Args:
            model, today, layout: as for ``request_body``.
            history: the conversation as ``history_json`` serializes it.
        Raises:
            ValueError: an unknown layout.
        """
        key = (model, today, layout)
        parts = self._json_parts.get(key)
        if parts is None:
            if len(self._json_parts) >= 8:  # days gone by
                self._json_parts.clear()
            # The body around one marker message, cut at it: the history goes in its place.
            whole = to_json({**self.request_body(model, [_MARKER], today, layout), "stream": False})
            if whole.count(_MARKER_JSON) != 1:
                raise ValueError("the layout must put the history after a message")
            head, _, tail = whole.partition(_MARKER_JSON)
            parts = self._json_parts[key] = (head, tail)
        return parts[0] + history + parts[1]

    def parse(self, data: dict) -> Any:
        """The typed answer (``Pricing``, ...) for the router's six classifiers; for any
        other name, the JSON object itself.

        Raises:
            ClassifierOutputError: the object does not fit the classifier's fields.
        """
        parse = PARSERS.get(self.name)
        return parse(data) if parse else data


def history_json(history: list[dict]) -> bytes:
    """The conversation's messages serialized for ``Classifier.request_json``: each message's
    JSON after a comma (b"" for none), as they sit in the ``messages`` list."""
    return b"," + to_json(history)[1:-1] if history else b""


# ``request_json``'s stand-in for the history: a text no prompt, schema or model name holds.
_MARKER_TEXT = f"history-{uuid.uuid4().hex}"
_MARKER = {"role": "user", "content": _MARKER_TEXT}
_MARKER_JSON = b"," + to_json(_MARKER)


def fill_today(text: str, today: date) -> str:
    """``text`` with ``{today}`` replaced by e.g. ``Sunday, 2026-11-22``."""
    return text.replace("{today}", f"{today:%A}, {today.isoformat()}")


def decides(output: Any) -> bool:
    """Whether this answer makes the router act on its classifier (a "yes" of the router's
    six), so no lower-priority classifier can change the route."""
    return (
        (isinstance(output, Pricing) and output.asks_price)
        or (isinstance(output, AppointmentChange) and output.action != "none")
        or (isinstance(output, Scheduling) and output.wants_call)
        or (isinstance(output, ListingFacts) and (output.asks_facts or output.about_people))
        or (isinstance(output, ListingSearch) and output.wants_listings)
        or (isinstance(output, ListingQuestion) and output.is_listing_question)
    )


PARSERS: dict[str, Callable[[dict], Any]] = {
    "pricing": lambda data: Pricing(
        asks_price=read_field(data, "asks_price", bool),
        listing_id=read_field(data, "listing_id", str, LISTING_ID),
    ),
    "scheduling": lambda data: Scheduling(
        wants_call=read_field(data, "wants_call", bool),
        date=read_field(data, "date", str, DATE),
        time=read_field(data, "time", str, TIME),
    ),
    "listing_question": lambda data: ListingQuestion(
        is_listing_question=read_field(data, "is_listing_question", bool)
    ),
    "appointment_change": lambda data: AppointmentChange(action=_action(data)),
    "listing_search": listing_classifiers.parse_search,
    "listing_facts": listing_classifiers.parse_facts,
}


# The built-in defaults. Migration 0004 seeds the ClassifierConfig rows with copies of these
# texts; the product asks the rows, tests and the stand-in's own checks use these.
PRICING = Classifier(
    name="pricing",
    instructions=(
        "You classify messages for a real-estate agency's chat. "
        "The messages may be in any language (English, Spanish or another). "
        "Decide whether the visitor's "
        "latest message asks for the price of a listing, counting a reply that gives the listing "
        "the assistant just asked for. Listings have 6-digit ids. Set listing_id to the 6-digit "
        "id the visitor means, taken from the conversation, or null if none is given. "
        'Answer with JSON only: {"asks_price": true|false, "listing_id": "123456"|null}.'
    ),
    schema=schema_object(asks_price=BOOLEAN, listing_id=nullable(f"^{LISTING_ID}$")),
)

SCHEDULING = Classifier(
    name="scheduling",
    instructions=(
        "You classify messages for a real-estate agency's chat. "
        "The messages may be in any language (English, Spanish or another). "
        "Today is {today}. Decide "
        "whether the visitor's latest message asks to schedule a call with an agent, counting a "
        "reply that gives the day or time the assistant just asked for and a request to move a "
        "call already booked to another day or time. Resolve relative dates "
        "such as 'tomorrow' or 'next Tuesday' against today's date. Set date (YYYY-MM-DD) and "
        "time (24-hour HH:MM) to when the visitor wants the call, or null when not given. "
        'Answer with JSON only: {"wants_call": true|false, "date": "YYYY-MM-DD"|null, '
        '"time": "HH:MM"|null}.'
    ),
    schema=schema_object(
        wants_call=BOOLEAN, date=nullable(f"^{DATE}$"), time=nullable(f"^{TIME}$")
    ),
)

LISTING_QUESTION = Classifier(
    name="listing_question",
    instructions=(
        "You classify messages for a real-estate agency's chat. "
        "The messages may be in any language (English, Spanish or another). "
        "Decide whether the visitor's "
        "latest message is a question about a listing or property: its price, features, "
        "location, viewing or status. Greetings, small talk, other topics and requests to "
        "talk to an agent are not. "
        'Answer with JSON only: {"is_listing_question": true|false}.'
    ),
    schema=schema_object(is_listing_question=BOOLEAN),
)

APPOINTMENT_CHANGE = Classifier(
    name="appointment_change",
    instructions=(
        "You classify messages for a real-estate agency's chat. "
        "The messages may be in any language (English, Spanish or another). "
        "Decide whether the visitor's "
        "latest message asks to cancel or to move (reschedule) a call with an agent that is "
        "already booked, counting a reply that gives the new day or time the assistant just "
        "asked for. Booking a new call is none. "
        'Answer with JSON only: {"action": "none"|"cancel"|"move"}.'
    ),
    schema=schema_object(action={"type": "string", "enum": list(CHANGE_ACTIONS)}),
)


LISTING_FACTS = Classifier(
    name="listing_facts",
    instructions=listing_classifiers.FACTS_PROMPT,
    schema=listing_classifiers.FACTS_SCHEMA,
    max_tokens=96,
)

LISTING_SEARCH = Classifier(
    name="listing_search",
    instructions=listing_classifiers.SEARCH_PROMPT,
    schema=listing_classifiers.SEARCH_SCHEMA,
    max_tokens=128,
)


def _action(data: dict) -> str:
    action = read_field(data, "action", str)
    if action not in CHANGE_ACTIONS:
        raise ClassifierOutputError(f"'action' should be one of {CHANGE_ACTIONS}, got {action!r}")
    return action


# The built-in classifiers in their default priority order (migrations 0005 and 0011 seed them
# so; the reasons are in the module's docstring). Cancel or move comes before scheduling, which
# also says yes to "move it to Friday".
CLASSIFIERS = (PRICING, APPOINTMENT_CHANGE, SCHEDULING, LISTING_FACTS, LISTING_SEARCH,
               LISTING_QUESTION)


def as_label(output: Any) -> dict:
    """The output as the JSON object stored on ClassifierCall and used as an eval label."""
    return output if isinstance(output, dict) else asdict(output)
