"""Retention that runs by itself: a run at a frozen clock removes exactly what is past its
date and leaves the rest, a second run removes nothing, two processes never run one
organisation's run twice, and a legal hold spares a candidate and refuses their erasure;
on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from mailer.models import outbox_messages as outbox
from rooms.models import RoomAttendance, RoomRecord, RoomRecording
from scheduler import keys
from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.config import RetentionSettings, Settings
from scheduler.db import Database
from scheduler.leases import lease_clock
from scheduler.models import Assessment, BookingEvent, Candidate, Organisation, RetentionRun
from scheduler.orgs import create_organisation
from scheduler.retention import KINDS
from scheduler.retention_runs import RetentionJob
from tests.conftest import Org
from tests.scheduler.test_privacy import _interviewed
from tests.scheduler.test_results import _interviewed as results_interviewed
from tests.support.polling import eventually

POLICY = {
    "recordings": 10,
    "private_notes": 20,
    "assessments": 20,
    "attendance": 30,
    "outbox_bodies": 40,
    "candidates": 60,
}


@pytest.fixture
async def mail_org(
    aiohttp_client: Callable[..., Awaitable[Any]], mail_settings: Settings, clock: FrozenClock
) -> Org:
    """An organisation on an app whose mails are delivered (retention drops only the bodies
    of sent or failed mails, never one still owed)."""
    client = await aiohttp_client(create_app(mail_settings, clock=clock))
    async with client.app[keys.DB].write() as session:
        new = await create_organisation(
            session,
            name="CCI Formation",
            contact_email="contact@cci.example",
            contact_phone=None,
            now=clock.now(),
        )
    return Org(client, new.organisation.id, new.api_key)


async def _all_sent(app: Any) -> None:
    async def check() -> bool:
        async with app[keys.DB].read() as session:
            left = await session.scalar(
                select(func.count()).where(outbox.c.status.in_(("pending", "sending")))
            )
        return left == 0

    await eventually(check, "every mail delivered")


async def _state(app: Any, got: dict[str, Any]) -> dict[str, Any]:
    """What is left of one interviewed candidate's data."""
    booking = uuid.UUID(got["booking"])
    folder = app[keys.SETTINGS].recordings_path
    async with app[keys.DB].read() as session:
        files = list(
            await session.scalars(
                select(RoomRecording.file).where(RoomRecording.booking_id == booking)
            )
        )
        record = await session.get(RoomRecord, booking)
        cand = await session.get(Candidate, uuid.UUID(got["id"]))
        marks = [
            e.after
            for e in await session.scalars(
                select(BookingEvent).where(
                    BookingEvent.booking_id == booking,
                    BookingEvent.action.in_(("assessment_submitted", "assessment_changed")),
                )
            )
        ]
        assert record is not None and cand is not None
        return {
            "recordings": len(files),
            "file": (folder / got["booking"] / "take.mkv").exists(),
            "notes": record.evaluator_notes != "",
            # the row, and the levels the history copied
            "assessment": await session.get(Assessment, booking) is not None
            and len(marks) == 2
            and all(m and m.get("levels") for m in marks),
            "attendance": await session.scalar(
                select(func.count()).where(RoomAttendance.booking_id == booking)
            ),
            "bodies": await session.scalar(
                select(func.count()).where(
                    outbox.c.booking_id == booking, func.length(outbox.c.raw) > 0
                )
            ),
            "erased": cand.erased_at is not None,
        }


FULL = {
    "recordings": 1,
    "file": True,
    "notes": True,
    "assessment": True,
    "attendance": 1,
    "erased": False,
}


def _whole(state: dict[str, Any]) -> bool:
    return {k: state[k] for k in FULL} == FULL and state["bodies"] > 0


async def _end(org: Org, got: dict[str, Any]) -> datetime:
    return datetime.fromisoformat((await org.ok("GET", f"/bookings/{got['booking']}"))["end"])


async def test_a_run_removes_what_is_past_its_date_and_nothing_else(
    mail_org: Org, clock: FrozenClock
) -> None:
    org = mail_org
    app = org.client.app
    job = app[keys.RETENTION]
    await org.ok("PUT", "/organisation/retention", json=POLICY)
    await job.plan()  # what each process's periodic check does first
    early = await _interviewed(org, clock, name="Early Person", email="early@example.org")
    held = await _interviewed(org, clock, name="Held Person", email="held@example.org")
    end = await _end(org, early)
    assert await _end(org, held) - end < timedelta(hours=12)
    await org.ok(
        "POST", f"/candidates/{held['id']}/hold", json={"reason": "Appeal 2026-117 lodged."}
    )
    clock.set(end + timedelta(days=15))
    late = await _interviewed(org, clock, name="Late Person", email="late@example.org")
    late_end = await _end(org, late)
    await _all_sent(app)
    planned = await org.ok("GET", "/organisation/retention")
    assert planned["last_run"] is None
    assert {r["kind"]: r["days"] for r in planned["rules"]} == POLICY

    # 25 days after the first interviews: recordings (10) and notes (20) of those are due.
    clock.set(end + timedelta(days=25))
    [run] = await job.run_due()
    assert run.counts == {
        "recordings": 1,
        "private_notes": 1,
        "assessments": 1,
        "attendance": 0,
        "outbox_bodies": 0,
        "candidates": 0,
    }
    state = await _state(app, early)
    assert (state["recordings"], state["file"], state["notes"]) == (0, False, False)
    assert not state["assessment"]
    assert state["attendance"] == 1 and state["bodies"] > 0 and not state["erased"]
    assert _whole(await _state(app, late)), "its interview is 9 days old"
    assert _whole(await _state(app, held)), "a legal hold spares everything"
    shown = await org.ok("GET", "/organisation/retention")
    assert shown["last_run"]["counts"] == run.counts
    assert datetime.fromisoformat(shown["next_run_at"]) > clock.now()
    assert shown["running"] is False

    # The next day's run: nothing new is due, and what went is not counted again.
    clock.set(datetime.fromisoformat(shown["next_run_at"]))
    [again] = await job.run_due()
    assert set(again.counts.values()) == {0}
    assert await job.run_due() == [], "nothing due until the next day"

    # 62 days on: the first candidate's data goes whole (60), the later one's all but
    # the candidate (their interview is 46 days old), the held one's stays.
    clock.set(end + timedelta(days=62))
    assert clock.now() - late_end < timedelta(days=60)
    [run] = await job.run_due()
    assert run.counts["candidates"] == 1 and run.counts["recordings"] == 1
    early_state = await _state(app, early)
    assert early_state["erased"] and early_state["attendance"] == 0
    assert early_state["bodies"] == 0
    late_state = await _state(app, late)
    assert late_state == {
        "recordings": 0,
        "file": False,
        "notes": False,
        "assessment": False,
        "attendance": 0,
        "bodies": 0,
        "erased": False,
    }
    assert _whole(await _state(app, held))
    status, _ = await org.call("GET", f"/candidates/{early['id']}")
    assert status == 404
    # Lifting the hold lets the next run apply the policy to them too.
    await org.ok("DELETE", f"/candidates/{held['id']}/hold")
    clock.set(clock.now() + timedelta(days=1))
    [run] = await job.run_due()
    assert (await _state(app, held))["erased"]


async def test_a_legal_hold_refuses_erasure(make_org: Any, clock: FrozenClock) -> None:
    org = await make_org()
    cand = await org.make_candidate(name="Hélène Appelante")
    status, problem = await org.call("POST", f"/candidates/{cand['id']}/hold", json={"reason": " "})
    assert status == 422
    held = await org.ok("POST", f"/candidates/{cand['id']}/hold", json={"reason": "Appeal lodged."})
    assert held["hold"]["reason"] == "Appeal lodged."
    assert datetime.fromisoformat(held["hold"]["since"]) == clock.now()
    assert (await org.ok("GET", f"/candidates/{cand['id']}"))["hold"]["reason"] == "Appeal lodged."
    export = await org.ok("GET", f"/candidates/{cand['id']}/export")
    assert export["profile"]["hold_reason"] == "Appeal lodged."

    status, problem = await org.call("DELETE", f"/candidates/{cand['id']}", json={"mode": "erase"})
    assert status == 409 and "legal hold" in problem["detail"]
    assert (await org.ok("GET", f"/candidates/{cand['id']}"))["name"] == "Hélène Appelante"

    await org.ok("DELETE", f"/candidates/{cand['id']}/hold")
    status, _ = await org.call("DELETE", f"/candidates/{cand['id']}/hold")
    assert status == 409, "no hold left to lift"
    assert (await org.ok("GET", f"/candidates/{cand['id']}"))["hold"] is None
    await org.ok("DELETE", f"/candidates/{cand['id']}", json={"mode": "erase"})


async def test_the_policy_is_the_organisations_over_the_defaults(make_org: Any) -> None:
    org = await make_org()
    defaults = RetentionSettings()
    shown = await org.ok("GET", "/organisation/retention")
    assert {r["kind"]: r["days"] for r in shown["rules"]} == {
        k.name: defaults.days(k.name) for k in KINDS
    }
    assert not any(r["own"] for r in shown["rules"])
    status, _ = await org.call("PUT", "/organisation/retention", json={"recordings": -1})
    assert status == 422
    status, _ = await org.call("PUT", "/organisation/retention", json={"photos": 3})
    assert status == 422
    assert not any(r["own"] for r in (await org.ok("GET", "/organisation/retention"))["rules"])

    put = await org.ok("PUT", "/organisation/retention", json={"recordings": 0, "candidates": 9})
    rules = {r["kind"]: r for r in put["rules"]}
    assert (rules["recordings"]["days"], rules["recordings"]["own"]) == (0, True)
    assert rules["candidates"]["days"] == 9
    assert rules["attendance"] == {
        **rules["attendance"],
        "days": defaults.attendance_days,
        "own": False,
    }


def test_every_kind_has_a_default() -> None:
    defaults = RetentionSettings()
    for kind in KINDS:
        assert defaults.days(kind.name) >= 0


async def test_two_processes_never_run_one_organisations_run_twice(
    settings: Settings, clock: FrozenClock, tmp_path: Any
) -> None:
    """Two jobs, each with its own engine (two processes), look at once: each due run is
    claimed by one of them only, and every organisation ends with one finished run and one
    planned for the next day."""
    dbs = [Database(settings.database.url) for _ in range(2)]
    try:
        async with dbs[0].write() as session:
            for n in range(6):
                await create_organisation(
                    session,
                    name=f"Org {n}",
                    contact_email=f"o{n}@example.org",
                    contact_phone=None,
                    now=clock.now(),
                )
        from scheduler.privacy import RecordingFiles

        files = RecordingFiles(tmp_path, lambda _: False, timedelta(minutes=30))
        jobs = [
            RetentionJob(db, clock=clock, settings=settings.retention, files=files, name=f"p{i}")
            for i, db in enumerate(dbs)
        ]
        # Both plan at once: one pending run per organisation all the same.
        await asyncio.gather(*(job.plan() for job in jobs))
        async with dbs[0].read() as session:
            assert await session.scalar(select(func.count()).select_from(RetentionRun)) == 6
        clock.set(clock.now() + timedelta(days=1))
        runs = await asyncio.gather(*(job.run_due() for job in jobs))
        done = [r.organisation_id for batch in runs for r in batch]
        assert len(done) == 6 and len(set(done)) == 6
        async with dbs[0].read() as session:
            rows = list(await session.scalars(select(RetentionRun)))
            orgs = await session.scalar(select(func.count()).select_from(Organisation))
        assert orgs == 6
        assert sum(r.finished_at is not None for r in rows) == 6
        pending = [r for r in rows if r.finished_at is None]
        assert len(pending) == 6 and all(r.due_at > clock.now() for r in pending)
    finally:
        for db in dbs:
            await db.dispose()


async def _lease_lapses(db: Database, clock: FrozenClock, by: timedelta) -> None:
    """Move the clock leases are compared with (scheduler.leases) past every lease: on
    SQLite the injected clock; on PostgreSQL it is the database's, which a test cannot move,
    so the leases are made to end just before its now instead (the app clock moves on
    either way)."""
    clock.set(clock.now() + by)
    if db.sqlite:
        return
    async with db.write() as session:
        now = await lease_clock(db.sqlite, clock)(session)
        await session.execute(
            update(RetentionRun)
            .where(RetentionRun.lease_until.is_not(None))
            .values(lease_until=now - timedelta(seconds=1))
        )


async def _one_org(db: Database, clock: FrozenClock) -> None:
    async with db.write() as session:
        await create_organisation(
            session,
            name="Org",
            contact_email="o@example.org",
            contact_phone=None,
            now=clock.now(),
        )


async def test_on_postgresql_retention_leases_are_compared_with_the_database_clock(
    settings: Settings, tmp_path: Any
) -> None:
    """A process whose clock runs an hour ahead (of the real time and of the database's)
    cannot take a run another process holds: by its own clock the lease has ended, by the
    database's it has not."""
    if settings.database.url.startswith("sqlite"):
        pytest.skip("SQLite is one machine: its processes share one clock")
    from scheduler.privacy import RecordingFiles

    db = Database(settings.database.url)
    try:
        # Near the real time, since the database's clock is: the run fell due a day ago.
        real = datetime.now(UTC)
        clock = FrozenClock(real - timedelta(days=1))
        await _one_org(db, clock)
        files = RecordingFiles(tmp_path, lambda _: False, timedelta(minutes=30))
        holder = RetentionJob(db, clock=clock, settings=settings.retention, files=files, name="h")
        await holder.plan()
        clock.set(real)
        assert await holder._claim() is not None

        lease = timedelta(minutes=settings.retention.lease_minutes)
        ahead = FrozenClock(real + timedelta(hours=1))
        assert timedelta(hours=1) > lease
        fair = RetentionJob(db, clock=ahead, settings=settings.retention, files=files, name="f")
        assert await fair._claim() is None, "the database's clock says the lease is live"
        assert await fair.run_due() == []
        # What happened before: leases compared with the process's own clock.
        naive = RetentionJob(
            db,
            clock=ahead,
            settings=settings.retention,
            files=files,
            name="n",
            lease_now=lease_clock(True, ahead),
        )
        assert await naive._claim() is not None
    finally:
        await db.dispose()


async def test_a_run_whose_process_died_is_taken_over_after_its_lease(
    settings: Settings, clock: FrozenClock, tmp_path: Any
) -> None:
    from scheduler.privacy import RecordingFiles

    db = Database(settings.database.url)
    try:
        await _one_org(db, clock)
        files = RecordingFiles(tmp_path, lambda _: False, timedelta(minutes=30))
        dead, alive = (
            RetentionJob(db, clock=clock, settings=settings.retention, files=files, name=n)
            for n in ("dead", "alive")
        )
        await dead.plan()
        clock.set(clock.now() + timedelta(days=1))
        assert await dead._claim() is not None  # ...and the process dies holding it
        assert await alive.run_due() == [], "the claim holds while its lease runs"
        await _lease_lapses(db, clock, timedelta(minutes=settings.retention.lease_minutes + 1))
        [run] = await alive.run_due()
        async with db.read() as session:
            row = await session.get(RetentionRun, run.id)
        assert row is not None and row.claimed_by == "alive" and row.finished_at is not None
    finally:
        await db.dispose()


async def test_a_candidates_period_runs_from_their_published_results(
    make_org: Any, clock: FrozenClock
) -> None:
    """Results come weeks after the interview: the candidates' period counts from them."""
    org = await make_org()
    job = org.client.app[keys.RETENTION]
    await org.ok("PUT", "/organisation/retention", json={"candidates": 60})
    await job.plan()
    candidate_id, booking_id = await results_interviewed(org, clock)
    end = await _end(org, {"booking": booking_id})
    clock.set(end + timedelta(days=50))
    body = {"overall_level": "B2", "target_level": "B2", "target_reached": True}
    await org.ok("PUT", f"/candidates/{candidate_id}/result", json=body)
    await org.ok("POST", f"/candidates/{candidate_id}/result/publish")

    clock.set(end + timedelta(days=62))  # the interview is past 60 days, the results not
    await job.run_due()
    assert (await org.ok("GET", f"/candidates/{candidate_id}"))["name"] != "", "kept"

    clock.set(end + timedelta(days=111))
    [run] = await job.run_due()
    assert run.counts["candidates"] == 1
    status, _ = await org.call("GET", f"/candidates/{candidate_id}")
    assert status == 404
