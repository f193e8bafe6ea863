"""The admin dashboard: turns per route, handoffs and their wait, turn latency and classifier
errors, leads per day and the funnel from chat to booked viewing (``agent.crm.funnel``) over
the last 24 hours and 7 days, as small server-rendered SVG charts.

``window_stats`` computes the figures with a few aggregate queries (percentiles by PostgreSQL's
``percentile_cont``); ``hbars`` and ``columns`` turn them into chart geometry for the template
``admin/agent/dashboard.html``, which draws plain ``<rect>`` and ``<text>`` elements.
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.core.exceptions import PermissionDenied
from django.db.models import Aggregate, Count, DurationField, F, FloatField, Q
from django.db.models.functions import Trunc
from django.utils import timezone
from django.views.generic import TemplateView

from agent.crm import funnel as crm_funnel
from agent.models import ClassifierCall, Handoff, Message
from agent.staff.review import route_label


class Percentile(Aggregate):
    """PostgreSQL's ``percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)``: the
    interpolated ``fraction`` quantile (0.5 is the median) of a number or an interval; null
    over no rows. ``output_field`` defaults to FloatField; give DurationField for intervals.
    """

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression, fraction: float, **extra):
        if not 0 <= fraction <= 1:
            raise ValueError(f"a percentile fraction is between 0 and 1, not {fraction!r}")
        extra.setdefault("output_field", FloatField())
        super().__init__(expression, fraction=float(fraction), **extra)


@dataclass(frozen=True)
class Window:
    """A dashboard period: its title, length, and the bucket (``hour`` or ``day``) of its
    time charts."""

    title: str
    length: timedelta
    bucket: str


WINDOWS = [
    Window("Last 24 hours", timedelta(hours=24), "hour"),
    Window("Last 7 days", timedelta(days=7), "day"),
]


@dataclass
class WindowStats:
    """The figures of one window. Latencies in milliseconds, waits in seconds; a percentile is
    None when there was nothing to measure. ``latency_by_bucket`` is a list of (bucket start in
    agency time, p50 ms, p95 ms), one per hour or day, oldest first, None where no turn ended.
    """

    window: Window
    since: datetime
    turns: int = 0
    routes: list[tuple[str, int]] = field(default_factory=list)
    latency_p50: float | None = None
    latency_p95: float | None = None
    latency_by_bucket: list[tuple[datetime, float | None, float | None]] = field(
        default_factory=list
    )
    handoffs_queued: int = 0
    handoffs_claimed: int = 0
    handoffs_waiting: int = 0
    wait_p50: float | None = None
    wait_p90: float | None = None
    classifier_calls: int = 0
    classifier_errors: int = 0
    errors_by_classifier: list[tuple[str, int, int]] = field(default_factory=list)
    leads_per_day: list[tuple[date, int]] = field(default_factory=list)
    funnel: crm_funnel.Funnel | None = None

    @property
    def error_rate(self) -> float | None:
        """Failed classifier calls over all calls, 0 to 1; None without calls."""
        return self.classifier_errors / self.classifier_calls if self.classifier_calls else None


def window_stats(window: Window, now: datetime) -> WindowStats:
    """The dashboard's figures for the ``window`` ending at ``now`` (aware datetime).

    - Turns are bot replies (assistant messages with a route); their latency is from storing the
      visitor's message to storing the reply.
    - Handoffs are those queued in the window; the wait is from queued to claimed, over those
      claimed (``handoffs_waiting`` still queued ones are not in it, so a long queue shows there).
    - A classifier call failed when it has an error (HTTP error, timeout, unparsable answer).
    - Leads per day and the funnel: ``agent.crm.funnel`` (its docstring has the steps).
    """
    since = now - window.length
    stats = WindowStats(window, since)
    replies = Message.objects.filter(
        role=Message.Role.ASSISTANT, created_at__gte=since, created_at__lt=now
    ).exclude(route="")
    by_route = replies.values("route").annotate(n=Count("id")).order_by("-n", "route")
    stats.routes = [(route_label(row["route"]), row["n"]) for row in by_route]
    stats.turns = sum(n for _, n in stats.routes)
    timed = replies.filter(latency_ms__isnull=False)
    overall = timed.aggregate(
        p50=Percentile("latency_ms", 0.5), p95=Percentile("latency_ms", 0.95)
    )
    stats.latency_p50, stats.latency_p95 = overall["p50"], overall["p95"]
    zone = timezone.get_current_timezone()
    rows = (
        timed.annotate(bucket=Trunc("created_at", window.bucket, tzinfo=zone))
        .values("bucket")
        .annotate(p50=Percentile("latency_ms", 0.5), p95=Percentile("latency_ms", 0.95))
    )
    measured = {row["bucket"]: (row["p50"], row["p95"]) for row in rows}
    stats.latency_by_bucket = [
        (start, *measured.get(start, (None, None))) for start in buckets(since, now, window.bucket)
    ]

    handoffs = Handoff.objects.filter(created_at__gte=since, created_at__lt=now)
    wait = F("claimed_at") - F("created_at")
    counts = handoffs.aggregate(
        queued=Count("id"),
        claimed=Count("id", filter=Q(claimed_at__isnull=False)),
        waiting=Count("id", filter=Q(status=Handoff.Status.QUEUED)),
        p50=Percentile(wait, 0.5, output_field=DurationField(), filter=Q(claimed_at__isnull=False)),
        p90=Percentile(wait, 0.9, output_field=DurationField(), filter=Q(claimed_at__isnull=False)),
    )
    stats.handoffs_queued = counts["queued"]
    stats.handoffs_claimed = counts["claimed"]
    stats.handoffs_waiting = counts["waiting"]
    stats.wait_p50 = counts["p50"].total_seconds() if counts["p50"] is not None else None
    stats.wait_p90 = counts["p90"].total_seconds() if counts["p90"] is not None else None

    calls = (
        ClassifierCall.objects.filter(created_at__gte=since, created_at__lt=now)
        .values("classifier")
        .annotate(n=Count("id"), errors=Count("id", filter=~Q(error="")))
        .order_by("classifier")
    )
    stats.errors_by_classifier = [(row["classifier"], row["errors"], row["n"]) for row in calls]
    stats.classifier_calls = sum(n for _, _, n in stats.errors_by_classifier)
    stats.classifier_errors = sum(e for _, e, _ in stats.errors_by_classifier)
    stats.leads_per_day = crm_funnel.leads_per_day(since, now)
    stats.funnel = crm_funnel.funnel(since, now)
    return stats


def buckets(since: datetime, now: datetime, unit: str) -> list[datetime]:
    """The starts of the hours or days (``unit``) from the one holding ``since`` to the one
    holding ``now``, in the current time zone, as ``Trunc`` computes them."""
    zone = timezone.get_current_timezone()
    if unit == "day":
        first, last = timezone.localdate(since, zone), timezone.localdate(now, zone)
        return [
            datetime.combine(first + timedelta(days=n), time(0), tzinfo=zone)
            for n in range((last - first).days + 1)
        ]
    # The local hour holding ``since``, then steps in UTC, so a DST change neither repeats nor
    # skips an hour (aware arithmetic in Python is wall-clock arithmetic).
    local = timezone.localtime(since, zone).replace(minute=0, second=0, microsecond=0)
    start = local.astimezone(UTC)
    return [
        timezone.localtime(start + timedelta(hours=n), zone)
        for n in range(int((now - start) // timedelta(hours=1)) + 1)
    ]


# --- chart geometry (pixels) --------------------------------------------------------------------

CHART_WIDTH = 420
LABEL_WIDTH = 170  # room for "Booking: slot unavailable" left of the bars
BAR_HEIGHT = 18
BAR_GAP = 6
COLUMNS_HEIGHT = 120


def hbars(items: list[tuple[str, float, str]]) -> dict:
    """A horizontal bar chart of ``(label, value, value as text)``, the longest bar for the
    largest value. Returns ``{"width", "height", "bars": [{"label", "text", "y", "text_y",
    "x", "width", "text_x"}]}`` in pixels for the template."""
    largest = max((value for _, value, _ in items), default=0) or 1
    room = CHART_WIDTH - LABEL_WIDTH - 60  # keep space for the value's text after the bar
    bars = []
    for n, (label, value, text) in enumerate(items):
        y = n * (BAR_HEIGHT + BAR_GAP)
        width = round(room * value / largest)
        bars.append({
            "label": label, "text": text, "y": y, "text_y": y + BAR_HEIGHT - 5,
            "x": LABEL_WIDTH, "width": width, "text_x": LABEL_WIDTH + width + 4,
        })
    height = max(len(bars), 1) * (BAR_HEIGHT + BAR_GAP)
    return {"width": CHART_WIDTH, "height": height, "bars": bars}


def columns(series: list[tuple[datetime, float | None, float | None]], unit: str) -> dict:
    """Paired columns per bucket (p50 and p95 turn latency), scaled to the largest p95.

    Returns ``{"width", "height", "top" (the scale's top, ms), "columns": [{"x", "y", "height",
    "width", "kind" ("p50"|"p95"), "title"}], "labels": [{"x", "text"}]}``; a bucket without
    turns has no column. Hours are labelled every 6, days each.
    """
    top = max((p95 for _, _, p95 in series if p95 is not None), default=0) or 1
    slot = CHART_WIDTH / max(len(series), 1)
    width = max(slot / 2 - 1, 1)
    bars, labels = [], []
    for n, (start, p50, p95) in enumerate(series):
        x = n * slot
        stamp = f"{start:%a %d %b}" if unit == "day" else f"{start:%H}:00"
        for offset, kind, value in ((0, "p50", p50), (width, "p95", p95)):
            if value is None:
                continue
            height = max(round(COLUMNS_HEIGHT * value / top), 1)
            bars.append({
                "x": round(x + offset, 1), "y": COLUMNS_HEIGHT - height, "height": height,
                "width": round(width, 1), "kind": kind,
                "title": f"{stamp}: {kind} {value:.0f} ms",
            })
        if unit == "day" or start.hour % 6 == 0:
            labels.append({"x": round(x, 1), "text": f"{start:%a}" if unit == "day" else stamp})
    return {
        "width": CHART_WIDTH, "height": COLUMNS_HEIGHT, "top": round(top),
        "columns": bars, "labels": labels,
    }


def seconds_text(seconds: float | None) -> str:
    """``42 s``, ``3.5 min`` or ``2.1 h``; ``—`` for None."""
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def ms_text(ms: float | None) -> str:
    """``640 ms``; ``—`` for None."""
    return "—" if ms is None else f"{ms:.0f} ms"


def chart_context(stats: WindowStats) -> dict:
    """The template's view of one window: figures as text and the charts' geometry."""
    rate = stats.error_rate
    return {
        "stats": stats,
        "latency_p50": ms_text(stats.latency_p50),
        "latency_p95": ms_text(stats.latency_p95),
        "wait_p50": seconds_text(stats.wait_p50),
        "wait_p90": seconds_text(stats.wait_p90),
        "error_rate": "—" if rate is None else f"{rate:.1%}",
        "routes_chart": hbars([(label, n, str(n)) for label, n in stats.routes]),
        "wait_chart": hbars([
            (f"wait p{p}", value or 0, seconds_text(value))
            for p, value in ((50, stats.wait_p50), (90, stats.wait_p90))
        ]),
        "errors_chart": hbars([
            (name, errors / n, f"{errors / n:.1%} ({errors}/{n})")
            for name, errors, n in stats.errors_by_classifier
        ]),
        "latency_chart": columns(stats.latency_by_bucket, stats.window.bucket),
        "leads_chart": hbars([(f"{day:%a %d %b}", n, str(n)) for day, n in stats.leads_per_day]),
        "funnel_chart": hbars([
            (label, n, f"{n} ({n / top:.0%})" if top else str(n))
            for top in [stats.funnel.conversations] for label, n in stats.funnel.steps
        ]),
    }


class DashboardView(TemplateView):
    """The dashboard page; ``ConversationAdmin.get_urls`` serves it through ``admin_view``
    (staff login) and it also needs the permission to view conversations (else 403)."""

    template_name = "admin/agent/dashboard.html"
    model_admin = None

    def get(self, request, *args, **kwargs):
        if not self.model_admin.has_view_permission(request):
            raise PermissionDenied
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        now = timezone.now()
        return {
            **super().get_context_data(**kwargs),
            **self.model_admin.admin_site.each_context(self.request),
            "title": "Chat dashboard",
            "opts": self.model_admin.model._meta,
            "now": now,
            "windows": [chart_context(window_stats(window, now)) for window in WINDOWS],
        }
