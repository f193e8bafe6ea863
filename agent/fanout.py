"""Ask every classifier at once: one round of small parallel LLM calls per turn."""

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.conf import settings

from agent.classifiers import CLASSIFIERS, Classifier, ClassifierOutputError
from agent.llm import LLMClient, LLMError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What one classifier said in one turn.

    ``output`` is the typed answer (``Pricing``, ``Scheduling``, ...) or None when the call
    failed, in which case ``error`` says why; ``raw`` is the model's text or the error body;
    ``latency_ms`` is the call's wall time in milliseconds.
    """

    classifier: str
    model: str
    output: Any
    raw: str
    latency_ms: int
    error: str = ""


async def classify(
    client: LLMClient, classifier: Classifier, model: str, history: list[dict], today: date
) -> Outcome:
    """Ask one classifier; never raises for an LLM failure, which is returned in ``error``."""
    started = time.perf_counter()
    output, raw, error = None, "", ""
    try:
        data, raw = await client.complete_json(classifier.request_body(model, history, today))
        output = classifier.parse(data)
    except LLMError as exc:
        raw, error = exc.raw, str(exc)
    except ClassifierOutputError as exc:
        error = f"unexpected answer: {exc}"
    if error:
        logger.warning("classifier %s failed: %s", classifier.name, error)
    latency_ms = round((time.perf_counter() - started) * 1000)
    return Outcome(classifier.name, model, output, raw, latency_ms, error)


async def fan_out(
    client: LLMClient,
    history: list[dict],
    today: date,
    classifiers: tuple[Classifier, ...] = CLASSIFIERS,
) -> list[Outcome]:
    """Send every classifier's request concurrently and wait for all of them.

    Args:
        client: the shared LLM client.
        history: OpenAI chat messages, oldest first, ending with the visitor's message.
        today: the agency's current date, for relative dates.
        classifiers: which to ask, in the router's priority order.
    Returns:
        One ``Outcome`` per classifier, in the order given. A failed call is an outcome with
        ``output=None``, so one failure never sinks the others.
    """
    models = settings.CLASSIFIER_MODELS
    return list(
        await asyncio.gather(
            *(
                classify(client, c, models.get(c.name, settings.LLM_MODEL), history, today)
                for c in classifiers
            )
        )
    )
