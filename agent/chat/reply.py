"""A turn's answer, as the router and the booking dialogue give it."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    """The router's decision: the route (an ``agent.models.Route`` value), the text to send
    the visitor, and the listing cards shown with it (``agent.chat.homes.card`` dicts)."""

    route: str
    text: str
    listings: tuple[dict, ...] = ()
