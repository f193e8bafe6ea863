"""Abuse limits of the visitor's chat socket (``agent.chat.consumer``).

* **Turns are rate-limited in LLM calls**, what they cost: a turn makes one call per enabled
  classifier. Two budgets must both have room, the connection's (``CHAT_RATE_LIMIT_CONNECTION``,
  kept in this process's memory: a connection lives in one process) and the client address's
  (``CHAT_RATE_LIMIT_IP``, kept in Redis when ``REDIS_URL`` is set, so every app process spends
  the same budget; else in memory). The ``limits`` library keeps the counts.
* **Open sockets per client address are capped** in each process (``CHAT_MAX_SOCKETS_PER_IP``);
  across processes nginx's ``limit_conn`` does it.

The strategy is limits' sliding window counter: per key, the count of the current window plus
the previous window's, weighted by the share of it still inside the sliding window. It costs two
small counters per key in Redis whatever the limit, and one Lua script call per turn; a fixed
window would let a client spend twice its budget across a window boundary, and the moving window,
exact, keeps one timestamp per LLM call (600 per address at the default) in Redis.

When Redis fails the per-address limit **fails open**: the turn is allowed, one warning is logged
per outage, ``chat_rate_limit_storage_errors_total`` counts the failures, and Redis is asked
again ``STORAGE_RETRY_SECONDS`` later (so an outage adds no wait to each turn). The connection's
limit, in memory, still holds meanwhile.
"""

import asyncio
import ipaddress
import logging
import math
import time
import weakref
from collections import Counter
from dataclasses import dataclass

import limits
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

from agent import metrics
from agent.llm.classifiers import CLASSIFIERS
from agent.models import ClassifierConfig

logger = logging.getLogger(__name__)

REDIS_TIMEOUT = 0.5  # seconds to connect to Redis or get an answer, before failing open
KEY_PREFIX = "chat-limits"  # of the rate-limit keys in Redis (the channel layer's is "chat")


def client_address(scope: dict) -> str:
    """The client address the limits count: ``scope["client"][0]``, which is the TCP peer, or
    behind ``TRUSTED_PROXIES`` proxies the address the last of them saw (``realestate.proxy``).

    An IPv6 address stands for its /64 network, the block one household or phone is given
    (RFC 6177), so rotating addresses inside it gains nothing; an IPv4-mapped IPv6 address is
    the IPv4 one. Without a client (a Unix socket without proxy headers, a test), all
    connections share ``"unknown"``; a value that is not an address counts as given (cut to
    64 characters).
    """
    client = scope.get("client")
    host = client[0] if client else None
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return str(host)[:64]
    if address.version == 6:
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


# ---- open sockets per client address, in this process

_sockets: Counter[str] = Counter()


def open_socket(address: str) -> bool:
    """Count one more open socket of ``address``, unless it already has
    ``CHAT_MAX_SOCKETS_PER_IP`` open in this process (0: no cap): then return False and count
    the refusal in ``chat_sockets_refused_total``. Pair each True with ``close_socket``."""
    cap = settings.CHAT_MAX_SOCKETS_PER_IP
    if cap and _sockets[address] >= cap:
        metrics.SOCKETS_REFUSED.inc()
        return False
    _sockets[address] += 1
    return True


def close_socket(address: str) -> None:
    """Count one socket of ``address`` closed (one that ``open_socket`` let in)."""
    _sockets[address] -= 1
    if _sockets[address] <= 0:
        del _sockets[address]


def open_sockets(address: str) -> int:
    """How many sockets of ``address`` are open in this process."""
    return _sockets[address]


# ---- what a turn costs

_classifiers_seen: int | None = None


def saw_classifiers(count: int) -> None:
    """Record how many classifiers a turn of this process just asked (``agent.chat.turn`` calls it
    as it reads them): the cost of the next turns."""
    global _classifiers_seen
    _classifiers_seen = count


async def turn_cost() -> int:
    """LLM calls the next turn will make, at least 1: the number of enabled classifiers this
    process's last turn asked, so no database query per message; before this process's first
    turn, one query counts them.

    A change in the admin is therefore charged from each process's second turn after it on.
    Retries are not counted (they are few, and capped by ``LLM_MAX_RETRIES``), and a message
    that staff answer, which makes no LLM call, costs the same: a limit to be safe, not a bill.
    A turn with no classifier enabled still costs 1 (its database work).
    """
    if _classifiers_seen is None:
        try:
            count = await database_sync_to_async(
                ClassifierConfig.objects.filter(enabled=True).count
            )()
        except DatabaseError:  # storing the message will fail too, and tell the visitor
            logger.warning("could not count the enabled classifiers", exc_info=True)
            return len(CLASSIFIERS)
        saw_classifiers(count)
    return max(1, _classifiers_seen)


# ---- rate limits


@dataclass(frozen=True)
class Refusal:
    """A turn refused by a rate limit: ``limit`` is ``"connection"`` or ``"ip"``, and
    ``retry_after`` the whole seconds (at least 1) until that budget has room for it."""

    limit: str
    retry_after: int


def seconds_until_room(
    amount: int,
    expiry: int,
    cost: int,
    window: tuple[int, float, int, float],
) -> int:
    """Whole seconds, at least 1, until a sliding window counter has room for ``cost`` more.

    Args:
        amount: the limit's amount (LLM calls per window).
        expiry: the window's length in seconds.
        cost: what the refused turn needs, at most ``amount``.
        window: ``(previous count, seconds until the previous window stops counting, current
            count, seconds until the current count expires)`` as limits'
            ``get_sliding_window`` gives it; the current window ends ``expiry`` seconds before
            its count expires, when the previous one stops counting.
    Returns:
        The wait after which limits' rule, ``floor(previous * share) + current + cost <=
        amount`` (``share`` the previous window's part still inside the sliding window), holds
        if nothing else is spent meanwhile; rounded up, so retrying then succeeds.
    """
    previous, previous_ttl, current, current_ttl = window
    room = amount - cost  # the most the weighted count may be, floored
    if current <= room:  # the previous window's weight has to fall, within this window
        wait = previous_ttl - (room - current + 1) * expiry / previous if previous else 0.0
    else:  # this window has to end, and become the previous one, and lose enough weight
        window_left = max(0.0, current_ttl - expiry)
        wait = window_left + max(0.0, expiry - (room + 1) * expiry / current)
    return max(1, math.floor(wait) + 1)


def parse_limits(value: str) -> list:
    """The ``limits.RateLimitItem`` list of a rate-limit setting; none for ``""`` or ``"off"``.

    Raises:
        ValueError: not in limits' notation (the settings check it at start-up).
    """
    if value.strip().lower() in ("", "off"):
        return []
    return limits.parse_many(value)


class TurnLimiter:
    """The rate limits on turns of one app process (and event loop).

    Args:
        connection_limits: limits' notation (``"60/minute"``, several joined by ``;``) for each
            connection, ``""`` or ``"off"`` for none; kept in memory.
        ip_limits: the same for each client address, kept in ``ip_storage``.
        ip_storage: a limits async storage supporting the sliding window counter:
            ``redis_storage(url)`` or ``MemoryStorage()``.
        close: coroutine function that closes ``ip_storage``'s connections, if it has any.
    """

    STORAGE_RETRY_SECONDS = 5.0  # after a storage failure, allow without asking for this long

    def __init__(self, connection_limits: str, ip_limits: str, ip_storage: Storage, close=None):
        self.connection_items = parse_limits(connection_limits)
        self.ip_items = parse_limits(ip_limits)
        self.connections = SlidingWindowCounterRateLimiter(MemoryStorage())
        self.addresses = SlidingWindowCounterRateLimiter(ip_storage)
        self._close = close
        self.storage_down_until = 0.0  # time.monotonic() until which the storage is not asked
        self.outage = False  # the storage failed and has not answered since

    @classmethod
    def from_settings(cls) -> "TurnLimiter":
        """The limiter of ``CHAT_RATE_LIMIT_CONNECTION`` and ``CHAT_RATE_LIMIT_IP``, the
        per-address counts in Redis at ``REDIS_URL`` when it is set."""
        if settings.REDIS_URL:
            storage, close = redis_storage(settings.REDIS_URL)
        else:
            storage, close = MemoryStorage(), None
        return cls(settings.CHAT_RATE_LIMIT_CONNECTION, settings.CHAT_RATE_LIMIT_IP, storage, close)

    async def charge(self, connection: str, address: str, cost: int) -> Refusal | None:
        """Spend ``cost`` LLM calls from the budgets of ``connection`` (any string unique to
        it) and ``address`` (``client_address``).

        Returns None when every limit had room: all are charged. Otherwise a ``Refusal``, and
        the connection's budget is not charged (with several address limits, those before
        the refusing one are). A limit smaller than ``cost`` is charged its whole amount.
        """
        key = ("connection", connection)
        for item in self.connection_items:
            spend = min(cost, item.amount)
            if not await self.connections.test(item, *key, cost=spend):
                return Refusal("connection", await self._wait(self.connections, item, key, spend))
        refusal = await self._charge_address(address, cost)
        if refusal is not None:
            return refusal
        for item in self.connection_items:  # one connection's frames come one at a time
            await self.connections.hit(item, *key, cost=min(cost, item.amount))
        return None

    async def _charge_address(self, address: str, cost: int) -> Refusal | None:
        if not self.ip_items or time.monotonic() < self.storage_down_until:
            return None
        key = ("address", address)
        try:
            for item in self.ip_items:
                spend = min(cost, item.amount)
                if not await self.addresses.hit(item, *key, cost=spend):
                    return Refusal("ip", await self._wait(self.addresses, item, key, spend))
        except (StorageError, OSError) as exc:
            self.storage_down_until = time.monotonic() + self.STORAGE_RETRY_SECONDS
            metrics.RATE_LIMIT_STORAGE_ERRORS.inc()
            if not self.outage:
                self.outage = True
                logger.warning(
                    "rate-limit storage failed, per-address limits are off until it answers: %s",
                    exc,
                )
            return None
        if self.outage:
            self.outage = False
            logger.warning("rate-limit storage answers again, per-address limits are back on")
        return None

    @staticmethod
    async def _wait(limiter, item, key: tuple[str, str], cost: int) -> int:
        window = await limiter.storage.get_sliding_window(item.key_for(*key), item.get_expiry())
        return seconds_until_room(item.amount, item.get_expiry(), cost, window)

    async def aclose(self) -> None:
        """Close the storage's connections (Redis); the limiter is not used afterwards."""
        if self._close is not None:
            await self._close()


def redis_storage(url: str):
    """limits' Redis storage at ``url`` (``redis://``, ``rediss://`` or ``unix://``) through
    redis-py's asyncio client, and a coroutine function that closes its connections.

    Connecting and each command time out after ``REDIS_TIMEOUT`` seconds, with no retry:
    a limit check must not hold a turn up (the caller fails open). Storage errors are raised
    as ``limits.errors.StorageError``.
    """
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    pool = redis.asyncio.ConnectionPool.from_url(
        url,
        socket_timeout=REDIS_TIMEOUT,
        socket_connect_timeout=REDIS_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )
    scheme = "async+redis+" if url.startswith("unix:") else "async+"
    storage = RedisStorage(
        scheme + url,
        implementation="redispy",
        wrap_exceptions=True,
        key_prefix=KEY_PREFIX,
        connection_pool=pool,
    )
    return storage, pool.disconnect


_limiters: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TurnLimiter]" = (
    weakref.WeakKeyDictionary()
)


def get_limiter() -> TurnLimiter:
    """The ``TurnLimiter`` of the running event loop (Redis connections cannot cross loops),
    made from the settings at first use."""
    loop = asyncio.get_running_loop()
    if loop not in _limiters:
        _limiters[loop] = TurnLimiter.from_settings()
    return _limiters[loop]


async def close_limiters() -> None:
    """Close the limiter of the running event loop (after each test); the next
    ``get_limiter()`` makes a new one from the settings."""
    limiter = _limiters.pop(asyncio.get_running_loop(), None)
    if limiter is not None:
        await limiter.aclose()


class TurnGate:
    """One connection's way to turns: asks the rate limits for each visitor message, and once
    refused, refuses every later message until the wait is over, without asking again. So the
    messages a client sends in a burst are refused together and none overtakes another.

    Args:
        connection: a string unique to the connection (its channel name).
        address: its client address (``client_address``).
    """

    def __init__(self, connection: str, address: str):
        self.connection = connection
        self.address = address
        self.closed_until = 0.0  # time.monotonic()
        self.closed_by = ""

    async def refusal(self) -> Refusal | None:
        """None when a turn may run now (its cost is charged), else why not and how long to
        wait; counted in ``chat_turns_rate_limited_total``."""
        left = self.closed_until - time.monotonic()
        if left > 0:
            refusal = Refusal(self.closed_by, max(1, math.ceil(left)))
        else:
            refusal = await get_limiter().charge(self.connection, self.address, await turn_cost())
            if refusal is None:
                return None
            self.closed_until = time.monotonic() + refusal.retry_after
            self.closed_by = refusal.limit
        metrics.TURNS_RATE_LIMITED.labels(limit=refusal.limit).inc()
        return refusal
