"""Ask every classifier at once, within one deadline per turn, and stop as soon as the route is
known.

- **One deadline.** A turn has ``TURN_BUDGET`` seconds. Each call's timeout is what is left of
  it, and a retry is made only if its wait fits in what is left, so retries never stack up past
  the budget. At the deadline the calls still running are closed and logged as timed out.
- **Retries.** Connection errors, cut streams, 429 and 5xx are retried at most
  ``LLM_MAX_RETRIES`` times, after ``BACKOFF`` × 2^n seconds with jitter (×0.5 to ×1.5), or
  after the server's Retry-After when it gives one; a Retry-After that does not fit in the
  budget ends the call at once. Other 4xx and bad answers are never retried.
- **Slots.** At most ``max_in_flight`` calls per server are in flight from this process; the
  time a call waited for its slot is logged.
- **Early exit.** The router acts on the first classifier, in priority order, that says "yes".
  As soon as no pending call can change that choice, the others are cancelled: their streamed
  responses are closed, so the server sees the disconnect and stops generating. They are
  logged as cancelled, not as errors.
"""

import asyncio
import logging
import random
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.conf import settings

from agent.llm.classifiers import (
    PARSERS,
    Classifier,
    ClassifierOutputError,
    decides,
    history_json,
)
from agent.llm.client import LLMClient, LLMError, default_server

logger = logging.getLogger(__name__)

BACKOFF = 0.1  # seconds before the first retry; doubled for each further one
MIN_ATTEMPT = 0.05  # seconds: a retry that would leave less than this is not made


@dataclass(frozen=True)
class Outcome:
    """What one classifier said in one turn.

    ``output`` is the typed answer (``Pricing``, ``Scheduling``, ...) or None when the call did
    not give one, in which case ``error`` says why (empty for a cancelled call); ``raw`` is the
    model's text or the error body. ``status`` is "ok", "error", "timeout" or "cancelled".
    ``latency_ms`` is the call's wall time, ``wait_ms`` the part spent waiting for a server
    slot (milliseconds); ``retries`` counts the attempts after the first; ``version`` is the
    classifier's version (0 for the built-in defaults); ``sent`` is False when the call never
    got a slot of its server, so no request left this process.
    """

    classifier: str
    model: str
    output: Any
    raw: str
    latency_ms: int
    error: str = ""
    status: str = "ok"
    retries: int = 0
    wait_ms: int = 0
    version: int = 0
    sent: bool = True  # False: it never got a slot of its server (our overload, not the LLM's)


class _Call:
    """One classifier's call in a turn, attempts and retries included, as it goes."""

    def __init__(self, classifier: Classifier):
        self.classifier = classifier
        self.model = classifier.model or settings.CLASSIFIER_MODELS.get(
            classifier.name, settings.LLM_MODEL
        )
        self.server = classifier.server or default_server()
        self.output, self.raw, self.error, self.status = None, "", "", ""
        self.retries = 0
        self.sent = False  # got a slot at least once
        self.done = False  # finished by itself, not cancelled
        self.wait = 0.0  # seconds
        self.started = self.ended = 0.0

    def body(
        self, history: list[dict], serialized: bytes, today: date, layout: str
    ) -> dict | bytes:
        """The request body for ``LLMClient.complete_json``: serialized from its parts for an
        OpenAI-style server (``Classifier.request_json``, ``serialized`` being
        ``history_json(history)``), a dict for the others."""
        if self.server.api_style == "openai":
            return self.classifier.request_json(self.model, serialized, today, layout)
        return self.classifier.request_body(self.model, history, today, layout)

    async def run(self, client: LLMClient, body: dict | bytes, deadline: float) -> None:
        """Make attempts until one answers, one fails for good, or no retry fits; the result
        is left in ``output``/``error``/``status``. Never raises for an LLM failure."""
        loop = asyncio.get_running_loop()
        self.started = loop.time()
        try:
            await self._attempts(client, body, deadline)
            self.done = True
        finally:
            self.ended = loop.time()

    async def _attempts(self, client: LLMClient, body: dict | bytes, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                slot = client.slot(self.server)
                asked = loop.time()
                async with slot:
                    self.sent = True
                    self.wait += loop.time() - asked
                    # The deadline cancels a call still reading at it (``fan_out``), so
                    # only the connect is timed by the client.
                    data, self.raw = await client.complete_json(
                        self.server,
                        body,
                        timeout=max(deadline - loop.time(), 0.001),
                        timed_reads=False,
                    )
                self.output, self.status, self.error = self.classifier.parse(data), "ok", ""
                return
            except ClassifierOutputError as exc:
                self.error, self.status = f"unexpected answer: {exc}", "error"
                return
            except LLMError as exc:
                self.raw, self.error = exc.raw, str(exc)
                self.status = "timeout" if exc.timeout else "error"
                delay = self._retry_delay(exc, deadline - loop.time())
                if delay is None:
                    return
            await asyncio.sleep(delay)
            self.retries += 1

    def _retry_delay(self, exc: LLMError, left: float) -> float | None:
        """Seconds to wait before retrying, or None when the call should end now."""
        if exc.permanent or self.retries >= settings.LLM_MAX_RETRIES:
            return None
        if exc.retry_after is not None:
            if exc.retry_after + MIN_ATTEMPT > left:
                self.error += f"; Retry-After {exc.retry_after:g} s does not fit the turn budget"
                return None
            return exc.retry_after
        delay = BACKOFF * 2**self.retries * random.uniform(0.5, 1.5)
        return delay if delay + MIN_ATTEMPT <= left else None

    def outcome(self, ended: float) -> Outcome:
        """The call's ``Outcome``; ``ended`` is the loop time it was cancelled, if it was."""
        return Outcome(
            classifier=self.classifier.name,
            model=self.model,
            output=self.output,
            raw=self.raw,
            latency_ms=round(((self.ended or ended) - self.started) * 1000),
            error=self.error,
            status=self.status,
            retries=self.retries,
            wait_ms=round(self.wait * 1000),
            version=self.classifier.version,
            sent=self.sent,
        )


def route_decided(calls: list[_Call]) -> bool:
    """Whether no pending call can change the router's choice.

    The router acts on the first classifier, in priority order, whose answer ``decides``; so
    the choice is known once one has, and every routed classifier before it has finished.
    Classifiers the router does not read never hold it up.
    """
    for call in calls:
        if call.classifier.name not in PARSERS:
            continue
        if not call.done:
            return False
        if decides(call.output):
            return True
    return True


async def fan_out(
    client: LLMClient,
    classifiers: list[Classifier],
    history: list[dict],
    today: date,
    deadline: float | None = None,
) -> list[Outcome]:
    """Send every classifier's request at once; return as soon as the route is known.

    Args:
        client: the shared LLM client.
        classifiers: which to ask, in the router's priority order.
        history: OpenAI chat messages, oldest first, ending with the visitor's message.
        today: the agency's current date, for relative dates.
        deadline: the event loop's ``time()`` by which to return; default ``TURN_BUDGET``
            seconds from now.
    Returns:
        One ``Outcome`` per classifier, in the order given. Calls still running when the route
        was known are "cancelled", those still running at the deadline "timeout". A failure
        never sinks the others.
    """
    loop = asyncio.get_running_loop()
    if deadline is None:
        deadline = loop.time() + settings.TURN_BUDGET
    calls = [_Call(c) for c in classifiers]
    layout, serialized = settings.LLM_PROMPT_LAYOUT, history_json(history)  # once per turn
    tasks = {
        asyncio.create_task(
            call.run(client, call.body(history, serialized, today, layout), deadline)
        ): call
        for call in calls
    }
    pending = set(tasks)
    try:
        while pending and not route_decided(calls):
            left = deadline - loop.time()
            if left <= 0:
                break
            _, pending = await asyncio.wait(
                pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)  # closes their streams
    ended = loop.time()
    decided = route_decided(calls)
    for task in pending:
        call = tasks[task]
        if decided:
            call.status, call.error = "cancelled", ""
        else:
            call.status = "timeout"
            call.error = f"no answer within the turn budget ({settings.TURN_BUDGET:g} s)" + (
                f"; last error: {call.error}" if call.error else ""
            )
    outcomes = [call.outcome(ended) for call in calls]
    for o in outcomes:
        if o.status in ("error", "timeout"):
            logger.warning("classifier %s %s: %s", o.classifier, o.status, o.error)
    return outcomes
