"""A turn's answer, as the router and the booking dialogue give it."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    """The router's decision: the route (an ``agent.models.Route`` value) and the text to send
    the visitor."""

    route: str
    text: str
