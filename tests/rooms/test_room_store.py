"""What rooms write: attendance and state, on both databases, as the scheduler reads them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

from rooms.models import (
    RoomState,
    attendance,
    candidate_joined_before,
    load_state,
    record_join,
    record_leave,
    room_report,
    save_state,
)
from scheduler.db import Database

START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


async def test_the_candidate_joined_by_an_instant_or_not(db: Database) -> None:
    booking, other = uuid.uuid4(), uuid.uuid4()
    deadline = START + timedelta(minutes=10)
    async with db.write() as session:
        await record_join(session, booking, "evaluator", START - timedelta(minutes=5))
        await record_join(session, other, "candidate", START)
    async with db.read() as session:
        # The evaluator's arrival, or another booking's candidate, do not count.
        assert not await candidate_joined_before(session, booking, deadline)
    async with db.write() as session:
        late = await record_join(session, booking, "candidate", deadline + timedelta(seconds=1))
        await record_leave(session, late, deadline + timedelta(minutes=1), "disconnected")
    async with db.read() as session:
        assert not await candidate_joined_before(session, booking, deadline)
    async with db.write() as session:
        await record_join(session, booking, "candidate", deadline)
    async with db.read() as session:
        assert await candidate_joined_before(session, booking, deadline)
        assert not await candidate_joined_before(session, booking, deadline - timedelta(seconds=1))


async def test_attendance_keeps_the_first_departure_in_utc(db: Database) -> None:
    booking = uuid.uuid4()
    paris = timezone(timedelta(hours=1))
    async with db.write() as session:
        row = await record_join(session, booking, "candidate", START.astimezone(paris))
        await record_leave(session, row, START + timedelta(minutes=3), "replaced")
        await record_leave(session, row, START + timedelta(minutes=9), "shutdown")  # ignored
    async with db.read() as session:
        [seen] = await attendance(session, booking)
    assert (seen.role, seen.joined_at, seen.left_at, seen.left_reason) == (
        "candidate",
        START,
        START + timedelta(minutes=3),
        "replaced",
    )
    assert seen.joined_at.tzinfo is UTC


async def test_state_round_trip_and_report(db: Database) -> None:
    booking = uuid.uuid4()
    async with db.read() as session:
        assert await load_state(session, booking) == RoomState(booking)
        empty = await room_report(session, booking)
    assert empty.attendance == [] and empty.admitted_at is None
    state = RoomState(
        booking,
        admitted_at=START,
        id_checked_at=START + timedelta(minutes=1),
        interview_started_at=START + timedelta(minutes=2),
        step="discussion",
        ended_at=START + timedelta(minutes=20),
        outcome="completed",
        notes="é" * 20_000,
    )
    async with db.write() as session:
        await save_state(session, RoomState(booking, notes="draft"), now=START)
    async with db.write() as session:
        await save_state(session, state, now=START + timedelta(minutes=20))
    async with db.read() as session:
        assert await load_state(session, booking) == state
        report = await room_report(session, booking)
    assert (report.step, report.outcome, report.ended_at) == (
        "discussion",
        "completed",
        state.ended_at,
    )
