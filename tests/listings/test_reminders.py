"""Reminders: the visitor 24 hours and 1 hour before a call (frozen clock, both 2027
daylight-saving changes), each once even with two workers claiming at the same instant, and
the realtor's morning agenda."""

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connections

from listings import reminders
from listings.models import Appointment, Realtor

NY = ZoneInfo("America/New_York")


def make_realtor(username: str = "anna") -> Realtor:
    user = get_user_model().objects.create_user(
        username, first_name=username.title(), email=f"{username}@agency.example"
    )
    return Realtor.objects.create(user=user)


def make_call(realtor, starts_at: datetime, *, booked_at: datetime, email="vera@example.com"):
    call = Appointment.objects.create(
        realtor=realtor, starts_at=starts_at, ends_at=starts_at + timedelta(minutes=30),
        visitor_name="Vera", visitor_email=email,
    )
    Appointment.objects.filter(pk=call.pk).update(created_at=booked_at)
    return call


def reminder_ticks(start: datetime, end: datetime, step=timedelta(minutes=5)):
    """Run the reminders at every tick from ``start`` to ``end``; the ticks at which a
    reminder went out, with its subject."""
    seen = []
    tick = start.astimezone(UTC)  # in UTC: steps of real time, whatever the clocks do
    while tick <= end:
        mail.outbox.clear()
        reminders.send_reminders(tick)
        seen += [(tick, m.subject) for m in mail.outbox]
        tick += step
    return seen


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("call_local", "day_before_local"),
    [
        # Clocks go forward at 02:00 on 2027-03-14: the call is in EDT, the day before in EST.
        (datetime(2027, 3, 14, 10, 0, tzinfo=NY), datetime(2027, 3, 13, 10, 0, tzinfo=NY)),
        # Clocks go back at 02:00 on 2027-11-07: the call is in EST, the day before in EDT.
        (datetime(2027, 11, 7, 10, 0, tzinfo=NY), datetime(2027, 11, 6, 10, 0, tzinfo=NY)),
    ],
)
def test_reminders_go_out_24_hours_and_1_hour_before_across_a_clock_change(
    call_local, day_before_local
):
    call = make_call(make_realtor(), call_local, booked_at=call_local - timedelta(days=5))
    seen = reminder_ticks(call_local - timedelta(hours=26), call_local + timedelta(minutes=5))
    start = call_local.astimezone(UTC)
    assert [tick for tick, _ in seen] == [day_before_local, start - timedelta(hours=1)]
    # The 1 hour one at 09:00 local on the morning of the change, not 08:00 or 10:00.
    assert seen[1][0].astimezone(NY).replace(tzinfo=None) == datetime(2027, 1, 1, 9).replace(
        year=call_local.year, month=call_local.month, day=call_local.day)
    # The 24 hour one at 10:00 local the day before (issue 17: 10:00 local minus the lead,
    # not an hour off): 23 real hours before in March, 25 in November.
    assert seen[0][0] == day_before_local
    assert start - seen[0][0] == timedelta(hours=23 if call_local.month == 3 else 25)
    assert all("Reminder: your call with Anna" in subject for _, subject in seen)
    call.refresh_from_db()
    assert call.reminded_24h_at == seen[0][0] and call.reminded_1h_at == seen[1][0]


@pytest.mark.django_db
def test_a_reminder_is_not_sent_for_a_call_booked_after_its_moment_nor_without_an_email():
    realtor = make_realtor()
    starts = datetime(2027, 3, 16, 10, 0, tzinfo=NY)
    make_call(realtor, starts, booked_at=starts - timedelta(hours=3))  # after its 24 h moment
    make_call(realtor, starts + timedelta(hours=2), booked_at=starts - timedelta(days=3),
              email="")
    seen = reminder_ticks(starts - timedelta(hours=25), starts)
    assert [tick for tick, _ in seen] == [starts - timedelta(hours=1)]  # the 1 hour one only


@pytest.mark.django_db
def test_a_missed_24_hour_reminder_gives_way_to_the_1_hour_one():
    """Workers down for a day: at 30 minutes before, only the 1 hour reminder goes out."""
    starts = datetime(2027, 3, 16, 10, 0, tzinfo=NY)
    make_call(make_realtor(), starts, booked_at=starts - timedelta(days=3))
    assert reminders.send_reminders(starts - timedelta(minutes=30)) == 1
    assert "Reminder" in mail.outbox[0].subject and "in 1 hour" in mail.outbox[0].body
    assert reminders.send_reminders(starts - timedelta(minutes=29)) == 0


@pytest.mark.django_db
def test_a_reminder_carries_the_signed_link_and_a_cancelled_call_gets_none():
    realtor = make_realtor()
    starts = datetime(2027, 3, 16, 10, 0, tzinfo=NY)
    make_call(realtor, starts, booked_at=starts - timedelta(days=3))
    gone = make_call(realtor, starts + timedelta(hours=2), booked_at=starts - timedelta(days=3))
    gone.status = Appointment.Status.CANCELLED
    gone.save()
    assert reminders.send_reminders(starts - timedelta(hours=1)) == 1
    (message,) = mail.outbox
    assert "To cancel or move this call: http://127.0.0.1:8000/call/" in message.body
    assert message.attachments[0][0] == "call.ics"


@pytest.mark.django_db(transaction=True)
def test_two_workers_claiming_at_the_same_instant_send_each_reminder_once(monkeypatch):
    """Both workers' claims meet at a barrier, 8 rounds of 10 calls due at once (one per
    realtor): with SKIP LOCKED and the sent-at column each reminder is claimed by one of them.
    Without the claim (plain SELECT, send, mark) both workers send all 10."""
    realtors = [make_realtor(f"realtor{i}") for i in range(10)]
    starts = datetime(2027, 3, 16, 10, 0, tzinfo=NY)
    calls = [make_call(realtor, starts + timedelta(days=day), booked_at=starts - timedelta(days=3),
                       email=f"v{day}-{realtor.pk}@example.com")
             for day in range(8) for realtor in realtors]
    barrier = threading.Barrier(2)
    real_claim = reminders.claim

    def claim_together(*args, **kwargs):
        try:
            barrier.wait(timeout=2)  # wide: both threads start within milliseconds
        except threading.BrokenBarrierError:
            pass
        return real_claim(*args, **kwargs)

    monkeypatch.setattr(reminders, "claim", claim_together)
    claimed = []

    def worker(now):
        try:
            claimed.append(reminders.send_reminders(now))
        finally:
            connections.close_all()

    for round_number in range(8):
        mail.outbox.clear()
        now = starts + timedelta(days=round_number, hours=-1)
        threads = [threading.Thread(target=worker, args=(now,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        barrier.reset()
        sent_to = sorted(m.to[0] for m in mail.outbox)
        assert len(sent_to) == 10 and len(set(sent_to)) == 10, f"round {round_number}: {sent_to}"
    assert Appointment.objects.filter(reminded_1h_at__isnull=True).count() == 0
    assert sum(claimed) == len(calls)


@pytest.mark.django_db
def test_the_realtor_gets_the_days_agenda_once_from_the_morning_hour():
    anna, ben = make_realtor("anna"), make_realtor("ben")
    day = datetime(2027, 3, 16, 0, 0, tzinfo=NY)
    make_call(anna, day.replace(hour=14), booked_at=day - timedelta(days=2))
    make_call(anna, day.replace(hour=10), booked_at=day - timedelta(days=2), email="")
    make_call(ben, day + timedelta(days=1, hours=10), booked_at=day - timedelta(days=2))
    assert reminders.send_agendas(day.replace(hour=6, minute=59), 7) == 0
    assert reminders.send_agendas(day.replace(hour=7), 7) == 1
    (agenda,) = mail.outbox
    assert agenda.to == ["anna@agency.example"]
    assert agenda.subject == "Your calls on Tuesday, March 16"
    assert agenda.body.index("10:00 EDT") < agenda.body.index("14:00 EDT")
    assert reminders.send_agendas(day.replace(hour=7, minute=1), 7) == 0  # once a day


@pytest.mark.django_db
def test_the_periodic_task_sends_what_is_due_at_its_tick():
    from agent import tasks

    starts = datetime(2027, 3, 16, 10, 0, tzinfo=NY)
    make_call(make_realtor(), starts, booked_at=starts - timedelta(days=3))
    tick = int((starts - timedelta(hours=1)).timestamp())
    # procrastinate calls the task with the tick's unix time; 09:00 is past AGENDA_HOUR (7)
    assert tasks.reminders(tick) == 2
    assert tasks.reminders(tick + 60) == 0
    assert sorted(m.to[0] for m in mail.outbox) == ["anna@agency.example", "vera@example.com"]


@pytest.mark.django_db
def test_a_spanish_visitors_reminder_is_in_spanish_with_its_link():
    from agent.models import Conversation

    starts = datetime(2027, 3, 16, 10, 0, tzinfo=NY)
    call = make_call(make_realtor(), starts, booked_at=starts - timedelta(days=3))
    Appointment.objects.filter(pk=call.pk).update(
        conversation=Conversation.objects.create(language="es")
    )
    reminders.send_reminders(starts - timedelta(hours=1))
    [email] = mail.outbox
    assert email.subject == (
        "Recordatorio: su llamada con Anna el martes, 16 de marzo a las 10:00 EDT"
    )
    assert email.body.startswith("Le recordamos su llamada, dentro de 1 hora. Anna le llamará.")
    assert "Para cancelar o cambiar esta llamada: http" in email.body
