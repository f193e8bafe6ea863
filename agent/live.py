"""Live delivery: every open socket of a conversation joins its channel-layer group.

Frames about a conversation (its messages, the typing indicator, a failed turn) are published
to the group, so each of the visitor's tabs, and later a staff member's screen, gets them, from
whichever process stored them. A socket that is closed misses nothing for good: the frames'
messages are stored, and a reconnecting client asks for those after the last ``seq`` it holds.
"""

from channels.layers import get_channel_layer


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
