"""The booking transaction: a candidate chooses a time; Viva picks the evaluator.

No double booking, whatever the concurrency. On SQLite the write transaction is serialised
(BEGIN IMMEDIATE, see scheduler.db). On PostgreSQL the chosen evaluator's row is locked
(`SELECT … FOR UPDATE`) and their bookings re-read before the insert, so two transactions
booking one evaluator queue behind each other; the exclusion constraint on `bookings` and the
partial unique index (one active booking per candidate) back this up in the schema.

Each change here runs inside a write transaction it is given and writes its effects
(`BookingEffects`) in it; scheduler.booking_service opens, retries and commits the
transaction and runs what follows the commit, so no caller has to remember it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import bindparam, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.models import restart as room_restart
from rooms.tokens import new_nonce
from scheduler import assessments, history
from scheduler.calendars import (
    busy_intervals,
)
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
from scheduler.evaluator_choice import free_evaluator, lock_evaluator
from scheduler.history import Actor
from scheduler.models import ACTIVE_STATUSES, Booking, Candidate, Evaluator
from scheduler.policy import Policy, is_locked
from scheduler.sql import among


@dataclass(frozen=True)
class SlotView:
    start: datetime
    end: datetime


HELD_STATUSES = ("no_show", "completed")


class BookingEffects(Protocol):
    """What a booking change writes in its own transaction besides itself (messages, timer
    rows), and, for a new booking, what follows its commit (`confirm`). Required by every
    change, so none can be made without its mails; scheduler.effects.MailAndTimers is the
    app's, scheduler.booking_service.BookingService runs the change and `confirm`."""

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
    exists().where(Booking.candidate_id == Candidate.id, among(Booking.status, ACTIVE_STATUSES)),
    exists().where(Booking.candidate_id == Candidate.id, among(Booking.status, HELD_STATUSES)),
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
    return await free_evaluator(
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


def integrity_error(exc: IntegrityError) -> Exception:
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
    effects: BookingEffects,
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
    await assessments.start_over(session, booking.id)
    await history.record(
        session, booking, actor=actor, action=action, now=now, before=before, reason=reason
    )
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
    session: AsyncSession,
    *,
    candidate_id: uuid.UUID,
    start: datetime,
    policy: Policy,
    now: datetime,
    effects: BookingEffects,
    accepts: Callable[[Candidate], bool] | None = None,
) -> tuple[Booking, Candidate]:
    """Book `start` for the candidate in `session`'s write transaction, or raise SlotTaken /
    AlreadyBooked / DeadlinePassed; NotFound when `accepts` (the candidate's link, checked
    against the row read here, scheduler.links.CandidateCheck) refuses them.

    The transaction holds nothing but the checks and the inserts (booking, history, timers);
    the confirmations are composed and written after its commit (`BookingEffects.confirm`,
    run by scheduler.booking_service, whose caller's sweep writes them if the process dies
    in between: scheduler.confirmations). The evaluator choice cannot deadlock
    (scheduler.evaluator_choice).
    """
    candidate, active, held = await _candidate_standing(session, candidate_id)
    if accepts is not None and (candidate is None or not accepts(candidate)):
        raise NotFound("this link is not valid")
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
    await effects.booked(session, booking, candidate, now)
    return booking, candidate


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
    session: AsyncSession,
    *,
    candidate_id: uuid.UUID,
    start: datetime,
    policy: Policy,
    now: datetime,
    effects: BookingEffects,
) -> tuple[Booking, Candidate]:
    """Move the candidate's booking to `start`, keeping its room, UID and the candidate's
    links (the evaluator's link changes with the evaluator: see `_move`).

    One transaction: the new time is secured before the old one is released, so a failed
    reschedule leaves the old booking exactly as it was.
    """
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


async def _cancel(
    session: AsyncSession,
    booking: Booking,
    candidate: Candidate,
    *,
    actor: Actor,
    action: str,
    reason: str | None,
    now: datetime,
    effects: BookingEffects,
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
    await effects.cancelled(session, booking, candidate, reason=reason, now=now)


async def cancel(
    session: AsyncSession,
    *,
    candidate_id: uuid.UUID,
    policy: Policy,
    now: datetime,
    effects: BookingEffects,
) -> tuple[Booking, Candidate]:
    """The candidate cancels; they may book again while their deadline allows."""
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
    session: AsyncSession,
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
    effects: BookingEffects,
) -> Booking:
    """The organisation moves or cancels a booking, inside the lock or not, with a reason.

    Allowed until the interview ends. A move never double-books anyone: a named evaluator
    must examine the candidate's language and be free then (the organisation may go outside
    their published hours); without one, the current evaluator keeps it if free, else Viva
    picks a qualified evaluator whose availability covers the new time.
    """
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
    target = await _force_target(db, session, booking, candidate, start, evaluator_id, policy, now)
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


def force_majeure_integrity(exc: IntegrityError) -> Exception:
    """The schema caught what the locks did not: the evaluator was taken meanwhile."""
    return SlotTaken("that evaluator is not free then")


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
    # In a savepoint (PostgreSQL): an evaluator found busy under their lock is let go before
    # another is looked for, so this never waits for one evaluator's lock while holding
    # another's (the rule of scheduler.evaluator_choice: two moves cannot deadlock).
    attempt = None if db.sqlite else await session.begin_nested()
    if not db.sqlite:
        await lock_evaluator(session, wanted)
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
        if attempt is not None:
            await attempt.commit()  # releases the savepoint, keeps the lock
        return wanted
    if attempt is not None:
        await attempt.rollback()  # and with it the evaluator's lock
    if evaluator_id is not None:
        raise SlotTaken("that evaluator is not free then")
    return await free_evaluator(
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
