"""A new booking's confirmation messages, written just after the booking commits.

The booking transaction holds the evaluator's row lock (PostgreSQL) or the database's write
lock (SQLite) until it commits, so it does nothing but the check and the inserts. Composing
the two confirmations (templates, iCalendar, MIME: most of a booking's CPU) happens after
the commit, and a second transaction writes them: on SQLite they are composed before it
begins (it takes the one write lock); on PostgreSQL inside it, where it locks nothing but
the new booking's row.

No message can be lost between the two: a booking still without its confirmations in the
outbox is one whose second step never ran (the process died in between, or the second
transaction failed: the booking stands, and its answer is still 201,
scheduler.booking_service). The sweep here finds such bookings (active, never changed,
created a little while ago) and writes their confirmations, composed with the booking's
creation time as "now": the messages it would have had. The booking's row is locked before
its confirmations are looked for and written, so the request and a sweep, in any process,
never both write them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from aiohttp import web
from sqlalchemy import bindparam, exists, select

from mailer.models import outbox_messages
from scheduler import keys
from scheduler.db import Database
from scheduler.models import ACTIVE_STATUSES, Booking, Candidate
from scheduler.notify import Notifier

log = logging.getLogger("viva.confirmations")

GRACE = timedelta(minutes=1)  # the request path writes them within milliseconds
WINDOW = timedelta(days=2)  # how far back the sweep looks (a process down that long...)
INTERVAL = 60.0  # seconds between sweeps

KIND = "booking_confirmed"
# Its confirmations, not any message: a reminder, or re-issued links, may reach the outbox
# first when the process died between the booking's commit and its confirmations.
_HAS_CONFIRMATIONS = exists().where(
    outbox_messages.c.booking_id == Booking.id, outbox_messages.c.kind == KIND
)
# Built once (a statement built per call computes its cache key again).
_MINE = select(Booking).where(Booking.id == bindparam("booking_id"), ~_HAS_CONFIRMATIONS)
# PostgreSQL: the lock first, the check in a statement of its own after it. A locking
# SELECT that waited re-reads the row it locked, not a subquery: its NOT EXISTS would still
# be the snapshot from before the other writer committed the messages.
_LOCK = select(Booking).where(Booking.id == bindparam("booking_id")).with_for_update()
_WRITTEN = select(Booking.id).where(Booking.id == bindparam("booking_id"), _HAS_CONFIRMATIONS)


async def write_confirmations(
    db: Database, notifier: Notifier, booking: Booking, candidate: Candidate, now: datetime
) -> bool:
    """Compose, then write, the booking's confirmations unless it has messages already.

    True if they were written here. `now` is the booking's creation time.
    """
    mine = {"booking_id": booking.id}
    if db.sqlite:
        # Composed before the write transaction: it holds the database's one write lock.
        async with db.read() as session:
            contents = await notifier.confirmations(session, booking, candidate, now)
        async with db.write() as session:
            current = await session.scalar(_MINE, mine)
            if current is None:
                return False  # a sweep (or another process) wrote them first
            await notifier.write(session, current, contents, now)
        return True
    # PostgreSQL: composed inside, which spares a connection checkout; the only lock held
    # meanwhile is the new booking's own row, which nothing else is waiting for.
    async with db.write() as session:
        current = await session.scalar(_LOCK, mine)
        if current is None or await session.scalar(_WRITTEN, mine):
            return False
        contents = await notifier.confirmations(session, current, candidate, now)
        await notifier.write(session, current, contents, now)
    return True


async def sweep(db: Database, notifier: Notifier, now: datetime) -> int:
    """Write the confirmations of bookings that have none; returns how many bookings."""
    async with db.read() as session:
        rows = (
            await session.execute(
                select(Booking, Candidate)
                .join(Candidate, Candidate.id == Booking.candidate_id)
                .where(
                    Booking.sequence == 0,
                    Booking.status.in_(ACTIVE_STATUSES),
                    Booking.created_at <= now - GRACE,
                    Booking.created_at >= now - WINDOW,
                    ~_HAS_CONFIRMATIONS,
                )
            )
        ).all()
    done = 0
    for booking, candidate in rows:
        if await write_confirmations(db, notifier, booking, candidate, booking.created_at):
            log.warning("booking %s had no confirmation (a crash?); written now", booking.id)
            done += 1
    return done


async def confirmations_sweeper(app: web.Application) -> AsyncIterator[None]:
    """The sweep in the app's life: at start, then every INTERVAL seconds."""
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            try:
                await sweep(app[keys.DB], app[keys.NOTIFIER], app[keys.CLOCK].now())
            except Exception:
                log.exception("confirmation sweep failed; trying again later")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), INTERVAL)

    task = asyncio.create_task(loop(), name="viva-confirmations")
    yield
    stop.set()
    await task


__all__ = ["confirmations_sweeper", "sweep", "write_confirmations"]
