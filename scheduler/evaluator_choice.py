"""Which evaluator takes a booking at a given time, and the row lock that makes it theirs.

Among the qualified evaluators free at the time, the one with the fewest bookings that week,
equals in an order drawn per start (scheduler.slots.choose_evaluator). On PostgreSQL the
chosen evaluator's row is locked (`SELECT … FOR UPDATE`) and their bookings re-read before
the choice is final, in a way that cannot deadlock (`_lock_free`); on SQLite the write
transaction is already exclusive from its first read (scheduler.db). Used by every booking
change (scheduler.bookings).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from datetime import datetime, timedelta

from sqlalchemy import Uuid, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.availability import LocalClock
from scheduler.calendars import busy_intervals, calendar_of, external_busy, qualified_for_booking
from scheduler.db import Database
from scheduler.errors import SlotTaken
from scheduler.models import Evaluator
from scheduler.policy import Policy
from scheduler.slots import EvaluatorCalendar, choose_evaluator, is_free, week_bounds
from scheduler.sql import any_of

# After the first preferred evaluator, how many more have their bookings read at a time.
_BATCHES = (4, 16)

_LOCK_EVALUATOR = (
    select(Evaluator.id)
    .where(Evaluator.id == bindparam("evaluator_id"), Evaluator.deleted_at.is_(None))
    .with_for_update()
)


# Of `ids`, the first in that order whose row nobody holds, locked (PostgreSQL only).
_FIRST_LOCKABLE = (
    select(Evaluator.id)
    .where(any_of(Evaluator.id, "ids"), Evaluator.deleted_at.is_(None))
    .order_by(func.array_position(bindparam("order", type_=ARRAY(Uuid())), Evaluator.id))
    .limit(1)
    .with_for_update(skip_locked=True)
)


async def lock_evaluator(session: AsyncSession, evaluator_id: uuid.UUID) -> bool:
    """Take the evaluator's row lock (PostgreSQL); False if they were removed meanwhile."""
    locked = await session.scalar(_LOCK_EVALUATOR, {"evaluator_id": evaluator_id})
    return locked is not None


async def _lock_free(
    session: AsyncSession,
    preferred: AsyncGenerator[list[uuid.UUID], None],
    still_free: Callable[[uuid.UUID], Awaitable[bool]],
) -> uuid.UUID | None:
    """Lock the first evaluator in `preferred` (batches, best first) who is still free under
    their lock (PostgreSQL).

    Deadlock-free by construction: a transaction never waits for an evaluator's lock while
    holding another's. Each try has its own savepoint: an evaluator who turns out busy under
    their lock is let go at once (rollback to the savepoint releases the row lock), the one
    who is free stays locked (the savepoint is released) until the commit. First, without
    waiting (`SKIP LOCKED`), the evaluators are tried in order of preference and those that
    another transaction holds are set aside; this also spreads a crowd, as concurrent
    bookings that prefer one evaluator take the next instead of queuing behind them. Only if
    none was free are the set-aside ones waited for, one at a time.

    The batches are read one after another, only as far as needed: in a crowd most
    transactions find the preferred evaluator held, and the next few usually have one free,
    so the bookings of every later evaluator are not read.
    """
    skipped: list[uuid.UUID] = []
    async with aclosing(preferred):
        async for batch in preferred:
            remaining = batch
            while remaining:
                # One statement finds the first of these that nobody holds, however many do.
                attempt = await session.begin_nested()
                got = await session.scalar(_FIRST_LOCKABLE, {"ids": remaining, "order": remaining})
                if got is None:
                    await attempt.rollback()
                    skipped += remaining
                    break
                at = remaining.index(got)
                skipped += remaining[:at]
                if await still_free(got):
                    await attempt.commit()  # releases the savepoint, keeps the lock
                    return got
                await attempt.rollback()  # and with it the lock
                remaining = remaining[at + 1 :]
    for evaluator_id in skipped:
        if await _try(session, evaluator_id, still_free):
            return evaluator_id
    return None


async def _try(
    session: AsyncSession,
    evaluator_id: uuid.UUID,
    still_free: Callable[[uuid.UUID], Awaitable[bool]],
) -> bool:
    """Wait for one evaluator's lock inside a savepoint; keep it only if they are still free."""
    attempt = await session.begin_nested()
    if await lock_evaluator(session, evaluator_id) and await still_free(evaluator_id):
        await attempt.commit()  # releases the savepoint, keeps the lock
        return True
    await attempt.rollback()  # and with it the lock, if it was taken
    return False


async def free_evaluator(
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
    week, equals in an order drawn per start (scheduler.slots.choose_evaluator). On
    PostgreSQL the evaluator's row is locked and their bookings re-read before the choice is
    final (see `_lock_free`); on SQLite the write transaction is already exclusive from its
    first read.

    The qualified evaluators are put in that order first and tried one after another, so
    the first free one is the preferred among the free ones. That lets the bookings read
    be, most of the time, one evaluator's rather than every qualified evaluator's.
    """
    week_start, week_end = week_bounds(start)
    rows = await qualified_for_booking(session, organisation_id, language, week_start, week_end)
    evaluators = {eid: (tz, av) for eid, tz, av, _count, _has in rows}
    counts = {eid: n for eid, _tz, _av, n, _has in rows if n}
    order = choose_evaluator(list(evaluators), counts, start)
    day = timedelta(days=1)  # the evaluator's local day around `start`, for the daily cap
    # Their own calendars' busy times: the last good copy in the database, never a fetch;
    # read only for those who have calendars (usually nobody: no query at all).
    with_calendars = [eid for eid, _tz, _av, _n, has in rows if has]
    external = (
        await external_busy(session, with_calendars, start - day, start + day, timedelta(0))
        if with_calendars
        else {}
    )

    clocks: dict[str, LocalClock] = {}  # one per zone: most evaluators share theirs

    def free_in(cal: EvaluatorCalendar, tz: str) -> bool:
        clock = clocks.get(tz)
        if clock is None:
            clock = clocks[tz] = LocalClock(cal.tz)
        return is_free(cal, policy, now, start, deadline, clock)

    def hours_allow(evaluator_id: uuid.UUID) -> bool:
        # Bookings only ever take starts away: whoever's hours (and the notice, horizon and
        # deadline, and their own calendar) leave `start` out cannot be free then, whatever
        # they have booked.
        tz, availability = evaluators[evaluator_id]
        cal = calendar_of(evaluator_id, tz, availability, [], external.get(evaluator_id))
        return free_in(cal, tz)

    first = next((i for i, eid in enumerate(order) if hours_allow(eid)), len(order))
    # The preferred evaluator whose hours allow `start` is usually free: their bookings are
    # read alone; then, only as far as needed, the next 4, the next 16, and all the rest.
    batches = [order[first : first + 1]]
    at = first + 1
    for size in _BATCHES:
        batches.append(order[at : at + size])
        at += size
    batches.append(order[at:])

    async def still_free(evaluator_id: uuid.UUID) -> bool:
        """Re-read under the evaluator's lock: what other transactions committed counts."""
        tz, availability = evaluators[evaluator_id]
        fresh = await busy_intervals(
            session, [evaluator_id], start - day, start + day, timedelta(0), exclude
        )
        cal = calendar_of(
            evaluator_id, tz, availability, fresh.get(evaluator_id, []), external.get(evaluator_id)
        )
        return free_in(cal, tz)

    async def looking_free() -> AsyncGenerator[list[uuid.UUID], None]:
        """The evaluators free at `start` by this transaction's first reads, best first, a
        batch at a time (each batch's bookings in one query); on PostgreSQL the first batch
        unread, as its one evaluator is read under their lock anyway."""
        for n, batch in enumerate(batches):
            if not batch:
                continue
            if n == 0 and not db.sqlite:
                # On PostgreSQL whoever is yielded is read again under their lock
                # (`still_free`, the read that decides): the first, usually free, is read
                # only there.
                yield batch
                continue
            busy = await busy_intervals(
                session, batch, start - day, start + day, timedelta(0), exclude
            )
            free = []
            for evaluator_id in batch:
                tz, availability = evaluators[evaluator_id]
                cal = calendar_of(
                    evaluator_id,
                    tz,
                    availability,
                    busy.get(evaluator_id, []),
                    external.get(evaluator_id),
                )
                if free_in(cal, tz):
                    free.append(evaluator_id)
            if free:
                yield free

    if db.sqlite:
        async with aclosing(looking_free()) as free:
            async for batch in free:
                return batch[0]
    else:
        chosen = await _lock_free(session, looking_free(), still_free)
        if chosen is not None:
            return chosen
    raise SlotTaken("this time is no longer available")
