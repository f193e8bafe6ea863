"""The stand-in's keyword rules for the two listing classifiers (``listing_search``,
``listing_facts``) and the listing on the visitor's screen.

As wrong as any keyword list, and enough for ``make run`` to show the routes: towns written
with capitals after "in" ("in Port Ellis"), "under $500k", "3 bed", "2+ baths", property
types, feature words, and "this one" / "it" with the page's listing; and their Spanish
forms ("casas en Port Ellis por menos de 500.000", "3 habitaciones", "con garaje", "¿tiene
piscina?").
"""

import re

NOTHING = {
    "listing_search": {"wants_listings": False, "place": None, "min_price": None,
                       "max_price": None, "min_bedrooms": None, "min_bathrooms": None,
                       "property_type": None, "features": []},
    "listing_facts": {"asks_facts": False, "listing_id": None, "facts": [], "features": [],
                      "about_people": False},
}

_ON_SCREEN = re.compile(r"The visitor is looking at listing (\d{6})\.")
_LISTING_ID = re.compile(r"(?<!\d)\d{6}(?!\d)")
_FEATURES = {
    "garage": r"garages?|garajes?|cocheras?", "pool": r"(swimming )?pools?|piscinas?|albercas?",
    "garden": r"gardens?|yards?|jard[ií]n(es)?", "balcony": r"balcon(y|ies)|terrace|balc[oó]n",
    "fireplace": r"fireplaces?|chimeneas?", "basement": r"basements?|cellar|s[oó]tanos?",
    "waterfront": r"waterfront|on the water|water views?|frente al (agua|mar)",
    "elevator": r"elevators?|lifts?|ascensor|elevador",
    "air_conditioning": r"air[- ]?condition(ing|ed)|a/?c\b|aire acondicionado",
    "laundry_in_unit": r"laundry|washer|lavadero|lavadora",
}
_FEATURE_WORDS = {name: re.compile(rf"\b({words})") for name, words in _FEATURES.items()}
_TYPES = (("townhouse", r"town ?houses?|town ?homes?|casas? adosadas?"),
          ("condo", r"condos?|condominiums?|condominios?"),
          ("apartment", r"apartments?|flats?|apartamentos?|departamentos?|pisos?"),
          ("land", r"land|plots?|building lots?|terrenos?|parcelas?|solar(es)?"),
          ("house", r"houses?|detached|casas?"))
_TYPE_WORDS = [(name, re.compile(rf"\b({words})\b")) for name, words in _TYPES]
_HOME_WORDS = re.compile(r"\b(homes?|houses?|places?|propert(y|ies)|listings?|condos?|"
                         r"apartments?|flats?|town ?houses?|something|anything|options|casas?|"
                         r"viviendas?|propiedad(es)?|apartamentos?|pisos?|algo|opciones)\b")
_SEARCH_VERBS = re.compile(r"\b(show|find|looking for|look for|search|any|do you have|have you "
                           r"got|got any|interested in|want|need|available|for sale|buy|busco|"
                           r"buscando|buscar|mu[eé]str[ae]me|tienen|quiero|necesito|comprar|"
                           r"en venta|disponibles)\b")
_REFINE = re.compile(r"^\s*(what|how) about\b|\b(instead|only|also|and with|then)\b|"
                     r"^\s*¿?y (en|con|por|de)\b|\b(solo|también|mejor)\b")
_FACT_LIKE = re.compile(r"^\s*(does|do|is|are|has|have|how many|how big|how old|when|what year|"
                        r"where is|can i have)\b|\b(it|its|this one|this house|this place|that "
                        r"one)\b|^\s*¿?(tiene|cu[aá]nt[oa]s|cu[aá]ndo|d[oó]nde|es|est[aá]|se "
                        r"admiten|admite)\b|\b(esta|este|esa|ese)\b")
_PLACE_CAPITALS = re.compile(
    r"\b(?i:in|near|around|en|cerca de)\s+((?:[A-Z][\w'-]*)(?:\s+[A-Z][\w'-]*){0,3})"
)
_PLACE_LOWER = re.compile(
    r"\b(?:in|near|around)\s+(?!(?:a|an|the|my|your|our|it|this|that|there|town|total)\b)"
    r"([a-z][a-z'-]+(?:\s+[a-z][a-z'-]+){0,2}?)"
    r"(?=\s+(?:under|below|for|with|that|and|over|between|from|up|at|around)\b|\s*[?.!,]|\s*$)"
)
_AMOUNT = (r"\$?\s*(\d[\d,]*(?:\.\d+)?)\s*"
           r"(thousand|million|mill[oó]n(?:es)?(?: de)?|mil|k|m)?")
_MAX_PRICE = re.compile(r"\b(under|below|less than|up to|max(?:imum)?|at most|no more than|"
                        r"budget(?: of| is)?|cheaper than|por menos de|menos de|hasta|"
                        r"como m[aá]ximo|presupuesto de)\s+" + _AMOUNT)
_MIN_PRICE = re.compile(r"\b(over|above|more than|at least|from|m[aá]s de|desde|"
                        r"por encima de)\s+" + _AMOUNT)
_THOUSANDS_DOT = re.compile(r"(?<=\d)\.(?=\d{3}(?!\d))")  # "500.000", as Spanish writes it
_BETWEEN = re.compile(r"\bbetween\s+" + _AMOUNT + r"\s+and\s+" + _AMOUNT)
_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
            "una": 1, "uno": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6}
_COUNT = r"(\d+(?:\.5)?|" + "|".join(_NUMBERS) + r")\s*\+?\s*-?\s*"
_BEDS = re.compile(r"\b" + _COUNT + r"(bed|beds|bedrooms?|br|bd|habitaci[oó]n(es)?|hab|"
                   r"dormitorios?|rec[aá]maras?)\b")
_BATHS = re.compile(r"\b" + _COUNT + r"(bath|baths|bathrooms?|ba|baños?)\b")

_PEOPLE = re.compile(
    r"\b(safe|safety|unsafe|crime|criminal|dangerous|schools?|religio\w*|church(es)?|mosques?|"
    r"synagogues?|temples?|ethnic\w*|race|racial|black|white people|hispanic|latino|asian|"
    r"jewish|jews|muslims?|christians?|immigrants?|foreigners|famil(y|ies)|kids|children|"
    r"demographics?|diverse|diversity|who lives|what kind of people|neighbou?rs|seguridad|"
    r"peligros[oa]|crimen|delincuencia|escuelas?|colegios?|iglesias?|mezquitas?|sinagogas?|"
    r"[eé]tnic\w*|raza|inmigrantes?|extranjeros|familias?|niños|vecinos|diversidad|"
    r"qui[eé]n vive|qu[eé] tipo de gente)\b"
)
_FACT_WORDS = (
    ("bedrooms", r"bedrooms?|beds?"), ("bathrooms", r"bathrooms?|baths?"),
    ("area", r"sq ?ft|square (feet|foot|metres|meters)|floor area|how (big|large) is"),
    ("address", r"address|where is|located|which street"), ("year_built", r"built|how old|year"),
    ("lot", r"\blot\b|acres?|land size"), ("parking", r"parking|park\b|car spaces?"),
    ("hoa", r"hoa|condo fees?|association|dues"), ("pets", r"pets?|dogs?|cats?"),
    ("status", r"still (for sale|available)|sold|under offer|status"),
    ("open_houses", r"open house|open days?"), ("type", r"what (kind|type) of"),
    ("bedrooms", r"habitaci[oó]n(es)?|dormitorios?"), ("bathrooms", r"baños?"),
    ("area", r"metros|pies cuadrados|superficie|qu[eé] tan grande|tamaño"),
    ("address", r"direcci[oó]n|d[oó]nde est[aá]|ubicad"),
    ("year_built", r"construid|antig[uü]edad|a[ñn]o"), ("lot", r"parcela"),
    ("parking", r"estacionamiento|aparcamiento|parqueo"), ("hoa", r"cuota|comunidad"),
    ("pets", r"mascotas?|perros?|gatos?"),
    ("status", r"(sigue|est[aá]) disponible|vendid|oferta"),
    ("open_houses", r"puertas abiertas"), ("type", r"qu[eé] tipo"),
)
_FACT_PATTERNS = [(name, re.compile(rf"\b({words})")) for name, words in _FACT_WORDS]
_PRONOUN = re.compile(r"\b(it|its|this|that|here|the (house|place|home|condo|apartment|flat|"
                      r"property|listing)|esta|este|esa|ese|aquí|la (casa|propiedad|vivienda)|"
                      r"el (apartamento|condominio))\b")


def on_screen(messages: list[dict], text_of) -> str | None:
    """The listing on the visitor's screen, from the turn's system note
    (``agent.chat.turn.page_note``), or None."""
    found = None
    for message in messages:
        if message.get("role") == "system":
            match = _ON_SCREEN.search(text_of(message))
            found = match.group(1) if match else found
    return found


def _amount(number: str, unit: str | None) -> int | None:
    try:
        value = float(number.replace(",", ""))
    except ValueError:
        return None
    unit = (unit or "").removesuffix(" de").replace("ó", "o")
    unit = "million" if unit.startswith("millon") else unit
    value *= {"k": 1e3, "thousand": 1e3, "mil": 1e3, "m": 1e6, "million": 1e6}.get(unit, 1)
    return int(value) if 0 <= value <= 1e9 else None


def _count(word: str) -> float:
    return _NUMBERS.get(word) or float(word)


def criteria(latest: str) -> dict:
    """The search criteria a message gives, in the ``listing_search`` answer's fields."""
    lowered = _THOUSANDS_DOT.sub("", latest.lower())
    found = dict(NOTHING["listing_search"])
    place = _PLACE_CAPITALS.search(latest) or _PLACE_LOWER.search(lowered)
    if place:
        found["place"] = place.group(1).strip()[:60]
    between = _BETWEEN.search(lowered)
    if between:
        found["min_price"] = _amount(between.group(1), between.group(2))
        found["max_price"] = _amount(between.group(3), between.group(4))
    else:
        high = _MAX_PRICE.search(lowered)
        low = _MIN_PRICE.search(lowered)
        if high:
            found["max_price"] = _amount(high.group(2), high.group(3))
        if low and (low.group(3) or "$" in low.group(0) or _amount(low.group(2), None) >= 1000):
            found["min_price"] = _amount(low.group(2), low.group(3))
    beds, baths = _BEDS.search(lowered), _BATHS.search(lowered)
    if beds:
        found["min_bedrooms"] = int(_count(beds.group(1)))
    if baths:
        found["min_bathrooms"] = _count(baths.group(1))
    for name, pattern in _TYPE_WORDS:
        if pattern.search(lowered):
            found["property_type"] = name
            break
    found["features"] = [name for name, pattern in _FEATURE_WORDS.items()
                         if pattern.search(lowered)]
    return found


def listing_search(latest: str) -> dict:
    """The ``listing_search`` answer: yes for a search verb with a home word or a criterion,
    a refinement ("what about ...") with a criterion, or criteria alone in a message that
    is not a question about one listing; never when a 6-digit ID is named."""
    lowered = latest.lower()
    if _LISTING_ID.search(lowered) or _PEOPLE.search(lowered):
        return dict(NOTHING["listing_search"])
    found = criteria(latest)
    given = any(value not in (None, []) for key, value in found.items()
                if key != "wants_listings")
    wants = (
        (_SEARCH_VERBS.search(lowered) and (_HOME_WORDS.search(lowered) or given))
        or (_REFINE.search(lowered) and given)
        or (given and not _FACT_LIKE.search(lowered))
    )
    if not wants:
        return dict(NOTHING["listing_search"])
    return {**found, "wants_listings": True}


def listing_facts(latest: str, page_listing: str | None) -> dict:
    """The ``listing_facts`` answer: a question about people (fair housing) is flagged; a
    fact word or feature word with a listing (an ID in the message, or a pronoun with the
    page's listing) is a facts question. A search verb without an ID is a search instead."""
    lowered = latest.lower()
    answer = dict(NOTHING["listing_facts"])
    if _PEOPLE.search(lowered):
        return {**answer, "about_people": True}
    named = _LISTING_ID.search(lowered)
    meant = named or (page_listing and (_PRONOUN.search(lowered) or "?" in lowered))
    if not meant or (not named and _SEARCH_VERBS.search(lowered) and _HOME_WORDS.search(lowered)):
        return answer
    if not named and _REFINE.search(lowered):
        return answer
    features = [name for name, pattern in _FEATURE_WORDS.items() if pattern.search(lowered)]
    facts = [name for name, pattern in _FACT_PATTERNS if pattern.search(lowered)]
    if features and "features" not in facts:
        facts.append("features")
    if re.search(r"\bfeatures?\b|\bamenit", lowered) and "features" not in facts:
        facts.append("features")
    if not facts:
        return answer
    return {**answer, "asks_facts": True, "listing_id": named.group(0) if named else None,
            "facts": facts, "features": features}
