"""The admin dashboard: turns per route, handoff waits, turn latency percentiles and classifier
error rates over the last 24 hours and 7 days, drawn as SVG, for staff only."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from agent.models import ClassifierCall, Handoff, Message, Route
from agent.staff.dashboard import WINDOWS, buckets, window_stats

pytestmark = pytest.mark.django_db

URL = "admin:agent_dashboard"
NOW = datetime(2026, 11, 20, 17, 0, tzinfo=UTC)


def reply(conversation, seq, route, latency_ms, at, errors=0, calls=3):
    """A turn answered at ``at``: the visitor message, ``calls`` classifier calls of which
    ``errors`` failed, and the reply."""
    question = Message.objects.create(
        conversation=conversation, seq=seq, role=Message.Role.USER, text="?"
    )
    for n in range(calls):
        ClassifierCall.objects.create(
            message=question, classifier=f"c{n}", model="m", latency_ms=100,
            error="timed out" if n < errors else "",
        )
    answer = Message.objects.create(
        conversation=conversation, seq=seq + 1, role=Message.Role.ASSISTANT, text="!",
        route=route, latency_ms=latency_ms,
    )
    Message.objects.filter(pk__in=[question.pk, answer.pk]).update(created_at=at)
    ClassifierCall.objects.filter(message=question).update(created_at=at)
    return question


def add_traffic(conversation, now):
    """In the 24 hours before ``now``: four turns of 100-400 ms (two price, one handoff, one
    fallback), 12 classifier calls of which 3 failed, and three handoffs claimed after 1, 2 and
    3 minutes plus one still queued. Three days before: a 5 s booking turn and one claimed
    handoff."""
    hour = timedelta(hours=1)
    for n, (route, ms, errors) in enumerate(
        [(Route.PRICE, 100, 0), (Route.PRICE, 200, 0), (Route.HANDOFF, 300, 1),
         (Route.FALLBACK, 400, 2)]
    ):
        reply(conversation, 2 * n + 1, route, ms, now - (n + 1) * hour, errors=errors)
    reply(conversation, 9, Route.BOOKING, 5000, now - timedelta(days=3))
    for minutes, queued_at in [(1, now - 2 * hour), (2, now - 3 * hour), (3, now - 4 * hour),
                               (None, now - hour), (4, now - timedelta(days=3))]:
        handoff = Handoff.objects.create(conversation=conversation, reason="r")
        claimed = None if minutes is None else queued_at + timedelta(minutes=minutes)
        Handoff.objects.filter(pk=handoff.pk).update(
            created_at=queued_at, claimed_at=claimed,
            status=Handoff.Status.QUEUED if claimed is None else Handoff.Status.CLAIMED,
        )


@pytest.fixture
def traffic(conversation):
    """``add_traffic`` before ``NOW``, a fixed instant."""
    add_traffic(conversation, NOW)


def test_the_last_24_hours(traffic):
    stats = window_stats(WINDOWS[0], NOW)
    assert stats.turns == 4
    assert stats.routes == [("Price given", 2), ("Fallback to a human", 1),
                            ("Listing question handed off", 1)]
    # percentile_cont interpolates: p50 of 100..400 is 250, p95 is 100 + 0.95 * 3 * 100.
    assert stats.latency_p50 == 250
    assert stats.latency_p95 == pytest.approx(385)
    assert (stats.handoffs_queued, stats.handoffs_claimed, stats.handoffs_waiting) == (4, 3, 1)
    assert stats.wait_p50 == 120
    assert stats.wait_p90 == pytest.approx(168)
    assert (stats.classifier_errors, stats.classifier_calls) == (3, 12)
    assert stats.error_rate == 0.25
    assert stats.errors_by_classifier == [("c0", 2, 4), ("c1", 1, 4), ("c2", 0, 4)]


def test_the_last_7_days_include_older_traffic(traffic):
    stats = window_stats(WINDOWS[1], NOW)
    assert stats.turns == 5
    assert ("Call booked", 1) in stats.routes
    assert stats.latency_p95 == pytest.approx(4080)  # 400 + 0.8 * (5000 - 400)
    assert (stats.handoffs_queued, stats.handoffs_claimed) == (5, 4)
    assert (stats.classifier_errors, stats.classifier_calls) == (3, 15)


def test_latency_is_bucketed_by_agency_hour_and_day(traffic):
    with timezone.override("America/New_York"):
        hourly = window_stats(WINDOWS[0], NOW).latency_by_bucket
        daily = window_stats(WINDOWS[1], NOW).latency_by_bucket
    assert len(hourly) == 25  # the partial hours at both ends
    measured = [(f"{start:%H}", p50) for start, p50, _ in hourly if p50 is not None]
    assert measured == [("08", 400), ("09", 300), ("10", 200), ("11", 100)]
    assert len(daily) == 8
    assert [(f"{start:%m-%d}", p50) for start, p50, _ in daily if p50 is not None] == [
        ("11-17", 5000), ("11-20", 250)
    ]


def test_day_buckets_start_at_local_midnight_across_a_dst_change():
    with timezone.override("America/New_York"):
        days = buckets(datetime(2026, 10, 30, 12, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC),
                       "day")
        hours = buckets(datetime(2026, 11, 1, 4, tzinfo=UTC), datetime(2026, 11, 1, 8, tzinfo=UTC),
                        "hour")
    assert [f"{d:%m-%d %H:%M}" for d in days] == [
        "10-30 00:00", "10-31 00:00", "11-01 00:00", "11-02 00:00"
    ]
    # 1 November 2026: clocks go back at 2:00, so 1:00 comes twice.
    assert [f"{h:%H:%M%z}" for h in hours] == [
        "00:00-0400", "01:00-0400", "01:00-0500", "02:00-0500", "03:00-0500"
    ]


def test_the_page_draws_the_figures_as_svg(admin_client, conversation):
    add_traffic(conversation, timezone.now())
    response = admin_client.get(reverse(URL))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Last 24 hours" in page and "Last 7 days" in page
    assert page.count('<svg class="chart"') == 12  # six charts per window
    assert "<title>Price given: 2</title>" in page
    assert "25.0% of 12 calls" in page
    assert "wait p90" in page
    assert 'href="/admin/agent/conversation/"' in page  # the admin's breadcrumbs


def test_the_page_renders_without_any_traffic(admin_client):
    page = admin_client.get(reverse(URL)).content.decode()
    assert "nothing in this period" in page


def test_the_conversation_list_links_to_the_dashboard(admin_client):
    page = admin_client.get(reverse("admin:agent_conversation_changelist")).content.decode()
    assert f'href="{reverse(URL)}"' in page


def test_a_visitor_is_sent_to_the_login(client):
    client.force_login(get_user_model().objects.create_user("visitor"))
    response = client.get(reverse(URL))
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


def test_staff_without_the_view_permission_are_refused(client):
    staff = get_user_model().objects.create_user("clerk", is_staff=True)
    client.force_login(staff)
    assert client.get(reverse(URL)).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_conversation"))
    assert client.get(reverse(URL)).status_code == 200

