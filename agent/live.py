"""Live delivery: every open socket of a conversation joins its channel-layer group.

Frames about a conversation (its messages, the typing indicator, a failed turn) are published
to the group, so each of the visitor's tabs, and later a staff member's screen, gets them, from
whichever process stored them. A socket that is closed misses nothing for good: the frames'
messages are stored, and a reconnecting client asks for those after the last ``seq`` it holds.
"""

import asyncio
import logging
import time

from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels_redis.core import RedisChannelLayer
from redis.asyncio import BlockingConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError

from agent import metrics

logger = logging.getLogger(__name__)

# channels_redis.core logs this (at INFO) when a group message found channels over capacity.
OVER_CAPACITY = "%s of %s channels over capacity in group %s"
# Redis connections per app process, and seconds a command waits for one when all are in use.
# channels_redis's pool is redis-py's ConnectionPool, which (redis-py 8) holds 100 and fails
# the 101st command at once with MaxConnectionsError: a burst of 500 chats lost replies that
# way, and a failed receive closed every socket of the process (bench/load.py).
REDIS_POOL_SIZE = 100
REDIS_POOL_WAIT = 10.0
# Seconds a Redis command may take. redis-py 8 defaults to 5 s, the same as channels_redis's
# blocking pop (BZPOPMIN, ``brpop_timeout``): its empty answer then often comes after the
# client gave up, and the receive fails with TimeoutError, which ends that socket's consumer
# (6 of 20 idle receives within 31 s, one a pop round).
REDIS_SOCKET_TIMEOUT = 15.0


class LocalChannelLayer(InMemoryChannelLayer):
    """channels' in-memory layer (one process, no Redis: ``make run``, the benchmarks), which
    drops expired messages and group memberships at most once every ``CLEAN_SECONDS``
    rather than before every send and receive: that walk visits every channel and group, so
    its cost per frame grew with the number of open chats (2.7% of the process's CPU at 50
    chats, issue 16). Expiry (60 s for a message, a day for a membership) comes at most that
    much later. ``clock``: seconds, monotonic (injectable for tests)."""

    CLEAN_SECONDS = 1.0
    clock = staticmethod(time.monotonic)
    _cleaned_at = None

    def _clean_expired(self):
        now = self.clock()
        if self._cleaned_at is None or now - self._cleaned_at >= self.CLEAN_SECONDS:
            self._cleaned_at = now
            super()._clean_expired()

    async def group_send(self, group, message):
        """channels' ``group_send`` (a message for a full channel is dropped, as there),
        without its task per member and ``deepcopy`` of the message per member: each member
        gets a copy of the message's top level, sharing the values (a ``frame``), which no
        consumer changes and no sender changes once it is sent. Four frames a turn went
        through that machinery (issue 16).
        """
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        expires = time.time() + self.expiry  # channels' own expiry clock
        for channel in list(self.groups.get(group, ())):
            queue = self.channels.get(channel)
            if queue is None:
                queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
            try:
                queue.put_nowait((expires, dict(message)))
            except asyncio.QueueFull:
                pass


def conversation_group(conversation_id) -> str:
    """The channel-layer group name of a conversation (a UUID or its string)."""
    return f"chat.{conversation_id}"


async def publish(conversation_id, frame: dict, *more: dict) -> None:
    """Send ``frame`` (a JSON-ready dict), then each of ``more``, to every socket open on the
    conversation, in one channel-layer message (a reply and the typing indicator's end go
    together: two of a turn's four layer messages fewer, issue 16).

    The consumers' ``chat_frame`` handler (``send_frames``) writes them to the socket
    unchanged, in order. The event is ``{"type": "chat.frame", "frame": ..., "more": [...]}``;
    a consumer that knows only ``frame`` (a worker of an earlier release, during a rolling
    deploy) still sends the first.
    """
    event = {"type": "chat.frame", "frame": frame}
    if more:
        event["more"] = list(more)
    await get_channel_layer().group_send(conversation_group(conversation_id), event)


async def send_frames(consumer, event: dict) -> None:
    """Write the frames of a ``publish`` event to ``consumer``'s socket (``send_json``), in
    order."""
    await consumer.send_json(event["frame"])
    for frame in event.get("more", ()):
        await consumer.send_json(frame)


class CountDrops(logging.Filter):
    """On channels_redis's logger: count each group message it dropped on a full channel
    (``chat_channel_layer_dropped_messages_total``) and raise its INFO line to a WARNING.

    channels_redis drops such messages without an error (django/channels#1244); its log line
    is the only trace, with the number of channels over capacity as its first argument.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == OVER_CAPACITY and record.args:
            metrics.CHANNEL_DROPS.inc(int(record.args[0]))
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def count_drops() -> None:
    """Install ``CountDrops`` on channels_redis's logger (once; called by the app's ready())."""
    logger = logging.getLogger("channels_redis.core")
    if not any(isinstance(f, CountDrops) for f in logger.filters):
        logger.addFilter(CountDrops())


def busy(exc: RedisConnectionError) -> bool:
    """True when ``exc`` says every pooled connection stayed busy for ``REDIS_POOL_WAIT`` s
    (redis-py's BlockingConnectionPool raises it as a ConnectionError): Redis is slow or the
    process overloaded, not gone, so the groups are intact."""
    return str(exc) == "No connection available."


class ChannelLost(Exception):
    """The channel's group memberships may be gone: Redis failed since the channel joined."""


class ChatChannelLayer(RedisChannelLayer):
    """channels_redis's layer, which closes the sockets whose groups Redis may have lost.

    Redis keeps the groups. After a Redis restart (or failover) they are empty, yet only the
    one receive that hits the broken connection fails: the process's other sockets go on
    receiving on a fresh connection, out of every group, and miss their conversations' frames
    without an error (tests/agent/test_channel_layer.py shows it). Here any Redis connection error
    is an outage: every channel that joined a group before it fails its pending and next
    receive with ``ChannelLost``, the consumer ends, daphne closes the socket (1011), and the
    client reconnects, which joins the groups again and fetches the messages it missed. The
    pools are closed, so no stale connection is used again; a send or group change that met
    the outage is tried once more on a fresh connection.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outages = 0
        self._joined: dict[str, int] = {}  # channel -> the outage count at its first group_add
        self._outage: asyncio.Future | None = None  # resolved at the next outage

    def create_pool(self, index):
        """A pool of at most ``REDIS_POOL_SIZE`` connections to host ``index`` where a command
        waits up to ``REDIS_POOL_WAIT`` s for a free one (``BlockingConnectionPool``), instead
        of failing, and may take ``REDIS_SOCKET_TIMEOUT`` s; a host given other than by URL
        (Sentinel) keeps channels_redis's pool."""
        host = dict(self.hosts[index])
        address = host.pop("address", None)
        if address is None:
            return super().create_pool(index)
        host.setdefault("socket_timeout", REDIS_SOCKET_TIMEOUT)
        return BlockingConnectionPool.from_url(
            address, max_connections=REDIS_POOL_SIZE, timeout=REDIS_POOL_WAIT, **host
        )

    async def group_add(self, group, channel):
        await self._retried(super().group_add, group, channel)
        self._joined.setdefault(channel, self.outages)

    async def group_discard(self, group, channel):
        await self._retried(super().group_discard, group, channel)

    async def group_send(self, group, message):
        await self._retried(super().group_send, group, message)

    async def send(self, channel, message):
        await self._retried(super().send, channel, message)

    async def receive(self, channel, _again: bool = True):
        """The channel's next message (channels_redis's receive).

        Raises:
            ChannelLost: Redis failed since the channel joined a group, or fails meanwhile.
            redis.exceptions.ConnectionError: this receive met the failure, and the channel
                had joined a group before it (or a second try failed too).
        """
        if self._joined.get(channel, self.outages) != self.outages:
            del self._joined[channel]
            raise ChannelLost(channel)
        loop = asyncio.get_running_loop()
        if self._outage is None or self._outage.done() or self._outage.get_loop() is not loop:
            self._outage = loop.create_future()
        outage, seen = self._outage, self.outages
        receiving = asyncio.ensure_future(super().receive(channel))
        # Cancelled below when an outage wins the race, it may have failed already: read it.
        receiving.add_done_callback(lambda task: task.cancelled() or task.exception())
        try:
            await asyncio.wait({receiving, outage}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the consumer ended
            receiving.cancel()
            self._joined.pop(channel, None)
            raise
        if not receiving.done():
            receiving.cancel()
            self._joined.pop(channel, None)
            raise ChannelLost(channel)
        try:
            return receiving.result()
        except RedisConnectionError as exc:
            if busy(exc):
                raise
            await self._lost(seen)
            joined = self._joined.get(channel)
            if _again and joined in (None, self.outages):
                # No group joined before the outage (a socket just opening): nothing was lost.
                return await self.receive(channel, _again=False)
            self._joined.pop(channel, None)
            raise

    async def _retried(self, operation, *args):
        seen = self.outages
        try:
            return await operation(*args)
        except RedisConnectionError as exc:
            if busy(exc):
                raise
            await self._lost(seen)
            return await operation(*args)

    async def _lost(self, seen: int) -> None:
        """Count an outage, unless one was counted since ``seen``; wake every waiting receive
        and close the pools."""
        if self.outages != seen:
            return
        self.outages += 1
        metrics.CHANNEL_OUTAGES.inc()
        logger.warning("Redis connection lost: closing this process's sockets to rejoin groups")
        if self._outage is not None and not self._outage.done():
            self._outage.set_result(None)
        try:
            await self.close_pools()
        except Exception:
            logger.exception("could not close the Redis pools")
