"""A new booking's confirmation messages, written just after the booking commits.

The booking transaction holds the evaluator's row lock (PostgreSQL) or the database's write
lock (SQLite) until it commits, so it does nothing but the check and the inserts. Composing
the two confirmations (templates, iCalendar, MIME: most of a booking's CPU) happens after
the commit, and a second transaction writes them: on SQLite they are composed before it
begins (it takes the one write lock); on PostgreSQL inside it, where it locks nothing but
the new booking's row.

No message can be lost between the two: a booking still without any message in the outbox
is one whose second step never ran (the process died in between). The sweep here finds such
bookings (active, never changed, created a little while ago) and writes their confirmations,
composed with the booking's creation time as "now": the messages it would have had. The
booking's row is locked while its messages are checked and written, so the request and a
sweep, in any process, never both write them.
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

_HAS_MESSAGES = exists().where(outbox_messages.c.booking_id == Booking.id)
# The booking, if it has no message yet; built once (a statement built per call computes its
# cache key again), with its locking form for PostgreSQL.
_MINE = select(Booking).where(Booking.id == bindparam("booking_id"), ~_HAS_MESSAGES)
_MINE_LOCKED = _MINE.with_for_update(of=Booking)


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
        current = await session.scalar(_MINE_LOCKED, mine)
        if current is None:
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
                    ~_HAS_MESSAGES,
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
