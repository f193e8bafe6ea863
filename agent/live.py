"""Live delivery: every open socket of a conversation joins its channel-layer group.

Frames about a conversation (its messages, the typing indicator, a failed turn) are published
to the group, so each of the visitor's tabs, and later a staff member's screen, gets them, from
whichever process stored them. A socket that is closed misses nothing for good: the frames'
messages are stored, and a reconnecting client asks for those after the last ``seq`` it holds.
"""

import logging

from channels.layers import get_channel_layer

from agent import metrics

# channels_redis.core logs this (at INFO) when a group message found channels over capacity.
OVER_CAPACITY = "%s of %s channels over capacity in group %s"


def conversation_group(conversation_id) -> str:
    """The channel-layer group name of a conversation (a UUID or its string)."""
    return f"chat.{conversation_id}"


async def publish(conversation_id, frame: dict) -> None:
    """Send ``frame`` (a JSON-ready dict) to every socket open on the conversation.

    The consumers' ``chat_frame`` handler writes it to the socket unchanged.
    """
    await get_channel_layer().group_send(
        conversation_group(conversation_id), {"type": "chat.frame", "frame": frame}
    )


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
