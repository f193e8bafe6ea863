"""The realtors' schedule over a stretch of time, read from the database in a few queries:
their hours, days off and active calls, and from them who is free when (``Schedule``).

The booking rules (``listings.booking``) decide with it; the rules themselves are in that
module's docstring. All arithmetic is on UTC datetimes, as there.
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db.models import Prefetch
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from listings.agencytime import (
    agency_zone,
    format_day,
    format_slot,
    local,
    local_midnight,
)
from listings.models import Appointment, DayOff, Realtor, WorkingHours

ACTIVE = (Appointment.Status.BOOKED, Appointment.Status.CONFIRMED)  # calls that take a time
SLOT_STEP = timedelta(minutes=30)  # alternatives start on this grid from each opening time
WEEKDAYS_PLURAL = (  # "we don't take calls on Saturdays"
    gettext_noop("Mondays"), gettext_noop("Tuesdays"), gettext_noop("Wednesdays"),
    gettext_noop("Thursdays"), gettext_noop("Fridays"), gettext_noop("Saturdays"),
    gettext_noop("Sundays"),
)


@dataclass
class Schedule:
    """The realtors' hours, days off and busy times over a stretch of time, read once.

    ``busy`` maps a realtor id to the ``(starts_at, blocked_until)`` UTC pairs of their active
    calls; ``calls`` maps ``(realtor id, local date)`` to the number of active calls that day.
    """

    realtors: list[Realtor]
    busy: dict[int, list[tuple[datetime, datetime]]] = field(default_factory=dict)
    calls: dict[tuple[int, date], int] = field(default_factory=dict)

    def shifts(self, realtor: Realtor, day: date) -> list[tuple[datetime, datetime]]:
        """The realtor's working stretches on an agency-local day, as UTC (start, end) pairs;
        empty on a day off or a day they don't work."""
        if any(off.day == day for off in realtor.days_off.all()):
            return []
        rows = list(realtor.hours.all())
        if rows:
            spans = [(r.starts, r.ends) for r in rows if r.weekday == day.weekday()]
        elif day.weekday() in settings.BUSINESS_DAYS:
            spans = [settings.BUSINESS_HOURS]
        else:
            spans = []
        zone = agency_zone()
        return [
            (
                datetime.combine(day, opens, tzinfo=zone).astimezone(UTC),
                datetime.combine(day, closes, tzinfo=zone).astimezone(UTC),
            )
            for opens, closes in spans
        ]

    def works(self, realtor: Realtor, starts_at: datetime) -> bool:
        """Whether a call of the realtor's length starting then lies inside their hours."""
        ends_at = starts_at + timedelta(minutes=realtor.call_minutes)
        return any(
            opens <= starts_at and ends_at <= closes
            for opens, closes in self.shifts(realtor, local(starts_at).date())
        )

    def is_free(self, realtor: Realtor, starts_at: datetime) -> bool:
        """Whether the realtor works then and the call, with its buffer, overlaps none of
        their active calls."""
        if not self.works(realtor, starts_at):
            return False
        blocked_until = starts_at + timedelta(
            minutes=realtor.call_minutes + realtor.buffer_minutes
        )
        return all(
            not (start < blocked_until and starts_at < until)
            for start, until in self.busy.get(realtor.pk, [])
        )

    def free_realtors(self, starts_at: datetime, preferred: Realtor | None = None) -> list:
        """The realtors free for a call starting then, in the order to try them: ``preferred``
        first, then fewest calls that day, then lowest id."""
        day = local(starts_at).date()
        free = [r for r in self.realtors if self.is_free(r, starts_at)]
        return sorted(
            free,
            key=lambda r: (
                preferred is None or r.pk != preferred.pk,
                self.calls.get((r.pk, day), 0),
                r.pk,
            ),
        )

    def why_not(self, starts_at: datetime) -> str:
        """Why no realtor can take a call starting then, in words for the visitor (in the
        active language)."""
        moment = local(starts_at)
        if not self.realtors:
            return _("no realtor takes calls at the moment")
        if not any(self.shifts(r, moment.date()) for r in self.realtors):
            if all(not _works_weekday(r, moment.weekday()) for r in self.realtors):
                return _("we don't take calls on %(days)s") % {
                    "days": _(WEEKDAYS_PLURAL[moment.weekday()])}
            return _("our realtors are away on %(day)s") % {"day": format_day(starts_at)}
        if not any(self.works(r, starts_at) for r in self.realtors):
            return _("%(clock)s is outside our hours that day") % {"clock": f"{moment:%H:%M}"}
        return _("all our realtors are busy at %(when)s") % {"when": format_slot(starts_at)}

    def slots(self, start: datetime, end: datetime) -> list[datetime]:
        """Every free call start in ``[start, end]`` on the ``SLOT_STEP`` grid from each
        opening time, in order, without duplicates."""
        found = set()
        day = local(start).date()
        while local_midnight(day) <= end:
            for realtor in self.realtors:
                for opens, closes in self.shifts(realtor, day):
                    moment = opens
                    length = timedelta(minutes=realtor.call_minutes)
                    while moment + length <= closes:
                        if start <= moment <= end and self.is_free(realtor, moment):
                            found.add(moment)
                        moment += SLOT_STEP
            day += timedelta(days=1)
        return sorted(found)


def _works_weekday(realtor: Realtor, weekday: int) -> bool:
    rows = list(realtor.hours.all())
    if rows:
        return any(r.weekday == weekday for r in rows)
    return weekday in settings.BUSINESS_DAYS


def load_schedule(start: datetime, end: datetime, *, ignore: Appointment | None = None) -> Schedule:
    """Read the active realtors with their hours and days off, and their active calls that
    touch the agency-local days from ``start`` to ``end``.

    Args:
        start, end: aware datetimes.
        ignore: an appointment to leave out (the one being moved).
    """
    first = local_midnight(local(start).date())
    last = local_midnight(local(end).date() + timedelta(days=1))
    realtors = list(
        Realtor.objects.filter(is_active=True)
        .select_related("user")
        .prefetch_related(
            Prefetch("hours", queryset=WorkingHours.objects.order_by("weekday", "starts")),
            Prefetch("days_off", queryset=DayOff.objects.filter(day__gte=local(first).date())),
        )
        .order_by("pk")
    )
    schedule = Schedule(realtors)
    appointments = Appointment.objects.filter(
        status__in=ACTIVE, starts_at__lt=last, blocked_until__gt=first - timedelta(days=1)
    )
    if ignore is not None:
        appointments = appointments.exclude(pk=ignore.pk)
    for realtor_id, starts_at, blocked_until in appointments.values_list(
        "realtor_id", "starts_at", "blocked_until"
    ):
        schedule.busy.setdefault(realtor_id, []).append((starts_at, blocked_until))
        key = (realtor_id, local(starts_at).date())
        schedule.calls[key] = schedule.calls.get(key, 0) + 1
    return schedule
