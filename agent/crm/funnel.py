"""The dashboard's lead figures: leads per day and the funnel from chat to booked viewing.

Over a period ``[since, now)``:

- **Leads per day**: leads created (``Lead.created_at``) on each day, in the current time
  zone, oldest first; a merged lead counts once, on the day of the one that survived.
- **The funnel**, each step a subset of the one before, so the bars only shrink:
  conversations started in the period in which the visitor wrote at least one message; of
  those, the ones with a lead; leads with contact details (an email or a phone); of these,
  a viewing booked (an appointment of any of its conversations, even one cancelled since,
  or the stage *viewing booked* or *won*); of these, *won*. A lead that staff marked won
  without contact or booking is not in the last step: the funnel measures what the chat led
  to, not the stage alone.

A conversation started in the period whose lead is older (a returning visitor merged into
their earlier lead) still counts: the funnel follows chats, not leads.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import Count, Exists, OuterRef, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from agent.crm.models import Lead
from agent.models import Conversation, Message
from listings.models import Appointment


@dataclass(frozen=True)
class Funnel:
    """Counts of each step (see the module docstring); ``steps`` pairs labels and counts."""

    conversations: int
    leads: int
    with_contact: int
    viewing_booked: int
    won: int

    @property
    def steps(self) -> list[tuple[str, int]]:
        """``[(label, count)]`` from conversations to won."""
        return [
            ("Conversations", self.conversations),
            ("Leads", self.leads),
            ("Leads with contact", self.with_contact),
            ("Viewing booked", self.viewing_booked),
            ("Won", self.won),
        ]


def funnel(since: datetime, now: datetime) -> Funnel:
    """The funnel of the conversations started in ``[since, now)`` (aware datetimes).

    Returns:
        A ``Funnel``; one aggregate query.
    """
    booked = Exists(Appointment.objects.filter(
        conversation__lead_link__lead=OuterRef("lead_link__lead")
    ))
    chats = (
        Conversation.objects.filter(created_at__gte=since, created_at__lt=now)
        .filter(Exists(Message.objects.filter(
            conversation=OuterRef("pk"), role=Message.Role.USER
        )))
        .annotate(booked=booked)
    )
    lead = Q(lead_link__isnull=False)
    contact = lead & (~Q(lead_link__lead__email="") | ~Q(lead_link__lead__phone=""))
    viewing = contact & (
        Q(booked=True)
        | Q(lead_link__lead__stage__in=[Lead.Stage.VIEWING_BOOKED, Lead.Stage.WON])
    )
    won = viewing & Q(lead_link__lead__stage=Lead.Stage.WON)
    counts = chats.aggregate(
        conversations=Count("pk"),
        leads=Count("pk", filter=lead),
        with_contact=Count("pk", filter=contact),
        viewing_booked=Count("pk", filter=viewing),
        won=Count("pk", filter=won),
    )
    return Funnel(**counts)


def leads_per_day(since: datetime, now: datetime) -> list[tuple[date, int]]:
    """Leads created each day from the day holding ``since`` to the day holding ``now``, in
    the current time zone, oldest first, 0 for a day without any; only leads created in
    ``[since, now)`` count.

    Returns:
        ``[(day, count)]``; one query.
    """
    zone = timezone.get_current_timezone()
    rows = (
        Lead.objects.filter(created_at__gte=since, created_at__lt=now)
        .annotate(day=TruncDate("created_at", tzinfo=zone))
        .values("day").annotate(n=Count("id"))
    )
    counted = {row["day"]: row["n"] for row in rows}
    first, last = timezone.localdate(since, zone), timezone.localdate(now, zone)
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return [(day, counted.get(day, 0)) for day in days]

