"""The keyword rules of the LLM stand-in: answer a chat-completions request as the six
classifiers of ``agent.llm.classifiers`` would (pricing, scheduling, listing_question,
appointment_change here; listing_search and listing_facts in ``listing_rules``), plus the
date and time parsing they need.

English and the Spanish forms the demo needs (precio, cuánto cuesta, cita, llamada, mañana,
the weekdays, "a las 3"). Deterministic, instant, and wrong wherever a keyword list is: for
local runs, tests and benchmarks, never for judging the classifiers' accuracy.
``agent.llm.standin.server`` serves these answers over HTTP.
"""

import calendar
import re
from datetime import date, timedelta

from agent.llm.standin import listing_rules

# The classifiers' answers when nothing matches, in ``agent.llm.classifiers`` order.
NOTHING = {
    "pricing": {"asks_price": False, "listing_id": None},
    "scheduling": {"wants_call": False, "date": None, "time": None},
    "listing_question": {"is_listing_question": False},
    "appointment_change": {"action": "none"},
    **listing_rules.NOTHING,
}
# A field of each classifier's answer, to recognise its system prompt without a schema.
_PROMPT_FIELDS = {"asks_price": "pricing", "wants_call": "scheduling",
                  "is_listing_question": "listing_question", '"action"': "appointment_change",
                  "wants_listings": "listing_search", "about_people": "listing_facts"}

_LISTING_ID = re.compile(r"(?<!\d)\d{6}(?!\d)")
_PRICE_WORDS = re.compile(
    r"\b(price[sd]?|pricing|costs?|how much|asking|worth|want for|expensive|cheap(er|est)?|"
    r"afford(able)?|value|precios?|cu[aá]nto (cuesta|cuestan|vale|valen|piden)|cuesta|"
    r"costo|coste|caro|barat[oa])\b"
)
_CALL_WORDS = re.compile(
    r"\b(call|calls|phone|ring|schedul(e|ed|ing)|book|booking|appointment|meet|meeting|"
    r"speak|talk|viewing|visit|tour|llamada|llamar|ll[aá]m[ae]me|llamen|cita|reservar|"
    r"reserv[ae]|agendar|visita|visitar|hablar)\b|"
    r"\bsee (it|this|the (house|place|home|flat|condo))\b"
)
_CANCEL_WORDS = re.compile(
    r"\b(cancel(s|led|ling)?|call (it )?off|cancel(ar|a|e|en)|anular)\b")
_MOVE_WORDS = re.compile(
    r"\b(move|push|shift) (it|the call|my call|our call|the appointment|my appointment)\b|"
    r"\breschedul(e|ed|ing)\b|\bpostpone\b|"
    r"\b(cambiar|mover|pasar) (la|mi) (llamada|cita)\b|\breprogramar\b|\b(aplazar|posponer)\b"
)
_ASKS_MOVE = re.compile(r"\bmove your call\b|\bque la cambie\b")
_LISTING_WORDS = re.compile(
    r"\b(listings?|house|houses|home|homes|property|properties|place|apartments?|flat|condo|"
    r"bedrooms?|bathrooms?|beds?|baths?|garage|garden|yard|pool|kitchen|basement|sq ?ft|"
    r"square (feet|foot|metres|meters)|viewing|for sale|casas?|viviendas?|propiedad(es)?|"
    r"apartamentos?|pisos?|habitaci[oó]n(es)?|dormitorios?|baños?|garaje|jard[ií]n|piscina|"
    r"cocina|s[oó]tano|en venta)\b"
)
_ASKS_FOR_LISTING = re.compile(r"\b(listing (id|number)|which listing|n[uú]mero de referencia|"
                               r"qu[eé] propiedad)\b")
_ASKS_WHEN = re.compile(r"\bwhen\b|\b(what|which)\b[^.?!]*\b(day|date|time)\b|\bcu[aá]ndo\b|"
                        r"\b(qu[eé]|cu[aá]l)\b[^.?!]*\b(d[ií]a|fecha|hora|horario)\b")

_TODAY = re.compile(r"Today is [A-Za-z]+, (\d{4}-\d{2}-\d{2})")
_ISO_DATE = re.compile(r"(?<!\d)\d{4}-\d{2}-\d{2}(?!\d)")
_WEEKDAYS = [name.lower() for name in calendar.day_name]  # monday first, as date.weekday()
_WEEKDAY = re.compile(r"\b(" + "|".join(_WEEKDAYS) + r")\b")
_MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_name) if name}
_MONTHS |= {name.lower(): number for number, name in enumerate(calendar.month_abbr) if name}
_MONTHS["sept"] = 9
_MONTHS |= {name: number for number, name in enumerate(  # Spanish
    ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre",
     "octubre", "noviembre", "diciembre"), start=1)}
_MONTH = "(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_MONTH_DAY = re.compile(r"\b" + _MONTH + r"\s+(\d{1,2})(?:st|nd|rd|th)?\b")
_DAY_MONTH = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+|de\s+)?" + _MONTH + r"\b")
_DIAS = ["lunes", "martes", "mi[eé]rcoles", "jueves", "viernes", "s[aá]bado", "domingo"]
_DIA = re.compile(r"\b(" + "|".join(_DIAS) + r")\b")  # Spanish weekdays, Monday first
_MANANA = re.compile(r"(?<!la )(?<!las )\bmañana\b")  # "tomorrow"; "por la mañana" is "morning"
_A_LAS = re.compile(  # "a las 3", "a la 1", "a las 10:30", "a las 5 de la tarde"
    r"\ba (?:las|la) (\d{1,2})(?::([0-5]\d))?(?:\s*h)?(?:\s+de la (mañana|tarde|noche))?\b"
)
_TIME_12H = re.compile(r"(?<![\d:])(\d{1,2})(?::([0-5]\d))?\s*([ap])\.?m\b\.?")
_TIME_24H = re.compile(r"(?<![\d:])([01]?\d|2[0-3]):([0-5]\d)(?![\d:])")


# ---------------------------------------------------------------------------------------------
# The rules


def text_of(message: dict) -> str:
    """The text of one chat message: its ``content`` string, or its text parts joined."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part.get("text", "") for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def today_from(messages: list[dict]) -> date:
    """Today's date as the system prompt gives it ("Today is Sunday, 2026-11-22"), else the
    machine's ``date.today()``."""
    for message in messages:
        if message.get("role") == "system":
            found = _TODAY.search(text_of(message))
            if found:
                try:
                    return date.fromisoformat(found.group(1))
                except ValueError:
                    break
    return date.today()


def parse_date(text: str, today: date) -> str | None:
    """The day a message names, as ``YYYY-MM-DD``, or None.

    Tried in order: an ISO date (returned as written), "December 3" / "3rd of December" (the
    first such day from today on), "today", "day after tomorrow", "tomorrow", and a weekday
    name, bare or after "next"/"this" (its next occurrence strictly after today). In Spanish:
    "3 de diciembre", "hoy", "pasado mañana", "mañana" and the weekdays ("el jueves").
    """
    lowered = text.lower()
    found = _ISO_DATE.search(lowered)
    if found:
        return found.group(0)
    for pattern, month_group, day_group in ((_MONTH_DAY, 1, 2), (_DAY_MONTH, 2, 1)):
        found = pattern.search(lowered)
        if found:
            day = _month_day(_MONTHS[found.group(month_group)], int(found.group(day_group)), today)
            if day is not None:
                return day.isoformat()
    if re.search(r"\btoday\b", lowered):
        return today.isoformat()
    if re.search(r"\bday after tomorrow\b", lowered):
        return (today + timedelta(days=2)).isoformat()
    if re.search(r"\bhoy\b", lowered):
        return today.isoformat()
    if re.search(r"\bpasado mañana\b", lowered):
        return (today + timedelta(days=2)).isoformat()
    if re.search(r"\btomorrow\b", lowered) or _MANANA.search(lowered):
        return (today + timedelta(days=1)).isoformat()
    found = _WEEKDAY.search(lowered)
    weekday = _WEEKDAYS.index(found.group(1)) if found else None
    found = _DIA.search(lowered) if weekday is None else None
    if found:
        weekday = next(n for n, name in enumerate(_DIAS) if re.fullmatch(name, found.group(1)))
    if weekday is not None:
        ahead = (weekday - today.weekday()) % 7 or 7
        return (today + timedelta(days=ahead)).isoformat()
    return None


def _month_day(month: int, day: int, today: date) -> date | None:
    for year in (today.year, today.year + 1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            return None
        if candidate >= today:
            return candidate
    return None


def parse_time(text: str) -> str | None:
    """The time of day a message names, as 24-hour ``HH:MM``, or None.

    Understands "3pm", "3 pm", "3:30pm", "10 a.m.", "15:00", "noon" and "midnight"; in
    Spanish "a las 3" (1 to 7 o'clock alone are afternoon calls: 15:00), "a las 10:30",
    "a las 9 de la mañana", "a las 5 de la tarde" and "mediodía".
    """
    lowered = text.lower()
    found = _A_LAS.search(lowered)
    if found and 0 <= int(found.group(1)) <= 23:
        hour, part = int(found.group(1)), found.group(3)
        if hour < 12 and (part in ("tarde", "noche") or (part is None and 1 <= hour <= 7)):
            hour += 12
        return f"{hour:02d}:{found.group(2) or '00'}"
    found = _TIME_12H.search(lowered)
    if found and 1 <= int(found.group(1)) <= 12:
        hour = int(found.group(1)) % 12 + (12 if found.group(3) == "p" else 0)
        return f"{hour:02d}:{found.group(2) or '00'}"
    found = _TIME_24H.search(lowered)
    if found:
        return f"{int(found.group(1)):02d}:{found.group(2)}"
    if re.search(r"\bnoon\b|\bmidday\b|\bmediod[ií]a\b", lowered):
        return "12:00"
    if re.search(r"\bmidnight\b", lowered):
        return "00:00"
    return None


def _latest_exchange(messages: list[dict]) -> tuple[str, str]:
    """(the latest user message, the assistant message right before it or "")."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            before = messages[index - 1] if index > 0 else {}
            asked = text_of(before) if before.get("role") == "assistant" else ""
            return text_of(messages[index]), asked
    return "", ""


def pricing(latest: str, asked: str, on_screen: str | None = None) -> dict:
    """The pricing answer for the latest user message and the assistant message before it.

    Returns:
        ``{"asks_price": bool, "listing_id": "123456" | None}``; without an ID in the message,
        the listing on screen (``on_screen``), if any.
    """
    lowered = latest.lower()
    listing_id = _LISTING_ID.search(lowered)
    follow_up = listing_id is not None and _ASKS_FOR_LISTING.search(asked.lower()) is not None
    if not (_PRICE_WORDS.search(lowered) or follow_up):
        return dict(NOTHING["pricing"])
    return {"asks_price": True, "listing_id": listing_id.group(0) if listing_id else on_screen}


def scheduling(latest: str, asked: str, today: date) -> dict:
    """The scheduling answer for the latest user message and the assistant message before it.

    Returns:
        ``{"wants_call": bool, "date": "YYYY-MM-DD" | None, "time": "HH:MM" | None}``.
    """
    day, hour = parse_date(latest, today), parse_time(latest)
    follow_up = (day or hour) and _ASKS_WHEN.search(asked.lower()) is not None
    lowered = latest.lower()
    if not (_CALL_WORDS.search(lowered) or _MOVE_WORDS.search(lowered) or follow_up):
        return dict(NOTHING["scheduling"])
    return {"wants_call": True, "date": day, "time": hour}


def appointment_change(latest: str, asked: str, today: date) -> dict:
    """The appointment-change answer for the latest user message and the assistant message
    before it.

    Returns:
        ``{"action": "cancel" | "move" | "none"}``: cancel words win over move words; a day or
        time given right after the assistant asked where to move the call is a move.
    """
    lowered = latest.lower()
    if _CANCEL_WORDS.search(lowered):
        return {"action": "cancel"}
    gives_time = parse_date(latest, today) or parse_time(latest)
    if _MOVE_WORDS.search(lowered) or (gives_time and _ASKS_MOVE.search(asked.lower())):
        return {"action": "move"}
    return dict(NOTHING["appointment_change"])


def listing_question(latest: str) -> dict:
    """The listing-question answer for the latest user message.

    Returns:
        ``{"is_listing_question": bool}``: true when it names a listing id, a property word or
        a price word.
    """
    lowered = latest.lower()
    found = bool(_LISTING_ID.search(lowered) or _LISTING_WORDS.search(lowered)
                 or _PRICE_WORDS.search(lowered))
    return {"is_listing_question": found}


def detect(messages: list[dict], response_format: dict | None = None) -> str | None:
    """The classifier a request is for: the json_schema name of ``response_format``, else the
    classifier whose answer fields the system prompt mentions, else None."""
    if isinstance(response_format, dict):
        spec = response_format.get("json_schema")
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            return spec["name"]
    for message in messages:
        if message.get("role") == "system":
            prompt = text_of(message)
            for field, name in _PROMPT_FIELDS.items():
                if field in prompt:
                    return name
    return None


def classify(name: str | None, messages: list[dict], schema: dict | None = None) -> dict:
    """Answer one classifier by the rules.

    Args:
        name: "pricing", "scheduling", "listing_question", "appointment_change",
            "listing_search", "listing_facts", or anything else (unknown).
        messages: the OpenAI chat messages of the request, system prompt first.
        schema: the JSON schema of ``response_format``, if any.
    Returns:
        The answer object. With a schema it has exactly the schema's ``properties`` keys (a
        property the rules don't know is false when boolean, else null). Without one, an
        unknown ``name`` gets every known classifier's fields, all false or null.
    """
    latest, asked = _latest_exchange(messages)
    on_screen = listing_rules.on_screen(messages, text_of)
    if name == "pricing":
        answer = pricing(latest, asked, on_screen)
    elif name == "scheduling":
        answer = scheduling(latest, asked, today_from(messages))
    elif name == "listing_question":
        answer = listing_question(latest)
    elif name == "appointment_change":
        answer = appointment_change(latest, asked, today_from(messages))
    elif name == "listing_search":
        answer = listing_rules.listing_search(latest)
    elif name == "listing_facts":
        answer = listing_rules.listing_facts(latest, on_screen)
    else:
        answer = {key: value for fields in NOTHING.values() for key, value in fields.items()}
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return answer
    return {key: answer[key] if key in answer else _empty(spec)
            for key, spec in properties.items()}


def _empty(spec: object) -> bool | None:
    """False for a boolean property, None for anything else."""
    return False if isinstance(spec, dict) and spec.get("type") == "boolean" else None
