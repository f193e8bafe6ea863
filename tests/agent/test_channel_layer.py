"""The Redis channel layer: REDIS_URL switches it on, frames cross processes, drops are counted."""

import asyncio
import json
import os
import subprocess
import sys

import pytest
import redis.asyncio as redis
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer
from redis.exceptions import ConnectionError as RedisConnectionError

from agent import live, metrics
from tests import ROOT


def test_redis_url_selects_channels_redis_with_the_configured_capacity():
    code = (
        "import json; from realestate import settings as s; "
        "print(json.dumps(s.CHANNEL_LAYERS['default']))"
    )
    env = {**os.environ, "REDIS_URL": "redis://cache.internal:6379/2", "CHANNEL_CAPACITY": "500"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    layer = json.loads(done.stdout)
    assert layer["BACKEND"] == "agent.live.ChatChannelLayer"
    assert layer["CONFIG"]["hosts"] == ["redis://cache.internal:6379/2"]
    assert layer["CONFIG"]["capacity"] == 500


def test_without_redis_url_the_layer_is_in_memory(settings):
    assert "REDIS_URL" not in os.environ or not os.environ["REDIS_URL"]
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "agent.live.LocalChannelLayer"


async def test_the_in_memory_layer_cleans_expired_entries_once_a_second_not_per_frame(
    monkeypatch,
):
    now = [100.0]
    layer = live.LocalChannelLayer(expiry=60)
    layer.clock = lambda: now[0]
    walks = []
    original = InMemoryChannelLayer._clean_expired
    monkeypatch.setattr(InMemoryChannelLayer, "_clean_expired",
                        lambda self: walks.append(now[0]) or original(self))
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    for n in range(50):
        await layer.group_send("g", {"type": "chat.frame", "n": n})
    assert walks == [100.0]  # one walk for 50 frames
    assert (await layer.receive(channel))["n"] == 0  # delivered, in order
    now[0] = 101.0
    await layer.group_send("g", {"type": "chat.frame", "n": 50})
    assert walks == [100.0, 101.0]


async def test_the_in_memory_group_send_reaches_every_member_once_and_drops_on_a_full_channel(
    monkeypatch,
):
    layer = live.LocalChannelLayer(expiry=60, capacity=2)
    one, two = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", one)
    await layer.group_add("g", two)
    monkeypatch.setattr(asyncio, "create_task", None)  # no task per member (channels' way)
    for n in range(3):  # nobody reads yet: the third is dropped, as channels drops it
        await layer.group_send("g", {"type": "chat.frame", "frame": {"n": n}})
    monkeypatch.undo()
    got = {channel: [await layer.receive(channel) for _ in range(2)] for channel in (one, two)}
    assert [m["frame"]["n"] for m in got[one]] == [m["frame"]["n"] for m in got[two]] == [0, 1]
    assert got[one][0] is not got[two][0]  # each member its own message
    assert layer.channels == {}  # read empty: channels' receive dropped their queues
    with pytest.raises(TypeError):
        await layer.group_send("bad group name!", {"type": "chat.frame"})


async def test_a_group_frame_reaches_a_socket_of_another_layer_instance(redis_process):
    """Two layer instances are two app processes: one publishes, the other's channel gets it."""
    sender = RedisChannelLayer(hosts=[redis_process.url], prefix="test")
    receiver = RedisChannelLayer(hosts=[redis_process.url], prefix="test")
    channel = await receiver.new_channel()
    await receiver.group_add(live.conversation_group("c1"), channel)
    frame = {"type": "chat.frame", "frame": {"n": 1}}
    await sender.group_send(live.conversation_group("c1"), frame)
    assert await receiver.receive(channel) == frame
    await sender.close_pools()
    await receiver.close_pools()


async def test_frames_dropped_on_a_full_channel_are_counted(redis_process, caplog):
    layer = RedisChannelLayer(hosts=[redis_process.url], prefix="test", capacity=2)
    channel = await layer.new_channel()
    await layer.group_add("chat.full", channel)
    before = metrics.REGISTRY.get_sample_value("chat_channel_layer_dropped_messages_total") or 0
    for n in range(5):  # nobody reads: 2 fit, 3 are dropped
        await layer.group_send("chat.full", {"type": "chat.frame", "frame": {"n": n}})
    after = metrics.REGISTRY.get_sample_value("chat_channel_layer_dropped_messages_total")
    assert after - before == 3
    warnings = [r for r in caplog.records if r.name == "channels_redis.core"]
    assert len(warnings) == 3 and all(r.levelname == "WARNING" for r in warnings)
    await layer.close_pools()


@pytest.mark.parametrize("level", ["WARNING", "ERROR"])
def test_drops_are_counted_whatever_the_log_level(level):
    code = (
        "import django, logging; django.setup(); "
        "from agent import metrics; "
        "logging.getLogger('channels_redis.core').info(%r, 4, 9, 'chat.x'); "
        "print(metrics.REGISTRY.get_sample_value('chat_channel_layer_dropped_messages_total'))"
        % live.OVER_CAPACITY
    )
    env = {**os.environ, "LOG_LEVEL": level, "DJANGO_SETTINGS_MODULE": "realestate.settings"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.strip() == "4.0"


async def test_a_redis_restart_fails_every_waiting_receive_and_new_channels_work(redis_process):
    """channels_redis alone fails one receive; the others go on, out of their groups."""
    layer = live.ChatChannelLayer(hosts=[redis_process.url], prefix="test")
    channels = [await layer.new_channel() for _ in range(3)]
    for channel in channels:
        await layer.group_add("chat.g", channel)
    waiting = [asyncio.create_task(layer.receive(channel)) for channel in channels]
    watcher = redis.Redis.from_url(redis_process.url)
    for _ in range(500):  # until one receive blocks in Redis (the others wait on its lock)
        if (await watcher.info("clients"))["blocked_clients"]:
            break
        await asyncio.sleep(0.01)
    await watcher.aclose()
    before = metrics.REGISTRY.get_sample_value("chat_channel_layer_outages_total") or 0
    redis_process.stop()
    redis_process.start()
    results = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 10)
    assert sorted(type(r).__name__ for r in results) == sorted(
        [RedisConnectionError.__name__, "ChannelLost", "ChannelLost"]
    )
    assert metrics.REGISTRY.get_sample_value("chat_channel_layer_outages_total") == before + 1
    fresh = await layer.new_channel()
    await layer.group_add("chat.g", fresh)
    await layer.group_send("chat.g", {"type": "chat.frame", "frame": {}})
    assert await asyncio.wait_for(layer.receive(fresh), 5) == {"type": "chat.frame", "frame": {}}
    await layer.close_pools()


async def test_an_idle_layer_gets_through_a_redis_restart_on_its_first_use(redis_process):
    """Its pooled connection is dead: the group_add that meets it is tried again, fresh."""
    layer = live.ChatChannelLayer(hosts=[redis_process.url], prefix="test")
    await layer.group_add("chat.g", await layer.new_channel())  # opens a pooled connection
    redis_process.stop()
    redis_process.start()
    channel = await layer.new_channel()
    await layer.group_add("chat.g", channel)
    assert layer.outages == 1
    await layer.group_send("chat.g", {"type": "chat.frame", "frame": {}})
    assert await asyncio.wait_for(layer.receive(channel), 5) == {"type": "chat.frame", "frame": {}}
    await layer.close_pools()


async def test_a_burst_of_commands_waits_for_a_pooled_connection_instead_of_failing(
    redis_process,
):
    """redis-py's default pool fails the 101st concurrent command (MaxConnectionsError)."""
    import redis

    groups = [f"chat.burst{n}" for n in range(3 * live.REDIS_POOL_SIZE)]
    layer = live.ChatChannelLayer(hosts=[redis_process.url], prefix="test", capacity=len(groups))
    channel = await layer.new_channel()
    await asyncio.gather(*(layer.group_add(group, channel) for group in groups))
    await asyncio.gather(*(layer.group_send(group, {"type": "chat.frame", "frame": {}})
                           for group in groups))
    with redis.Redis.from_url(redis_process.url) as admin:
        clients = admin.info("clients")["connected_clients"]
    assert clients <= live.REDIS_POOL_SIZE + 1  # the layer's pool, and this client
    received = [await asyncio.wait_for(layer.receive(channel), 5) for _ in groups]
    assert len(received) == len(groups)
    await layer.close_pools()


async def test_a_redis_command_may_outlast_the_layers_blocking_pop():
    """channels_redis waits for frames with BZPOPMIN for ``brpop_timeout`` (5 s). redis-py 8's
    own socket timeout is 5 s too: the empty answer often came late, and the receive failed
    with TimeoutError, which closed that visitor's socket (6 of 20 idle receives in 31 s)."""
    layer = live.ChatChannelLayer(hosts=["redis://127.0.0.1:6399/0"], prefix="test")
    pool = layer.create_pool(0)
    assert pool.connection_kwargs["socket_timeout"] > layer.brpop_timeout
    await pool.disconnect()
