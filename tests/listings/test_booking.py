"""Booking rules: realtors' hours, days off, buffers, lead time and horizon, assignment,
daylight-saving changes, and the database's last word on double booking."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from listings import booking
from listings.agencytime import format_slot, local
from listings.booking import SlotUnavailable, book_call, nearest_free_slots, parse_slot
from listings.models import Appointment, DayOff, Listing, Realtor, WorkingHours
from listings.schedule import Schedule

NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=NY)  # a Monday, noon

pytestmark = pytest.mark.django_db


def at(day: str, clock: str) -> datetime:
    return datetime.combine(date.fromisoformat(day), time.fromisoformat(clock), tzinfo=NY)


def make_realtor(username: str, **fields) -> Realtor:
    user = get_user_model().objects.create_user(
        username, first_name=username.title(), email=f"{username}@agency.example", is_staff=True
    )
    return Realtor.objects.create(user=user, **fields)


@pytest.fixture
def anna():
    """The only realtor: default hours (Monday to Friday, 09:00-17:00), 30-minute calls."""
    return make_realtor("anna")


@pytest.mark.parametrize(
    ("starts_at", "why"),
    [
        (at("2026-11-20", "10:00"), "in the past"),
        (at("2026-11-23", "12:30"), "too soon: calls are booked at least 1 hour ahead"),
        (at("2027-01-25", "10:00"), "too far ahead: we book calls up to 60 days ahead"),
        (at("2026-11-29", "11:00"), "we don't take calls on Sundays"),
        (at("2026-11-24", "22:00"), "22:00 is outside our hours that day"),
        (at("2026-11-24", "16:45"), "16:45 is outside our hours that day"),
        (at("2026-11-24", "08:30"), "08:30 is outside our hours that day"),
    ],
)
def test_a_call_outside_the_rules_is_refused_with_the_reason(anna, starts_at, why):
    with pytest.raises(SlotUnavailable, match=why):
        book_call(starts_at, now=NOW)
    assert not Appointment.objects.exists()


def test_a_call_an_hour_ahead_and_one_at_the_horizon_are_both_booked(anna):
    book_call(at("2026-11-23", "13:00"), now=NOW)
    book_call(at("2027-01-22", "10:00"), now=NOW)  # a Friday, within 60 days
    assert Appointment.objects.count() == 2


def test_lead_time_and_horizon_come_from_settings(anna, settings):
    settings.BOOKING_LEAD_MINUTES = 180
    with pytest.raises(SlotUnavailable, match="at least 3 hours ahead"):
        book_call(at("2026-11-23", "14:30"), now=NOW)
    settings.BOOKING_HORIZON_DAYS = 2
    with pytest.raises(SlotUnavailable, match="up to 2 days ahead"):
        book_call(at("2026-11-26", "10:00"), now=NOW)


def test_a_realtors_own_weekly_hours_replace_the_agencys(anna):
    WorkingHours.objects.create(realtor=anna, weekday=5, starts=time(10), ends=time(14))
    WorkingHours.objects.create(realtor=anna, weekday=1, starts=time(9), ends=time(12))
    WorkingHours.objects.create(realtor=anna, weekday=1, starts=time(13), ends=time(15))
    assert book_call(at("2026-11-28", "10:00"), now=NOW).realtor == anna  # a Saturday
    with pytest.raises(SlotUnavailable, match="12:15 is outside"):  # lunch on Tuesday
        book_call(at("2026-11-24", "12:15"), now=NOW)
    with pytest.raises(SlotUnavailable, match="don't take calls on Mondays"):
        book_call(at("2026-11-30", "10:00"), now=NOW)
    book_call(at("2026-11-24", "14:30"), now=NOW)


def test_a_day_off_is_not_bookable_and_says_the_realtor_is_away(anna):
    DayOff.objects.create(realtor=anna, day=date(2026, 11, 25), reason="dentist")
    with pytest.raises(SlotUnavailable, match="away on Wednesday, November 25"):
        book_call(at("2026-11-25", "10:00"), now=NOW)


def test_the_call_length_is_the_realtors(anna):
    anna.call_minutes = 45
    anna.save()
    appointment = book_call(at("2026-11-24", "16:15"), now=NOW)
    assert appointment.ends_at - appointment.starts_at == timedelta(minutes=45)
    with pytest.raises(SlotUnavailable, match="outside"):  # would end at 17:15
        book_call(at("2026-11-24", "16:30"), now=NOW)


def test_the_buffer_keeps_time_free_after_each_call(anna):
    anna.buffer_minutes = 15
    anna.save()
    first = book_call(at("2026-11-24", "10:00"), now=NOW)
    assert first.blocked_until == at("2026-11-24", "10:45")
    with pytest.raises(SlotUnavailable, match="busy"):
        book_call(at("2026-11-24", "10:30"), now=NOW)
    with pytest.raises(SlotUnavailable, match="busy"):  # its own buffer runs into 10:00
        book_call(at("2026-11-24", "09:30"), now=NOW)
    book_call(at("2026-11-24", "10:45"), now=NOW)
    book_call(at("2026-11-24", "09:15"), now=NOW)


def test_the_listings_realtor_gets_the_call_when_free(anna):
    ben = make_realtor("ben")
    listing = Listing.objects.create(listing_id="123456", address="1 A St", price=1, realtor=ben)
    assert book_call(at("2026-11-24", "10:00"), now=NOW, listing=listing).realtor == ben
    second = book_call(at("2026-11-24", "10:00"), now=NOW, listing=listing)
    assert second.realtor == anna  # ben is busy, anna is free


def test_otherwise_the_realtor_with_the_fewest_calls_that_day_gets_it(anna):
    ben = make_realtor("ben")
    book_call(at("2026-11-24", "09:00"), now=NOW)  # anna (lowest id on a tie)
    assert book_call(at("2026-11-24", "11:00"), now=NOW).realtor == ben
    assert book_call(at("2026-11-24", "13:00"), now=NOW).realtor == anna


def test_an_inactive_realtor_takes_no_calls(anna):
    anna.is_active = False
    anna.save()
    with pytest.raises(SlotUnavailable, match="no realtor"):
        book_call(at("2026-11-24", "10:00"), now=NOW)


# --- the database has the last word ------------------------------------------------------------


def test_postgresql_refuses_overlapping_active_calls_of_one_realtor(anna):
    Appointment.objects.create(
        realtor=anna, starts_at=at("2026-11-24", "10:00"), ends_at=at("2026-11-24", "10:30")
    )
    with pytest.raises(IntegrityError, match="appointment_no_overlap"), transaction.atomic():
        Appointment.objects.create(
            realtor=anna, starts_at=at("2026-11-24", "10:15"), ends_at=at("2026-11-24", "10:45")
        )
    # Back to back is fine, and so is a cancelled call at the same time.
    Appointment.objects.create(
        realtor=anna, starts_at=at("2026-11-24", "10:30"), ends_at=at("2026-11-24", "11:00")
    )
    Appointment.objects.create(
        realtor=anna, starts_at=at("2026-11-24", "10:00"), ends_at=at("2026-11-24", "10:30"),
        status=Appointment.Status.CANCELLED,
    )


def test_postgresql_counts_the_buffer_as_busy(anna):
    anna.buffer_minutes = 10
    anna.save()
    Appointment.objects.create(
        realtor=anna, starts_at=at("2026-11-24", "10:00"), ends_at=at("2026-11-24", "10:30")
    )
    with pytest.raises(IntegrityError, match="appointment_no_overlap"), transaction.atomic():
        Appointment.objects.create(
            realtor=anna, starts_at=at("2026-11-24", "10:35"), ends_at=at("2026-11-24", "11:05")
        )


def test_when_the_application_check_misses_a_booking_the_constraint_refuses_it(
    anna, monkeypatch
):
    book_call(at("2026-11-24", "10:00"), now=NOW)
    # As if a concurrent booking committed between our check and our insert.
    monkeypatch.setattr(
        Schedule, "free_realtors", lambda self, starts_at, preferred=None: self.realtors
    )
    with pytest.raises(SlotUnavailable, match="booked by someone else a moment ago"):
        book_call(at("2026-11-24", "10:00"), now=NOW)
    assert Appointment.objects.count() == 1


def test_a_taken_realtor_passes_the_call_to_the_next_free_one(anna, monkeypatch):
    ben = make_realtor("ben")
    book_call(at("2026-11-24", "10:00"), now=NOW)  # anna
    monkeypatch.setattr(
        Schedule, "free_realtors", lambda self, starts_at, preferred=None: self.realtors
    )
    assert book_call(at("2026-11-24", "10:00"), now=NOW).realtor == ben


# --- daylight-saving changes (America/New_York) -------------------------------------------------


def test_a_10_oclock_call_stays_at_10_local_across_the_spring_change(anna):
    now = datetime(2027, 3, 11, 12, 0, tzinfo=NY)  # Thursday, EST
    before = book_call(at("2027-03-12", "10:00"), now=now)  # Friday, EST (UTC-5)
    after = book_call(at("2027-03-15", "10:00"), now=now)  # Monday, EDT (UTC-4)
    assert before.starts_at == datetime(2027, 3, 12, 15, 0, tzinfo=UTC)
    assert after.starts_at == datetime(2027, 3, 15, 14, 0, tzinfo=UTC)
    after.refresh_from_db()
    assert after.starts_at.astimezone(NY).strftime("%H:%M %Z") == "10:00 EDT"
    assert after.ends_at - after.starts_at == timedelta(minutes=30)


def test_a_10_oclock_call_stays_at_10_local_across_the_autumn_change(anna):
    now = datetime(2027, 11, 4, 12, 0, tzinfo=NY)  # Thursday, EDT
    before = book_call(at("2027-11-05", "10:00"), now=now)
    after = book_call(at("2027-11-08", "10:00"), now=now)
    assert before.starts_at == datetime(2027, 11, 5, 14, 0, tzinfo=UTC)
    assert after.starts_at == datetime(2027, 11, 8, 15, 0, tzinfo=UTC)
    assert format_slot(after.starts_at) == "Monday, November 8 at 10:00 EST"


@pytest.mark.parametrize(
    ("day", "utc_hour", "zone"), [("2027-03-14", 14, "EDT"), ("2027-11-07", 15, "EST")]
)
def test_on_the_day_of_the_change_itself_10_is_still_10(anna, day, utc_hour, zone):
    WorkingHours.objects.create(realtor=anna, weekday=6, starts=time(0), ends=time(23, 30))
    now = at(day, "00:00") - timedelta(days=1)
    appointment = book_call(at(day, "10:00"), now=now)
    assert appointment.starts_at.astimezone(UTC).hour == utc_hour
    assert format_slot(appointment.starts_at).endswith(f"at 10:00 {zone}")
    # The free times of that day stay on the half hour, local time.
    slots = booking.free_slots_on(date.fromisoformat(day), now=now, count=8)
    assert [f"{local(s):%H:%M}" for s in slots][:3] == ["00:00", "00:30", "01:00"]
    assert all(local(s).minute in (0, 30) for s in slots)


def test_a_time_skipped_by_the_spring_change_does_not_exist():
    with pytest.raises(SlotUnavailable, match="02:30 does not exist on 2027-03-14"):
        parse_slot("2027-03-14", "02:30")
    assert parse_slot("2027-11-07", "01:30") == datetime(2027, 11, 7, 5, 30, tzinfo=UTC)


def test_alternatives_across_the_spring_change_are_at_local_times(anna):
    now = datetime(2027, 3, 11, 12, 0, tzinfo=NY)
    slots = nearest_free_slots(at("2027-03-14", "10:00"), now=now)  # a Sunday
    assert [format_slot(s) for s in slots] == [
        "Monday, March 15 at 09:00 EDT",
        "Monday, March 15 at 09:30 EDT",
        "Monday, March 15 at 10:00 EDT",
    ]


# --- alternatives -------------------------------------------------------------------------------


def test_alternatives_are_the_three_nearest_free_times(anna):
    book_call(at("2026-11-24", "10:00"), now=NOW)
    slots = nearest_free_slots(at("2026-11-24", "10:00"), now=NOW)
    assert slots == [at("2026-11-24", "09:00"), at("2026-11-24", "09:30"),
                     at("2026-11-24", "10:30")]


def test_alternatives_respect_the_lead_time_the_horizon_and_days_off(anna):
    DayOff.objects.create(realtor=anna, day=date(2026, 11, 24))
    slots = nearest_free_slots(at("2026-11-23", "12:00"), now=NOW)  # now: too soon
    assert slots == [at("2026-11-23", "13:00"), at("2026-11-23", "13:30"),
                     at("2026-11-23", "14:00")]
    far = nearest_free_slots(at("2027-03-01", "10:00"), now=NOW)  # beyond the horizon
    assert far and max(far) <= NOW + timedelta(days=60)
    assert all(local(s).date() != date(2026, 11, 24) for s in far)


@pytest.mark.django_db(transaction=True)
def test_two_bookings_inserting_the_same_slot_at_the_same_instant_never_deadlock(
    anna, monkeypatch
):
    """Both transactions reach the INSERT together (a barrier in ``Appointment.save``), 16
    rounds. Without a lock taken first, each could find the other's uncommitted row under the
    exclusion constraint and wait for it: PostgreSQL then aborts one with a deadlock
    (SQLSTATE 40P01) instead of the constraint's 23P01, and that visitor's turn fails. A race
    on the old code: the first run of 64 rounds deadlocked in round 17, later ones did not."""
    import threading

    from django.db import connections

    real_save = Appointment.save
    barrier = threading.Barrier(2)

    def save_together(self, *args, **kwargs):
        try:  # both insert at once, unless a lock holds one back: then the other goes alone
            barrier.wait(timeout=0.1)
        except threading.BrokenBarrierError:
            pass
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Appointment, "save", save_together)
    for round_number in range(16):  # every half-hour of a Tuesday
        starts_at = at("2026-11-24", "09:00") + timedelta(minutes=30 * round_number)
        results = []

        def book(starts_at=starts_at, results=results):
            try:
                with transaction.atomic():
                    book_call(starts_at, now=NOW)
                    results.append("booked")
            except SlotUnavailable:
                results.append("unavailable")
            except Exception as exc:  # a deadlock, reported with the round
                results.append(repr(exc))
            finally:
                connections.close_all()

        threads = [threading.Thread(target=book) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        barrier.reset()
        assert sorted(results) == ["booked", "unavailable"], f"round {round_number}: {results}"
