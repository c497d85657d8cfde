"""The timer rows as the claim-and-act pass sees them: what is due, the atomic claim, and
what becomes of a claimed row whose action failed.

A claim is one `UPDATE … WHERE done_at IS NULL … RETURNING` that marks the rows done in the
transaction that acts on them, so an action happens once and only with its claim, whichever
process, job or sweep got there first.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, type_coerce, update
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler import history
from scheduler.db import UTCDateTime
from scheduler.models import Booking, Timer
from scheduler.timers.plan import LAST_TRY_BEFORE_DEADLINE, deadline, retry_delay

__all__ = [
    "CLAIM_BATCH",
    "Claim",
    "Fired",
    "Held",
    "claim_statement",
    "due",
    "mark_dropped",
    "next_at",
    "retry_or_fail",
]

# Rows claimed per transaction: large enough for a burst, small enough that one failing
# commit or a slow mail render holds few rows back.
CLAIM_BATCH = 100
_t = Timer.__table__
# When a pending row is next due: its retry time once an action failed, else its due time.
next_at = type_coerce(func.coalesce(_t.c.retry_at, _t.c.due_at), UTCDateTime())


def due(now: datetime) -> Any:
    """Pending, due, and past its retry time if it has one (`due_at` first, for the index)."""
    return (
        _t.c.done_at.is_(None)
        & (_t.c.due_at <= now)
        & (_t.c.retry_at.is_(None) | (_t.c.retry_at <= now))
    )


@dataclass(frozen=True)
class Fired:
    """One claimed timer and what became of it: "done", "dropped", "retrying" (it raised and
    is tried again at `retry_at`) or "failed" (it kept raising until its deadline)."""

    id: uuid.UUID
    booking_id: uuid.UUID
    kind: str
    due_at: datetime
    claimed_at: datetime
    outcome: str
    mails: int
    retry_at: datetime | None = None


@dataclass(frozen=True)
class Claim:
    """A row the pass has claimed, with the attempts its action has already failed."""

    id: uuid.UUID
    booking_id: uuid.UUID
    kind: str
    due_at: datetime
    attempts: int = 0


@dataclass(frozen=True)
class Held:
    """What `TimerService._hold` needs of a row: its id, its booking and when it is next due."""

    id: uuid.UUID
    booking_id: uuid.UUID
    due_at: datetime


def claim_statement(now: datetime, limit: int) -> Any:
    """Take up to `limit` due rows, atomically, with their bookings.

    The WHERE is repeated outside the subquery: under PostgreSQL's READ COMMITTED a
    concurrent claimer re-evaluates it on the updated row and skips it. SKIP LOCKED makes a
    claimer pass over rows another process holds instead of waiting. The booking rows are
    locked too (FOR NO KEY UPDATE OF both tables), in the order booking changes take them
    (booking, then its timers) never being waited for: a booking in the middle of a change is
    skipped and its timer comes back at the next wake-up, already re-planned. SQLite ignores
    the locking clause; its write transaction is exclusive anyway (scheduler.db).
    """
    is_due = due(now)
    chosen = (
        select(_t.c.id)
        .join(Booking.__table__, Booking.__table__.c.id == _t.c.booking_id)
        .where(is_due)
        .order_by(_t.c.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True, key_share=True, of=[_t, Booking.__table__])
        # Materialised, so it runs once. As a plain `IN (subquery)` PostgreSQL may rescan it
        # for every candidate row, and the LIMIT then no longer bounds the claim.
        .cte("chosen")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    return (
        update(_t)
        .where(_t.c.id.in_(select(chosen.c.id)), is_due)
        .values(done_at=now, outcome="done")
        .returning(_t.c.id, _t.c.booking_id, _t.c.kind, _t.c.due_at, _t.c.attempts)
    )


async def mark_dropped(session: AsyncSession, claim: Claim) -> None:
    """The claim stays done, with the outcome saying its action no longer made sense."""
    await session.execute(update(_t).where(_t.c.id == claim.id).values(outcome="dropped"))


async def retry_or_fail(
    session: AsyncSession, claim: Claim, now: datetime, error: str
) -> datetime | None:
    """After an action raised (its savepoint rolled back): plan it again and return
    when, or when no useful try is left close it as "failed", in the booking's history too.

    The retry comes after the backoff, but never past the action's deadline: one whose
    backoff would pass it is brought forward to `LAST_TRY_BEFORE_DEADLINE` before it (a
    reminder failing at 09:58 for a 10:00 interview is tried again at 09:59:30, not given up
    because its 5-minute backoff ends after the start). Only when that moment is not after
    `now` (the failure was the last try, or came later) is the row failed. Such a try may
    come sooner than the backoff, and only once: the next failure is at or past it."""
    attempts = claim.attempts + 1
    retry_at = now + retry_delay(attempts)
    until = deadline(claim.kind, claim.due_at)
    if until is not None:
        retry_at = min(retry_at, until - LAST_TRY_BEFORE_DEADLINE)
    if retry_at > now:
        await session.execute(
            update(_t)
            .where(_t.c.id == claim.id)
            .values(
                done_at=None,
                outcome=None,
                attempts=attempts,
                retry_at=retry_at,
                last_error=error,
            )
        )
        return retry_at
    await session.execute(
        update(_t)
        .where(_t.c.id == claim.id)
        .values(outcome="failed", attempts=attempts, last_error=error)
    )
    booking = await session.get(Booking, claim.booking_id)
    if booking is not None:
        await history.record(
            session,
            booking,
            actor=history.SYSTEM,
            action="timer_failed",
            now=now,
            before=history.snapshot(booking),
            reason=f"{claim.kind} failed {attempts} times; last error: {error}"[:1000],
        )
    return None
