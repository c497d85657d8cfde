"""Timers: the lock and the reminders, from the database rows to the e-mails people receive.

Most tests move a FrozenClock and call `run_due` themselves; one runs in real time so that
APScheduler itself wakes the service. E-mails are counted in the outbox, or at a real SMTP
server (aiosmtpd) when delivery is the point.
"""

from __future__ import annotations

import asyncio
import email
import functools
import logging
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import ValidationError
from sqlalchemy import select

from mailer import compose
from mailer.models import outbox_messages
from mailer.outbox import Outbox, StoredMessage, booking_messages
from scheduler import keys
from scheduler.app import create_app
from scheduler.clock import FrozenClock, SystemClock
from scheduler.config import ReminderSettings, Settings, load_settings
from scheduler.db import Database
from scheduler.i18n import Catalogs, create_env
from scheduler.models import Booking, BookingEvent, Timer
from scheduler.orgs import create_organisation
from scheduler.policy import Policy
from scheduler.timers import LOCK, NO_SHOW, TimerService, plan, reminder_kind
from scheduler.timers import replan as replan_timers
from tests.conftest import SECRET, T0, Org, token_of
from tests.mailer.mailer_support import SmtpServer
from tests.support.polling import eventually

# Thursday 3 December 2026, 09:00 in Paris: inside the default evaluator's hours.
NO_SHOW_AFTER = timedelta(minutes=10)  # [rooms] no_show_after_minutes
# As the app calls it: the no-show mark is planned with the other timers.
replan = functools.partial(replan_timers, no_show_after=NO_SHOW_AFTER)
START_TEXT = "2026-12-03T09:00:00+01:00"
START = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
R48 = START - timedelta(hours=48)  # T0 + 24 h
LOCK_AT = START - timedelta(hours=24)  # T0 + 48 h
R1 = START - timedelta(hours=1)


# --- helpers -------------------------------------------------------------------------------


async def _org(client: TestClient, clock: FrozenClock | ShiftedClock) -> Org:
    async with client.app[keys.DB].write() as session:
        new = await create_organisation(
            session,
            name="CCI Paris",
            contact_email="oral@cci.test",
            contact_phone="+33 1 23 45 67 89",
            now=clock.now(),
        )
    return Org(client, new.organisation.id, new.api_key)


async def _book(org: Org, start: str = START_TEXT, **candidate: object) -> tuple[dict, dict]:
    cand = await org.make_candidate(**candidate)
    token = token_of(cand["link"])
    resp = await org.client.post(f"/c/{token}/booking", json={"start": start})
    assert resp.status == 201, await resp.text()
    return cand, await resp.json()


async def _plan(app: web.Application, *booking_ids: str) -> None:
    """What a booking transaction does with its timers, then what it does after the commit.

    Idempotent, so it changes nothing once the booking code plans the timers itself.
    """
    now = app[keys.CLOCK].now()
    async with app[keys.DB].write() as session:
        for booking_id in booking_ids:
            booking = await session.get(Booking, uuid.UUID(booking_id))
            assert booking is not None
            await replan(
                session,
                booking,
                policy=app[keys.POLICY],
                reminders=app[keys.SETTINGS].reminders,
                now=now,
            )
    await app[keys.TIMERS].sync([uuid.UUID(b) for b in booking_ids])


async def _timers(db: Database, booking_id: str) -> list[Timer]:
    async with db.read() as session:
        rows = await session.scalars(
            select(Timer)
            .where(Timer.booking_id == uuid.UUID(booking_id))
            .order_by(Timer.created_at, Timer.due_at)
        )
        return list(rows)


async def _pending(db: Database, booking_id: str) -> dict[str, datetime]:
    """The pending lock and reminders (the no-show mark has its own tests: test_no_show)."""
    return {
        t.kind: t.due_at
        for t in await _timers(db, booking_id)
        if t.done_at is None and t.kind != NO_SHOW
    }


async def _reminders(app: web.Application, booking_id: str) -> list[StoredMessage]:
    async with app[keys.DB].read() as session:
        stored = await booking_messages(session, uuid.UUID(booking_id))
    return [m for m in stored if m.kind == "booking_reminder"]


def _text(raw: bytes) -> str:
    message = email.message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def _has_calendar(raw: bytes) -> bool:
    message = email.message_from_bytes(raw, policy=default)
    return any(p.get_content_type() == "text/calendar" for p in message.walk())


class ShiftedClock:
    """Frozen until `run_from(at)`; from then on it runs in real time, starting at `at`."""

    def __init__(self, at: datetime) -> None:
        self._at = at
        self._offset: timedelta | None = None

    def now(self) -> datetime:
        if self._offset is None:
            return self._at
        return SystemClock().now() + self._offset

    def run_from(self, at: datetime) -> None:
        self._offset = at - SystemClock().now()


# --- planning ------------------------------------------------------------------------------


def test_plan_is_the_lock_and_one_reminder_per_configured_offset() -> None:
    assert plan(START, Policy(), ReminderSettings()) == [
        ("reminder_48h", R48),
        (LOCK, LOCK_AT),
        ("reminder_1h", R1),
    ]
    other = plan(START, Policy(change_lock_hours=12), ReminderSettings(hours_before=[72, 2]))
    assert other == [
        ("reminder_72h", START - timedelta(hours=72)),
        (LOCK, START - timedelta(hours=12)),
        ("reminder_2h", START - timedelta(hours=2)),
    ]
    assert plan(START, Policy(), ReminderSettings(hours_before=[])) == [(LOCK, LOCK_AT)]
    with pytest.raises(ValueError, match="aware"):
        plan(START.replace(tzinfo=None), Policy(), ReminderSettings())


def test_reminder_settings_from_the_environment_and_their_checks() -> None:
    settings = load_settings(environ={"VIVA_REMINDERS_HOURS_BEFORE": "72, 2"})
    assert settings.reminders.hours_before == [72, 2]
    assert load_settings(environ={"VIVA_REMINDERS_HOURS_BEFORE": ""}).reminders.hours_before == []
    with pytest.raises(ValidationError, match="twice"):
        ReminderSettings(hours_before=[48, 48])
    with pytest.raises(ValidationError, match="1 to 1440"):
        ReminderSettings(hours_before=[0])
    with pytest.raises(ValidationError, match="two sweeps"):
        ReminderSettings(sweep_seconds=600, lookahead_minutes=10)


async def test_replan_is_idempotent_and_follows_a_move(client, make_org, clock) -> None:
    app = client.app
    org = await make_org()
    await org.make_evaluator()
    _, booking = await _book(org)
    await _plan(app, booking["id"])
    first = await _timers(app[keys.DB], booking["id"])
    assert {t.kind: t.due_at for t in first if t.done_at is None} == {
        "reminder_48h": R48,
        LOCK: LOCK_AT,
        "reminder_1h": R1,
        NO_SHOW: START + NO_SHOW_AFTER,
    }

    await _plan(app, booking["id"])  # again: the same rows, nothing added or closed
    assert [(t.id, t.done_at) for t in await _timers(app[keys.DB], booking["id"])] == [
        (t.id, t.done_at) for t in first
    ]

    # The booking moves a day later: the old rows are closed as cancelled, new ones planned.
    async with app[keys.DB].write() as session:
        row = await session.get(Booking, uuid.UUID(booking["id"]))
        assert row is not None
        row.start_at += timedelta(days=1)
        row.end_at += timedelta(days=1)
        row.block_end += timedelta(days=1)
        await replan(
            session, row, policy=app[keys.POLICY], reminders=app[keys.SETTINGS].reminders, now=T0
        )
    rows = await _timers(app[keys.DB], booking["id"])
    assert sorted((t.kind, t.outcome) for t in rows if t.id in {f.id for f in first}) == [
        (LOCK, "cancelled"),
        (NO_SHOW, "cancelled"),
        ("reminder_1h", "cancelled"),
        ("reminder_48h", "cancelled"),
    ]
    day = timedelta(days=1)
    assert await _pending(app[keys.DB], booking["id"]) == {
        "reminder_48h": R48 + day,
        LOCK: LOCK_AT + day,
        "reminder_1h": R1 + day,
    }


async def test_reminders_already_past_are_not_planned_but_a_due_lock_is(
    client, make_org, clock
) -> None:
    """Booked 30 h ahead: the 48 h reminder would repeat the confirmation just sent, so it is
    not planned; the lock, 6 h later, is. Inside the lock, the booking is locked already."""
    app = client.app
    org = await make_org()
    await org.make_evaluator()
    clock.set(START - timedelta(hours=30))
    _, booking = await _book(org)
    await _plan(app, booking["id"])
    assert await _pending(app[keys.DB], booking["id"]) == {LOCK: LOCK_AT, "reminder_1h": R1}

    # Re-planned after its lock time while still `confirmed`: the lock row stays, so that it
    # runs at once; the 1 h reminder, still ahead, stays too.
    async with app[keys.DB].write() as session:
        row = await session.get(Booking, uuid.UUID(booking["id"]))
        assert row is not None
        await replan(
            session,
            row,
            policy=app[keys.POLICY],
            reminders=app[keys.SETTINGS].reminders,
            now=START - timedelta(hours=2),
        )
    assert await _pending(app[keys.DB], booking["id"]) == {LOCK: LOCK_AT, "reminder_1h": R1}


# --- acting: reminders once, the lock, cancellation ----------------------------------------


async def test_a_reminder_is_sent_once(client, make_org, clock) -> None:
    app = client.app
    service: TimerService = app[keys.TIMERS]
    org = await make_org()
    await org.make_evaluator(email="hugo@cci.test", locale="fr")
    cand, booking = await _book(org, email="sarah@example.test", timezone="America/New_York")
    await _plan(app, booking["id"])

    clock.set(R48 - timedelta(seconds=1))
    assert await service.run_due() == 0
    assert await _reminders(app, booking["id"]) == []

    clock.set(R48)
    assert await service.run_due() == 1
    assert await service.run_due() == 0
    await service.sweep()
    (first,) = await _reminders(app, booking["id"])
    assert first.recipient == "sarah@example.test"
    assert first.subject.startswith("Reminder: your oral interview on Thursday, December 3, 2026")
    text = _text(first.raw)
    # The last moment to change, in her zone (08:00Z on 2 December is 3:00 AM in New York),
    # and her personal link to do it.
    assert "Last day to change" in text
    assert "until Wednesday, December 2, 2026 at 3:00" in text
    assert cand["link"] in text
    assert booking["room"] in text and "device check" in text
    assert not _has_calendar(first.raw)  # the invitation is already in her calendar

    clock.set(R1 + timedelta(minutes=1))
    assert await service.run_due() == 2  # the lock, then the 1 h reminder
    assert await service.run_due() == 0
    reminders = await _reminders(app, booking["id"])
    assert Counter(m.recipient for m in reminders) == {
        "sarah@example.test": 2,
        "hugo@cci.test": 1,
    }
    last = _text([m for m in reminders if m.recipient == "sarah@example.test"][1].raw)
    assert booking["room"] in last and "device check" in last
    assert cand["link"] not in last and "Last day to change" not in last  # changes have closed
    to_evaluator = next(m for m in reminders if m.recipient == "hugo@cci.test")
    detail = await org.ok("GET", f"/bookings/{booking['id']}")
    evaluator_text = _text(to_evaluator.raw)
    assert to_evaluator.subject.startswith("Rappel : entretien avec Camille Candidate")
    assert detail["rooms"]["evaluator"] in evaluator_text
    assert booking["room"] not in evaluator_text
    assert "test du matériel" in evaluator_text

    rows = await _timers(app[keys.DB], booking["id"])
    assert {t.kind: t.outcome for t in rows if t.kind != NO_SHOW} == {
        "reminder_48h": "done",
        LOCK: "done",
        "reminder_1h": "done",
    }


async def test_the_lock_timer_locks_the_booking_without_an_email(client, make_org, clock) -> None:
    app = client.app
    org = await make_org()
    await org.make_evaluator()
    _, booking = await _book(org)
    await _plan(app, booking["id"])
    clock.set(R48)
    await app[keys.TIMERS].run_due()
    before = len((await org.ok("GET", f"/bookings/{booking['id']}"))["messages"])
    assert (await org.ok("GET", f"/bookings/{booking['id']}"))["status"] == "confirmed"

    clock.set(LOCK_AT)
    assert await app[keys.TIMERS].run_due() == 1
    detail = await org.ok("GET", f"/bookings/{booking['id']}")
    assert detail["status"] == "locked"
    assert len(detail["messages"]) == before  # the 48 h reminder already said when
    async with app[keys.DB].read() as session:
        events = list(
            await session.scalars(
                select(BookingEvent).where(BookingEvent.booking_id == uuid.UUID(booking["id"]))
            )
        )
    locked = [e for e in events if e.action == "locked"]
    assert [(e.actor, e.actor_name, e.at) for e in locked] == [("system", "viva", LOCK_AT)]
    assert locked[0].before is not None and locked[0].before["status"] == "confirmed"
    assert locked[0].after is not None and locked[0].after["status"] == "locked"


async def test_cancelling_removes_pending_reminders(client, make_org, clock) -> None:
    app = client.app
    service: TimerService = app[keys.TIMERS]
    org = await make_org()
    await org.make_evaluator()
    cand, booking = await _book(org)
    await _plan(app, booking["id"])
    # Close to the 48 h reminder, so that the sweep gives it a job.
    clock.set(R48 - timedelta(minutes=5))
    await service.sweep()
    pending = await _pending(app[keys.DB], booking["id"])
    held_before = {t.id for t in await _timers(app[keys.DB], booking["id"])} & service.held
    assert len(held_before) == 1 and "reminder_48h" in pending

    token = token_of(cand["link"])
    resp = await client.delete(f"/c/{token}/booking")
    assert resp.status in (200, 204), await resp.text()
    await _plan(app, booking["id"])

    assert await _pending(app[keys.DB], booking["id"]) == {}
    assert {t.outcome for t in await _timers(app[keys.DB], booking["id"])} == {"cancelled"}
    assert not (held_before & service.held)
    assert all(service.scheduler.get_job(str(t)) is None for t in held_before)
    clock.set(START + timedelta(hours=1))
    assert await service.run_due() == 0
    assert await _reminders(app, booking["id"]) == []


async def test_a_stale_job_is_harmless(client, make_org, clock) -> None:
    """A job whose row was cancelled meanwhile (say, by another process) claims nothing."""
    app = client.app
    service: TimerService = app[keys.TIMERS]
    org = await make_org()
    await org.make_evaluator()
    _, booking = await _book(org)
    await _plan(app, booking["id"])
    clock.set(R48 - timedelta(minutes=5))
    await service.sweep()
    async with app[keys.DB].write() as session:
        row = await session.get(Booking, uuid.UUID(booking["id"]))
        assert row is not None
        row.status = "cancelled"
        await replan(
            session,
            row,
            policy=app[keys.POLICY],
            reminders=app[keys.SETTINGS].reminders,
            now=clock.now(),
        )
    assert service.held  # this process has not heard of the change
    clock.set(R48)
    assert await service.run_due() == 0
    await service.sweep()
    assert not service.held  # the sweep dropped the job of the closed row
    assert await _reminders(app, booking["id"]) == []


async def test_only_timers_within_the_lookahead_are_held_as_jobs(client, make_org, clock) -> None:
    app = client.app
    service: TimerService = app[keys.TIMERS]
    org = await make_org()
    await org.make_evaluator()
    _, booking = await _book(org)
    await _plan(app, booking["id"])
    rows = {t.kind: t.id for t in await _timers(app[keys.DB], booking["id"])}
    assert not (set(rows.values()) & service.held)  # all a day or more away

    clock.set(R48 - service.lookahead + timedelta(seconds=1))
    await service.sweep()
    assert set(rows.values()) & service.held == {rows["reminder_48h"]}
    job = service.scheduler.get_job(str(rows["reminder_48h"]))
    # APScheduler's defaults would skip a job more than 1 s late: set deliberately.
    assert job is not None and job.misfire_grace_time is None and job.coalesce is True


async def test_a_new_booking_gets_its_jobs_at_its_commit_only_when_one_is_due_soon(
    client, make_org, clock
) -> None:
    """After a booking's commit its timers get jobs at once if the first one falls inside
    the window (no sweep needed), and nothing is read for them when all are further away
    (TimerService.sync_new): both sides of that shortcut."""
    app = client.app
    service: TimerService = app[keys.TIMERS]
    org = await make_org()
    await org.make_evaluator()
    await org.make_evaluator()  # both bookings are at START
    _, far = await _book(org)
    far_rows = {t.id for t in await _timers(app[keys.DB], far["id"])}
    assert far_rows and not (far_rows & service.held)

    window = service.lookahead
    service.lookahead = R48 - clock.now() + timedelta(minutes=1)  # the 48 h reminder only
    try:
        _, soon = await _book(org)
    finally:
        service.lookahead = window
    rows = {t.kind: t.id for t in await _timers(app[keys.DB], soon["id"])}
    assert set(rows.values()) & service.held == {rows["reminder_48h"]}


# --- Viva stopped and started again ---------------------------------------------------------


async def test_stopped_before_a_reminder_and_started_after_sends_it_once(
    aiohttp_client, settings: Settings, clock: FrozenClock
) -> None:
    first = await aiohttp_client(create_app(settings, clock=clock))
    org = await _org(first, clock)
    await org.make_evaluator()
    cand, booking = await _book(org, email="sarah@example.test")
    await _plan(first.app, booking["id"])
    await first.close()  # Viva stops...

    clock.set(R48 + timedelta(hours=3))  # ...and is down when the 48 h reminder falls due
    for _ in range(2):  # started, stopped, started again: still one reminder
        again = await aiohttp_client(create_app(settings, clock=clock))

        async def reminded(app: web.Application = again.app) -> bool:
            return len(await _reminders(app, booking["id"])) > 0

        # The start-up pass, without anyone calling run_due.
        await eventually(reminded, "the start-up pass's reminder")
        assert await again.app[keys.TIMERS].run_due() == 0
        (reminder,) = await _reminders(again.app, booking["id"])
        assert reminder.recipient == "sarah@example.test"
        assert cand["link"] in _text(reminder.raw)
        await again.close()


async def test_missed_reminders_that_no_longer_make_sense_are_dropped_and_logged(
    aiohttp_client, settings: Settings, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    first = await aiohttp_client(create_app(settings, clock=clock))
    org = await _org(first, clock)
    await org.make_evaluator(email="hugo@cci.test")
    cand, booking = await _book(org, email="sarah@example.test")
    await _plan(first.app, booking["id"])
    await first.close()

    # Down from before the 48 h reminder until after the lock: that reminder still goes, but
    # without the change offer, which has expired; and the booking becomes locked.
    clock.set(LOCK_AT + timedelta(hours=2))
    second = await aiohttp_client(create_app(settings, clock=clock))
    await second.app[keys.TIMERS].run_due()  # or the start-up pass does it: either way, once

    async def caught_up() -> bool:
        return await _pending(second.app[keys.DB], booking["id"]) == {"reminder_1h": R1}

    await eventually(caught_up, "the second process to catch up on the missed reminders")
    (late,) = await _reminders(second.app, booking["id"])
    assert late.recipient == "sarah@example.test"  # the evaluator gets only the 1 h one
    assert cand["link"] not in _text(late.raw) and booking["room"] in _text(late.raw)
    assert (await Org(second, org.id, org.api_key).ok("GET", f"/bookings/{booking['id']}"))[
        "status"
    ] == "locked"
    await second.close()

    # Down again until the interview has begun: the 1 h reminder is dropped, and logged.
    clock.set(START + timedelta(minutes=5))
    caplog.set_level(logging.WARNING, logger="viva.timers")
    third = await aiohttp_client(create_app(settings, clock=clock))
    await third.app[keys.TIMERS].run_due()

    async def settled() -> bool:
        return not await _pending(third.app[keys.DB], booking["id"])

    await eventually(settled, "every timer of the booking done")
    assert len(await _reminders(third.app, booking["id"])) == 1
    outcomes = {
        t.kind: t.outcome
        for t in await _timers(third.app[keys.DB], booking["id"])
        if t.kind != NO_SHOW
    }
    assert outcomes == {"reminder_48h": "done", LOCK: "done", "reminder_1h": "dropped"}
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1
    assert "reminder_1h" in dropped[0].getMessage()
    assert "the interview has already begun" in dropped[0].getMessage()


# --- two processes on one database -----------------------------------------------------------


@pytest.mark.slow
async def test_two_processes_on_one_database_send_each_reminder_exactly_once(
    aiohttp_client, mail_settings: Settings, clock: FrozenClock, smtp_server: SmtpServer
) -> None:
    """Two Viva processes, each with its own engine, scheduler and mail worker, on one
    database (PostgreSQL is the case that matters; SQLite serialises them anyway)."""
    client = await aiohttp_client(create_app(mail_settings, clock=clock))
    app = client.app
    org = await _org(client, clock)
    bookings = []
    for i in range(6):
        await org.make_evaluator(email=f"ev{i}@cci.test")
    for i in range(6):
        _, booking = await _book(org, email=f"cand{i}@example.test")
        bookings.append(booking)
    await _plan(app, *(b["id"] for b in bookings))

    processes = []
    claimed_ids: list[uuid.UUID] = []
    for _ in range(2):
        db = Database(mail_settings.database.url)
        timers = TimerService(
            db,
            clock=clock,
            policy=app[keys.POLICY],
            reminders=mail_settings.reminders,
            notifier=app[keys.NOTIFIER],
            on_fired=lambda fired: claimed_ids.extend(f.id for f in fired),
            batch_size=2,  # many small claims, so the two really interleave
        )
        processes.append((db, timers, Outbox(db.writer_sessions, mail_settings.smtp, clock)))

    async def outbox_settled() -> bool:
        """Nothing pending or being sent. Time only moves once delivery has settled: jumping
        a day while a worker is mid-send would expire its lease, and the outbox (at least
        once, by design) would then send that message again."""
        async with app[keys.DB].read() as session:
            statuses = set(await session.scalars(select(outbox_messages.c.status)))
        return statuses <= {"sent", "failed"}

    try:
        # Connected before the race, so that neither has a head start.
        assert await asyncio.gather(*(t.run_due() for _, t, _ in processes)) == [0, 0]
        # The confirmations, sent by the app's own worker.
        await eventually(outbox_settled, "the outbox to settle")
        for moment in (R48, LOCK_AT, R1):
            clock.set(moment)
            for _ in range(3):  # several rounds: nobody acts on a row twice
                claimed = await asyncio.gather(*(t.run_due() for _, t, _ in processes))
            assert sum(claimed) == 0
            await asyncio.gather(*(o.deliver_due() for _, _, o in processes))
            await eventually(outbox_settled, "the outbox to settle")

        def reminders_received() -> Counter[tuple[str, str]]:
            subjects = [
                (r.rcpt_tos[0], str(r.message["Subject"]).strip()) for r in smtp_server.received
            ]
            return Counter(
                (rcpt, subject.split(" on ")[0].split(" le ")[0])
                for rcpt, subject in subjects
                if subject.startswith(("Reminder", "Rappel"))
            )

        async def all_delivered() -> bool:
            return sum(reminders_received().values()) >= 18

        await eventually(all_delivered, "all 18 reminders delivered")
        received = reminders_received()
        expected = Counter(
            {(f"cand{i}@example.test", "Reminder: your oral interview"): 2 for i in range(6)}
        )
        evaluators = [
            (await org.ok("GET", f"/bookings/{b['id']}"))["evaluator_id"] for b in bookings
        ]
        assert len(set(evaluators)) == 6
        for i in range(6):
            expected[(f"ev{i}@cci.test", "Rappel : entretien avec Camille Candidate")] = 1
        assert received == expected
        async with app[keys.DB].read() as session:
            assert set(await session.scalars(select(outbox_messages.c.status))) == {"sent"}
        # Every timer acted on once, every booking locked once.
        async with processes[0][0].read() as session:
            outcomes = Counter(
                await session.scalars(select(Timer.outcome).where(Timer.done_at.is_not(None)))
            )
            locks = list(
                await session.scalars(select(BookingEvent).where(BookingEvent.action == "locked"))
            )
        assert outcomes == {"done": 18}
        assert len(claimed_ids) == len(set(claimed_ids))  # no row claimed by both
        assert sorted(str(e.booking_id) for e in locks) == sorted(b["id"] for b in bookings)
    finally:
        for db, timers, _ in processes:
            await timers.stop()
            await db.dispose()


# --- real time: APScheduler wakes the service ------------------------------------------------


@pytest.mark.slow
async def test_apscheduler_fires_a_lock_a_few_seconds_ahead_in_real_time(
    aiohttp_client, db_url: str, tmp_path: Path
) -> None:
    settings = load_settings(
        environ={
            "VIVA_DATABASE_URL": db_url,
            "VIVA_SERVER_SECRET_KEY": SECRET,
            "VIVA_SERVER_BASE_URL": "http://viva.test",
            "VIVA_SERVER_DATA_DIR": str(tmp_path),
            # No sweep during the test: only the lock's own job can act on it.
            "VIVA_REMINDERS_SWEEP_SECONDS": "600",
            "VIVA_REMINDERS_LOOKAHEAD_MINUTES": "20",
        }
    )
    clock = ShiftedClock(T0)
    client = await aiohttp_client(create_app(settings, clock=clock))
    service: TimerService = client.app[keys.TIMERS]
    org = await _org(client, clock)
    await org.make_evaluator()
    _, booking = await _book(org)
    # The 48 h reminder is planned too; drop it so the lock is the only timer due.
    await _plan(client.app, booking["id"])
    async with client.app[keys.DB].write() as session:
        row = await session.get(Booking, uuid.UUID(booking["id"]))
        assert row is not None
        await replan(
            session,
            row,
            policy=client.app[keys.POLICY],
            reminders=ReminderSettings(hours_before=[1]),
            now=clock.now(),
        )
    lock_id = next(
        t.id for t in await _timers(client.app[keys.DB], booking["id"]) if t.kind == LOCK
    )

    clock.run_from(LOCK_AT - timedelta(seconds=3))  # Viva's time now runs, 3 s before the lock
    await service.sync([uuid.UUID(booking["id"])])
    job = service.scheduler.get_job(str(lock_id))
    assert job is not None and job.misfire_grace_time is None
    assert (await org.ok("GET", f"/bookings/{booking['id']}"))["status"] == "confirmed"

    async def locked() -> bool:
        return (await org.ok("GET", f"/bookings/{booking['id']}"))["status"] == "locked"

    # Nobody calls run_due: APScheduler's job did.
    await eventually(locked, "APScheduler's job to lock the booking")
    assert service.scheduler.get_job(str(lock_id)) is None
    assert {t.kind: t.outcome for t in await _timers(client.app[keys.DB], booking["id"])}[
        LOCK
    ] == "done"


# --- the reminder e-mail itself ----------------------------------------------------------------


def test_the_reminder_reads_in_french_and_has_no_invitation() -> None:
    translations = Catalogs.load().get("fr")
    mail = compose.BookingMail(
        booking_id=uuid.uuid4(),
        sequence=0,
        start=START,
        end=START + timedelta(minutes=20),
        exam_language="en",
        candidate_name="Camille Martin",
        organisation=compose.Organisation("CCI Paris", "oral@cci.test"),
        reader=compose.Reader("Camille Martin", "camille@example.test", "Europe/Paris"),
        role="candidate",
        room_url="http://viva.test/r/room",
        manage_url="http://viva.test/c/mine",
        manage_until=LOCK_AT,
    )
    content = compose.booking_reminder(create_env(), translations, "fr", mail, now=T0)
    assert content.subject == "Rappel : votre entretien oral du jeudi 3 décembre 2026 à 09:00"
    assert content.calendar is None and content.method is None
    assert "jusqu’au mercredi 2 décembre 2026 à 09:00" in content.text
    assert "http://viva.test/c/mine" in content.text and "http://viva.test/r/room" in content.html
    assert "test du matériel" in content.text

    with pytest.raises(ValueError, match="evaluator"):
        compose.booking_reminder(
            create_env(),
            translations,
            "fr",
            compose.BookingMail(**{**mail.__dict__, "role": "evaluator"}),
            now=T0,
        )
    assert reminder_kind(48) == "reminder_48h"
