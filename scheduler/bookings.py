"""The booking transaction: a candidate chooses a time; Viva picks the evaluator.

No double booking, whatever the concurrency. On SQLite the write transaction is serialised
(BEGIN IMMEDIATE, see scheduler.db). On PostgreSQL the chosen evaluator's row is locked
(`SELECT … FOR UPDATE`) and their bookings re-read before the insert, so two transactions
booking one evaluator queue behind each other; the exclusion constraint on `bookings` and the
partial unique index (one active booking per candidate) back this up in the schema.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Uuid, bindparam, exists, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.models import restart as room_restart
from rooms.tokens import new_nonce
from scheduler import history
from scheduler.calendars import (
    busy_intervals,
    calendar_of,
    load_calendars,
    qualified_evaluators,
)
from scheduler.contention import retry_conflicts
from scheduler.db import Database
from scheduler.errors import (
    AlreadyBooked,
    Conflict,
    DeadlinePassed,
    FieldError,
    Locked,
    NoBooking,
    NotFound,
    SlotTaken,
    ValidationFailed,
)
from scheduler.history import Actor
from scheduler.models import ACTIVE_STATUSES, Booking, Candidate, Evaluator
from scheduler.policy import Policy, is_locked
from scheduler.slots import choose_evaluator, find_slots, is_free, week_bounds


@dataclass(frozen=True)
class SlotView:
    start: datetime
    end: datetime


HELD_STATUSES = ("no_show", "completed")


async def held_booking(session: AsyncSession, candidate_id: uuid.UUID) -> Booking | None:
    """A booking whose interview took place or was missed: the candidate's turn is used."""
    return await session.scalar(
        select(Booking)
        .where(Booking.candidate_id == candidate_id, Booking.status.in_(HELD_STATUSES))
        .limit(1)
    )


async def active_booking(
    session: AsyncSession, candidate_id: uuid.UUID, *, for_update: bool = False
) -> Booking | None:
    stmt = select(Booking).where(
        Booking.candidate_id == candidate_id, Booking.status.in_(ACTIVE_STATUSES)
    )
    if for_update and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()  # two tabs changing one booking queue up
    return await session.scalar(stmt)


# The candidate, and whether they hold an active or a held booking, in one round trip: what
# `session.get` plus `active_booking` and `held_booking` told in three. Built once: the
# statement's construction and cache key would otherwise be redone on every booking.
_CANDIDATE_STANDING = select(
    Candidate,
    exists().where(Booking.candidate_id == Candidate.id, Booking.status.in_(ACTIVE_STATUSES)),
    exists().where(Booking.candidate_id == Candidate.id, Booking.status.in_(HELD_STATUSES)),
).where(Candidate.id == bindparam("candidate_id"))


async def _candidate_standing(
    session: AsyncSession, candidate_id: uuid.UUID
) -> tuple[Candidate | None, bool, bool]:
    """(candidate or None, has an active booking, has a held booking)."""
    row = (await session.execute(_CANDIDATE_STANDING, {"candidate_id": candidate_id})).first()
    if row is None:
        return None, False, False
    return row[0], bool(row[1]), bool(row[2])


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


_WEEK_COUNTS = (
    select(Booking.evaluator_id, func.count())
    .where(
        Booking.evaluator_id.in_(bindparam("evaluator_ids", expanding=True)),
        Booking.status.in_(ACTIVE_STATUSES),
        Booking.start_at >= bindparam("week_start", type_=Booking.start_at.type),
        Booking.start_at < bindparam("week_end", type_=Booking.start_at.type),
    )
    .group_by(Booking.evaluator_id)
)


async def _week_counts(
    session: AsyncSession, evaluator_ids: list[uuid.UUID], at: datetime
) -> dict[uuid.UUID, int]:
    week_start, week_end = week_bounds(at)
    rows = await session.execute(
        _WEEK_COUNTS,
        {"evaluator_ids": evaluator_ids, "week_start": week_start, "week_end": week_end},
    )
    return {eid: n for eid, n in rows}


_LOCK_EVALUATOR = (
    select(Evaluator.id)
    .where(Evaluator.id == bindparam("evaluator_id"), Evaluator.deleted_at.is_(None))
    .with_for_update()
)


# The same lock, not waited for: None when another transaction holds it (or they were removed).
_TRY_LOCK_EVALUATOR = (
    select(Evaluator.id)
    .where(Evaluator.id == bindparam("evaluator_id"), Evaluator.deleted_at.is_(None))
    .with_for_update(skip_locked=True)
)


# Of `ids`, the first in that order whose row nobody holds, locked (PostgreSQL only).
_FIRST_LOCKABLE = (
    select(Evaluator.id)
    .where(Evaluator.id.in_(bindparam("ids", expanding=True)), Evaluator.deleted_at.is_(None))
    .order_by(func.array_position(bindparam("order", type_=ARRAY(Uuid())), Evaluator.id))
    .limit(1)
    .with_for_update(skip_locked=True)
)


async def _lock_evaluator(
    session: AsyncSession, evaluator_id: uuid.UUID, *, wait: bool = True
) -> bool:
    """Take the evaluator's row lock (PostgreSQL); False if they were removed meanwhile, or,
    with `wait=False`, if another transaction holds it now."""
    stmt = _LOCK_EVALUATOR if wait else _TRY_LOCK_EVALUATOR
    locked = await session.scalar(stmt, {"evaluator_id": evaluator_id})
    return locked is not None


class Effects(Protocol):
    """What follows a change, written in the change's own transaction (messages, timers)."""

    async def booked(
        self, session: AsyncSession, booking: Booking, candidate: Candidate, now: datetime
    ) -> None: ...

    async def confirm(
        self, db: Database, booking: Booking, candidate: Candidate, now: datetime
    ) -> None:
        """After the booking's commit: what need not hold its locks (the messages)."""
        ...

    async def moved(
        self,
        session: AsyncSession,
        booking: Booking,
        candidate: Candidate,
        *,
        previous_start: datetime,
        previous_evaluator_id: uuid.UUID,
        reason: str | None,
        now: datetime,
    ) -> None: ...

    async def cancelled(
        self,
        session: AsyncSession,
        booking: Booking,
        candidate: Candidate,
        *,
        reason: str | None,
        now: datetime,
    ) -> None: ...


async def _lock_free(
    session: AsyncSession,
    preferred: AsyncGenerator[uuid.UUID, None],
    still_free: Callable[[uuid.UUID], Awaitable[bool]],
) -> uuid.UUID | None:
    """Lock the first evaluator in `preferred` who is still free under their lock (PostgreSQL).

    Deadlock-free by construction: a transaction never waits for an evaluator's lock while
    holding another's. Each try has its own savepoint: an evaluator who turns out busy under
    their lock is let go at once (rollback to the savepoint releases the row lock), the one
    who is free stays locked (the savepoint is released) until the commit. First, without
    waiting (`SKIP LOCKED`), the evaluators are tried in order of preference and those that
    another transaction holds are set aside; this also spreads a crowd, as concurrent
    bookings that prefer one evaluator take the next instead of queuing behind them. Only if
    none was free are the set-aside ones waited for, one at a time.
    """
    skipped: list[uuid.UUID] = []
    async with aclosing(preferred):
        async for evaluator_id in preferred:
            # The first alone: usually free, and then the later ones' bookings are not read.
            if await _try(session, evaluator_id, still_free, wait=False, skipped=skipped):
                return evaluator_id
            break
        remaining = [evaluator_id async for evaluator_id in preferred]
    while remaining:
        # One statement finds the first of the rest that nobody holds, however many do.
        attempt = await session.begin_nested()
        got = await session.scalar(_FIRST_LOCKABLE, {"ids": remaining, "order": remaining})
        if got is None:
            await attempt.rollback()
            skipped += remaining
            break
        at = remaining.index(got)
        skipped += remaining[:at]
        if await still_free(got):
            await attempt.commit()
            return got
        await attempt.rollback()
        remaining = remaining[at + 1 :]
    for evaluator_id in skipped:
        if await _try(session, evaluator_id, still_free, wait=True):
            return evaluator_id
    return None


async def _try(
    session: AsyncSession,
    evaluator_id: uuid.UUID,
    still_free: Callable[[uuid.UUID], Awaitable[bool]],
    *,
    wait: bool,
    skipped: list[uuid.UUID] | None = None,
) -> bool:
    """Lock one evaluator inside a savepoint; keep the lock only if they are still free."""
    attempt = await session.begin_nested()
    if await _lock_evaluator(session, evaluator_id, wait=wait):
        if await still_free(evaluator_id):
            await attempt.commit()  # releases the savepoint, keeps the lock
            return True
    elif skipped is not None:
        skipped.append(evaluator_id)  # held by another transaction (or just removed)
    await attempt.rollback()  # and with it the lock, if it was taken
    return False


async def _free_evaluator(
    db: Database,
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    language: str,
    start: datetime,
    policy: Policy,
    now: datetime,
    deadline: datetime | None,
    exclude: uuid.UUID | None = None,
) -> uuid.UUID:
    """The evaluator a booking at `start` goes to, or SlotTaken.

    Among the qualified evaluators free at `start`, the one with the fewest bookings that
    week (ties broken by id). On PostgreSQL the evaluator's row is locked and their
    bookings re-read before the choice is final (see `_lock_free`); on SQLite the write
    transaction is already exclusive from its first read.

    The qualified evaluators are put in that order first and tried one after another, so
    the first free one is the preferred among the free ones. That lets the bookings read
    be, most of the time, one evaluator's rather than every qualified evaluator's.
    """
    evaluators = {
        eid: (tz, av)
        for eid, tz, av in await qualified_evaluators(session, organisation_id, language)
    }
    counts = await _week_counts(session, list(evaluators), start) if evaluators else {}
    order = choose_evaluator(list(evaluators), counts)

    def hours_allow(evaluator_id: uuid.UUID) -> bool:
        # Bookings only ever take starts away: whoever's hours (and the notice, horizon and
        # deadline) leave `start` out cannot be free then, whatever they have booked.
        tz, availability = evaluators[evaluator_id]
        return is_free(
            calendar_of(evaluator_id, tz, availability, []), policy, now, start, deadline
        )

    first = next((i for i, eid in enumerate(order) if hours_allow(eid)), len(order))
    # The preferred evaluator whose hours allow `start` is usually free: their bookings are
    # read alone, and only if they are not free, all the later ones' in one more query.
    batches = [order[first : first + 1], order[first + 1 :]]
    day = timedelta(days=1)  # the evaluator's local day around `start`, for the daily cap

    async def still_free(evaluator_id: uuid.UUID) -> bool:
        """Re-read under the evaluator's lock: what other transactions committed counts."""
        tz, availability = evaluators[evaluator_id]
        fresh = await busy_intervals(
            session, [evaluator_id], start - day, start + day, timedelta(0), exclude
        )
        cal = calendar_of(evaluator_id, tz, availability, fresh.get(evaluator_id, []))
        return is_free(cal, policy, now, start, deadline)

    async def looking_free() -> AsyncGenerator[uuid.UUID, None]:
        """The evaluators free at `start` by this transaction's first reads, best first."""
        for batch in batches:
            if not batch:
                continue
            busy = await busy_intervals(
                session, batch, start - day, start + day, timedelta(0), exclude
            )
            for evaluator_id in batch:
                tz, availability = evaluators[evaluator_id]
                cal = calendar_of(evaluator_id, tz, availability, busy.get(evaluator_id, []))
                if is_free(cal, policy, now, start, deadline):
                    yield evaluator_id

    if db.sqlite:
        async with aclosing(looking_free()) as free:
            async for evaluator_id in free:
                return evaluator_id
    else:
        chosen = await _lock_free(session, looking_free(), still_free)
        if chosen is not None:
            return chosen
    raise SlotTaken("this time is no longer available")


async def _evaluator_for(
    db: Database,
    session: AsyncSession,
    candidate: Candidate,
    start: datetime,
    policy: Policy,
    now: datetime,
    exclude: uuid.UUID | None = None,
) -> uuid.UUID:
    """The evaluator for a candidate's own booking: their language, their deadline."""
    return await _free_evaluator(
        db,
        session,
        organisation_id=candidate.organisation_id,
        language=candidate.language,
        start=start,
        policy=policy,
        now=now,
        deadline=candidate.book_by,
        exclude=exclude,
    )


def _integrity(exc: IntegrityError) -> Exception:
    """The schema caught a race the row locks did not (e.g. one candidate in two tabs)."""
    if "uq_bookings_active_candidate" in str(exc.orig) or "candidate_id" in str(exc.orig):
        return AlreadyBooked("this candidate already has an interview booked")
    return SlotTaken("this time is no longer available")


def _place(booking: Booking, start: datetime, evaluator_id: uuid.UUID, policy: Policy) -> None:
    booking.start_at = start
    booking.end_at = start + policy.interview
    booking.block_end = start + policy.interview + policy.buffer
    booking.evaluator_id = evaluator_id


async def _move(
    session: AsyncSession,
    booking: Booking,
    candidate: Candidate,
    start: datetime,
    evaluator_id: uuid.UUID,
    *,
    policy: Policy,
    now: datetime,
    actor: Actor,
    action: str,
    reason: str | None,
    effects: Effects | None,
) -> None:
    """Put an active booking at a new time (and maybe evaluator): same row, UID and room;
    SEQUENCE + 1; history and effects in the same transaction.

    Another evaluator gets a new room link (a new nonce): the replaced evaluator's link
    stops working at once; the candidate's link is kept.
    """
    before = history.snapshot(booking)
    previous_start, previous_evaluator = booking.start_at, booking.evaluator_id
    if evaluator_id != previous_evaluator:
        booking.evaluator_room_nonce = new_nonce()
    _place(booking, start, evaluator_id, policy)
    booking.sequence += 1
    booking.updated_at = now
    booking.status = "locked" if is_locked(start, now, policy) else "confirmed"
    await session.flush()
    await room_restart(session, booking.id, now=now)
    await history.record(
        session, booking, actor=actor, action=action, now=now, before=before, reason=reason
    )
    if effects is not None:
        await effects.moved(
            session,
            booking,
            candidate,
            previous_start=previous_start,
            previous_evaluator_id=previous_evaluator,
            reason=reason,
            now=now,
        )


async def book(
    db: Database,
    *,
    candidate_id: uuid.UUID,
    start: datetime,
    policy: Policy,
    now: datetime,
    effects: Effects | None = None,
) -> tuple[Booking, Candidate]:
    """Book `start` for the candidate, or raise SlotTaken / AlreadyBooked / DeadlinePassed.

    A transaction PostgreSQL refuses as a deadlock or a serialization failure is run again
    (scheduler.contention); the evaluator choice itself cannot deadlock (`_lock_free`). The
    transaction holds nothing but the checks and the inserts (booking, history, timers); the
    confirmations are composed and written after its commit (scheduler.confirmations, whose
    sweep writes them if the process dies in between).
    """
    booking, candidate = await retry_conflicts(
        db.contention,
        lambda: _book_once(
            db, candidate_id=candidate_id, start=start, policy=policy, now=now, effects=effects
        ),
        what="booking",
    )
    if effects is not None:
        await effects.confirm(db, booking, candidate, now)
    return booking, candidate


async def _book_once(
    db: Database,
    *,
    candidate_id: uuid.UUID,
    start: datetime,
    policy: Policy,
    now: datetime,
    effects: Effects | None,
) -> tuple[Booking, Candidate]:
    try:
        async with db.write() as session:
            candidate, active, held = await _candidate_standing(session, candidate_id)
            if candidate is None:
                raise SlotTaken("candidate not found")
            if active:
                raise AlreadyBooked("this candidate already has an interview booked")
            if booking_closed(candidate, policy, now):
                raise DeadlinePassed("the booking deadline has passed")
            if held:
                raise AlreadyBooked(
                    "this candidate's interview has taken place or was missed; only the "
                    "training organisation can arrange another"
                )
            evaluator_id = await _evaluator_for(db, session, candidate, start, policy, now)
            booking = Booking(
                id=uuid.uuid4(),
                organisation_id=candidate.organisation_id,
                candidate_id=candidate.id,
                status="confirmed",
                sequence=0,
                created_at=now,
                updated_at=now,
            )
            _place(booking, start, evaluator_id, policy)
            if is_locked(start, now, policy):
                booking.status = "locked"
            session.add(booking)
            await session.flush()
            await history.record(
                session,
                booking,
                actor=Actor("candidate", candidate.name),
                action="booked",
                now=now,
                new=True,
            )
            if effects is not None:
                await effects.booked(session, booking, candidate, now)
            return booking, candidate
    except IntegrityError as exc:
        raise _integrity(exc) from exc


async def _candidate_booking(
    session: AsyncSession, candidate_id: uuid.UUID, policy: Policy, now: datetime
) -> tuple[Candidate, Booking]:
    candidate = await session.get(Candidate, candidate_id)
    if candidate is None:
        raise NoBooking("no such candidate")
    booking = await active_booking(session, candidate.id, for_update=True)
    if booking is None:
        raise NoBooking("there is no interview booked to change")
    if is_locked(booking.start_at, now, policy):
        raise Locked(
            "changes close "
            f"{policy.change_lock_hours} hours before the interview; only the training "
            "organisation can move or cancel it now"
        )
    return candidate, booking


async def reschedule(
    db: Database,
    *,
    candidate_id: uuid.UUID,
    start: datetime,
    policy: Policy,
    now: datetime,
    effects: Effects | None = None,
) -> tuple[Booking, Candidate]:
    """Move the candidate's booking to `start`, keeping its room, UID and the candidate's
    links (the evaluator's link changes with the evaluator: see `_move`).

    One transaction: the new time is secured before the old one is released, so a failed
    reschedule leaves the old booking exactly as it was.
    """
    try:
        async with db.write() as session:
            candidate, booking = await _candidate_booking(session, candidate_id, policy, now)
            evaluator_id = await _evaluator_for(
                db, session, candidate, start, policy, now, exclude=booking.id
            )
            await _move(
                session,
                booking,
                candidate,
                start,
                evaluator_id,
                policy=policy,
                now=now,
                actor=Actor("candidate", candidate.name),
                action="rescheduled",
                reason=None,
                effects=effects,
            )
            return booking, candidate
    except IntegrityError as exc:
        raise _integrity(exc) from exc


async def _cancel(
    session: AsyncSession,
    booking: Booking,
    candidate: Candidate,
    *,
    actor: Actor,
    action: str,
    reason: str | None,
    now: datetime,
    effects: Effects | None,
) -> None:
    before = history.snapshot(booking)
    booking.status = "cancelled"
    booking.sequence += 1
    booking.updated_at = now
    booking.cancel_reason = reason
    booking.candidate_room_nonce = new_nonce()  # revokes both room links
    booking.evaluator_room_nonce = new_nonce()
    await session.flush()
    await history.record(
        session, booking, actor=actor, action=action, now=now, before=before, reason=reason
    )
    if effects is not None:
        await effects.cancelled(session, booking, candidate, reason=reason, now=now)


async def cancel(
    db: Database,
    *,
    candidate_id: uuid.UUID,
    policy: Policy,
    now: datetime,
    effects: Effects | None = None,
) -> tuple[Booking, Candidate]:
    """The candidate cancels; they may book again while their deadline allows."""
    async with db.write() as session:
        candidate, booking = await _candidate_booking(session, candidate_id, policy, now)
        await _cancel(
            session,
            booking,
            candidate,
            actor=Actor("candidate", candidate.name),
            action="cancelled",
            reason=None,
            now=now,
            effects=effects,
        )
        return booking, candidate


async def force_majeure(
    db: Database,
    *,
    organisation_id: uuid.UUID,
    booking_id: uuid.UUID,
    action: str,
    reason: str,
    actor: Actor,
    policy: Policy,
    now: datetime,
    start: datetime | None = None,
    evaluator_id: uuid.UUID | None = None,
    effects: Effects | None = None,
) -> Booking:
    """The organisation moves or cancels a booking, inside the lock or not, with a reason.

    Allowed until the interview ends. A move never double-books anyone: a named evaluator
    must examine the candidate's language and be free then (the organisation may go outside
    their published hours); without one, the current evaluator keeps it if free, else Viva
    picks a qualified evaluator whose availability covers the new time.
    """
    try:
        async with db.write() as session:
            booking = await session.get(Booking, booking_id, with_for_update=not db.sqlite)
            if booking is None or booking.organisation_id != organisation_id:
                raise NotFound("no such booking")
            if booking.status not in ACTIVE_STATUSES:
                raise Conflict(f"this booking is {booking.status}; there is nothing to change")
            if now >= booking.end_at:
                raise Conflict("this interview has already ended")
            candidate = await session.get(Candidate, booking.candidate_id)
            assert candidate is not None  # foreign key
            if action == "cancel":
                await _cancel(
                    session,
                    booking,
                    candidate,
                    actor=actor,
                    action="force_majeure_cancel",
                    reason=reason,
                    now=now,
                    effects=effects,
                )
                return booking
            assert start is not None  # the request model requires it for a move
            target = await _force_target(
                db, session, booking, candidate, start, evaluator_id, policy, now
            )
            await _move(
                session,
                booking,
                candidate,
                start,
                target,
                policy=policy,
                now=now,
                actor=actor,
                action="force_majeure_move",
                reason=reason,
                effects=effects,
            )
            return booking
    except IntegrityError as exc:
        raise SlotTaken("that evaluator is not free then") from exc


async def _force_target(
    db: Database,
    session: AsyncSession,
    booking: Booking,
    candidate: Candidate,
    start: datetime,
    evaluator_id: uuid.UUID | None,
    policy: Policy,
    now: datetime,
) -> uuid.UUID:
    if start < now:
        raise ValidationFailed([FieldError("start", "must be in the future")])
    # The organisation decides: no minimum notice, no horizon, no candidate deadline.
    unbounded = replace(policy, min_notice_hours=0, booking_horizon_days=3650)
    wanted = evaluator_id or booking.evaluator_id
    evaluator = await session.get(Evaluator, wanted)
    if (
        evaluator is None
        or evaluator.organisation_id != booking.organisation_id
        or evaluator.deleted_at is not None
    ):
        raise ValidationFailed([FieldError("evaluator_id", "no such evaluator")])
    if candidate.language not in evaluator.languages:
        raise ValidationFailed(
            [FieldError("evaluator_id", f"this evaluator does not examine {candidate.language}")]
        )
    if not db.sqlite:
        await _lock_evaluator(session, wanted)
    busy = await busy_intervals(
        session,
        [wanted],
        start - timedelta(days=1),
        start + timedelta(days=1),
        timedelta(0),
        booking.id,
    )
    end = start + policy.interview
    clear = all(
        not (start < b_end + policy.buffer and b_start < end + policy.buffer)
        for b_start, b_end in busy.get(wanted, [])
    )
    if clear:
        return wanted
    if evaluator_id is not None:
        raise SlotTaken("that evaluator is not free then")
    return await _free_evaluator(
        db,
        session,
        organisation_id=booking.organisation_id,
        language=candidate.language,
        start=start,
        policy=unbounded,
        now=now,
        deadline=None,
        exclude=booking.id,
    )
