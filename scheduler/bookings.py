"""The booking transaction: a candidate chooses a time; Viva picks the evaluator.

No double booking, whatever the concurrency. On SQLite the write transaction is serialised
(BEGIN IMMEDIATE, see scheduler.db). On PostgreSQL the chosen evaluator's row is locked
(`SELECT … FOR UPDATE`) and their bookings re-read before the insert, so two transactions
booking one evaluator queue behind each other; the exclusion constraint on `bookings` and the
partial unique index (one active booking per candidate) back this up in the schema.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.tokens import new_nonce
from scheduler.calendars import busy_intervals, calendar_of, load_calendars
from scheduler.db import Database
from scheduler.errors import AlreadyBooked, DeadlinePassed, SlotTaken
from scheduler.models import ACTIVE_STATUSES, Booking, Candidate, Evaluator
from scheduler.policy import Policy
from scheduler.slots import choose_evaluator, find_slots, is_free, week_bounds

# Called inside the booking's transaction, so what it writes (messages, timers) commits or
# rolls back with the booking itself.
AfterBooking = Callable[[AsyncSession, Booking, Candidate], Awaitable[None]]


@dataclass(frozen=True)
class SlotView:
    start: datetime
    end: datetime


async def active_booking(session: AsyncSession, candidate_id: uuid.UUID) -> Booking | None:
    return await session.scalar(
        select(Booking).where(
            Booking.candidate_id == candidate_id, Booking.status.in_(ACTIVE_STATUSES)
        )
    )


def booking_closed(candidate: Candidate, policy: Policy, now: datetime) -> bool:
    """True once no interview can be booked any more before the candidate's deadline."""
    return candidate.book_by is not None and now + policy.min_notice + policy.interview > (
        candidate.book_by
    )


async def candidate_slots(
    session: AsyncSession,
    candidate: Candidate,
    policy: Policy,
    now: datetime,
    start: datetime,
    end: datetime,
) -> list[SlotView]:
    calendars = await load_calendars(
        session, candidate.organisation_id, candidate.language, start, end
    )
    slots = find_slots(calendars, policy, now, start, end, candidate.book_by)
    return [SlotView(s.start, s.end) for s in slots]


async def _week_counts(
    session: AsyncSession, evaluator_ids: list[uuid.UUID], at: datetime
) -> dict[uuid.UUID, int]:
    week_start, week_end = week_bounds(at)
    rows = await session.execute(
        select(Booking.evaluator_id, func.count())
        .where(
            Booking.evaluator_id.in_(evaluator_ids),
            Booking.status.in_(ACTIVE_STATUSES),
            Booking.start_at >= week_start,
            Booking.start_at < week_end,
        )
        .group_by(Booking.evaluator_id)
    )
    return {eid: n for eid, n in rows}


async def _lock_evaluator(session: AsyncSession, evaluator_id: uuid.UUID) -> bool:
    """Take the evaluator's row lock (PostgreSQL); False if they were removed meanwhile."""
    locked = await session.scalar(
        select(Evaluator.id)
        .where(Evaluator.id == evaluator_id, Evaluator.deleted_at.is_(None))
        .with_for_update()
    )
    return locked is not None


async def book(
    db: Database,
    *,
    candidate_id: uuid.UUID,
    start: datetime,
    policy: Policy,
    now: datetime,
    after: AfterBooking | None = None,
) -> tuple[Booking, Candidate]:
    """Book `start` for the candidate, or raise SlotTaken / AlreadyBooked / DeadlinePassed."""
    try:
        async with db.write() as session:
            candidate = await session.get(Candidate, candidate_id)
            if candidate is None:
                raise SlotTaken("candidate not found")
            if await active_booking(session, candidate.id) is not None:
                raise AlreadyBooked("this candidate already has an interview booked")
            if booking_closed(candidate, policy, now):
                raise DeadlinePassed("the booking deadline has passed")
            # The evaluator's local day around `start` (for the daily cap) plus the buffer.
            day = timedelta(days=1)
            calendars = await load_calendars(
                session,
                candidate.organisation_id,
                candidate.language,
                start - day,
                start + day,
                margin=timedelta(0),
            )
            by_id = {c.id: c for c in calendars}
            free = [c.id for c in calendars if is_free(c, policy, now, start, candidate.book_by)]
            if not free:
                raise SlotTaken("this time is no longer available")
            counts = await _week_counts(session, free, start)
            for evaluator_id in choose_evaluator(free, counts):
                calendar = by_id[evaluator_id]
                if not db.sqlite:
                    # PostgreSQL runs writers concurrently: lock the evaluator, then re-read
                    # their bookings, which another transaction may have changed meanwhile.
                    # (SQLite's write transaction is already exclusive from its first read.)
                    if not await _lock_evaluator(session, evaluator_id):
                        continue
                    busy = await busy_intervals(
                        session, [evaluator_id], start - day, start + day, timedelta(0)
                    )
                    calendar = calendar_of(
                        calendar.id,
                        calendar.tz.key,
                        calendar.availability,
                        busy.get(evaluator_id, []),
                    )
                    if not is_free(calendar, policy, now, start, candidate.book_by):
                        continue
                booking = Booking(
                    id=uuid.uuid4(),
                    organisation_id=candidate.organisation_id,
                    candidate_id=candidate.id,
                    evaluator_id=evaluator_id,
                    start_at=start,
                    end_at=start + policy.interview,
                    block_end=start + policy.interview + policy.buffer,
                    status="confirmed",
                    sequence=0,
                    room_nonce=new_nonce(),
                    created_at=now,
                    updated_at=now,
                )
                session.add(booking)
                await session.flush()
                if after is not None:
                    await after(session, booking, candidate)
                return booking, candidate
            raise SlotTaken("this time is no longer available")
    except IntegrityError as exc:
        # The schema caught a race the row locks did not (e.g. one candidate in two tabs).
        if "uq_bookings_active_candidate" in str(exc.orig) or "candidate_id" in str(exc.orig):
            raise AlreadyBooked("this candidate already has an interview booked") from exc
        raise SlotTaken("this time is no longer available") from exc
