"""How many turns a process runs at once, and what a turn does while it waits for its turn.

A saturated process used to start every turn at once: the turns queued for CPU, the database
and LLM slots inside their ``TURN_BUDGET``, ran out of it, and each became an apology plus a
handoff (issue 16: a 40-second spike put hundreds of handoffs in the staff queue). Here at most
``TURN_MAX_OPEN`` turns of a process are past this gate, and the turn's budget starts when it
gets through. The default, 48, is ``LLM_MAX_IN_FLIGHT`` (288) over the six classifiers, so the
turns past the gate never wait for an LLM slot; 48 open turns cost under a second of CPU (13 ms
each), well inside the budget, and at 300 ms an answer they allow 150 turns/s, more than the
process's CPU gives (16 capped it at 50 turns/s; bench/README.md). A turn that has waited
``TURN_QUEUE_TIMEOUT`` seconds calls its ``on_busy`` (the consumer tells the visitor "busy, one
moment") and goes on waiting: its message is answered when a slot comes, with no resend.

While ``CHAT_SHED_WAITING`` turns wait (``saturated``), the chat socket refuses new
connections with HTTP 503 and nginx opens them on another worker (``agent.chat.shedding``);
the chats already open go on being served.

Measured in ``/metrics``: ``chat_turns_waiting``, ``chat_turns_shed_total``,
``chat_turn_queue_wait_seconds``, ``chat_connections_shed_total``.
"""

import asyncio
import logging
import time
from contextlib import asynccontextmanager

from django.conf import settings

from agent import metrics

logger = logging.getLogger(__name__)

_gates: "dict[tuple[asyncio.AbstractEventLoop, int], asyncio.Semaphore]" = {}
_waiting = 0  # turns of this process in turn_slot, waiting for their slot


def saturated() -> bool:
    """Whether at least ``CHAT_SHED_WAITING`` turns of this process wait for a turn slot
    (never when it is 0): the process should take no new chats."""
    bound = settings.CHAT_SHED_WAITING
    return bool(bound) and _waiting >= bound


def _gate(size: int) -> asyncio.Semaphore:
    key = (asyncio.get_running_loop(), size)
    if key not in _gates:
        _gates[key] = asyncio.Semaphore(size)
    return _gates[key]


@asynccontextmanager
async def turn_slot(on_busy=None):
    """Hold one of the process's ``TURN_MAX_OPEN`` turn slots for the block.

    Args:
        on_busy: an async callable, awaited once if the wait passes ``TURN_QUEUE_TIMEOUT``
            seconds; the wait then goes on. An error it raises is logged, not raised.
    Yields:
        The seconds this turn waited for its slot.
    """
    size = settings.TURN_MAX_OPEN
    if not size:
        yield 0.0
        return
    gate = _gate(size)
    global _waiting
    started = time.perf_counter()
    metrics.TURNS_WAITING.inc()
    _waiting += 1
    # One acquire, never cancelled by the timeout (so a slot granted at that instant is not
    # lost); cancelled only with this turn, giving back a slot it got meanwhile.
    acquire = asyncio.ensure_future(gate.acquire())
    try:
        done, _ = await asyncio.wait({acquire}, timeout=settings.TURN_QUEUE_TIMEOUT)
        if not done:
            metrics.TURNS_SHED.inc()
            if on_busy is not None:
                try:
                    await on_busy()
                except Exception:
                    logger.exception("could not tell a waiting visitor that we are busy")
        await acquire
    except BaseException:
        acquire.cancel()
        if acquire.done() and not acquire.cancelled():
            gate.release()
        raise
    finally:
        metrics.TURNS_WAITING.dec()
        _waiting -= 1
    waited = time.perf_counter() - started
    metrics.TURN_QUEUE_SECONDS.observe(waited)
    try:
        yield waited
    finally:
        gate.release()
