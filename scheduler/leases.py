"""The one clock every lease is compared with: the database's on PostgreSQL.

Mail claims, webhook deliveries, room hosts and retention runs (and any future lease) are
held by one process and taken over by another when they expire. Compared with each
process's own clock, a host whose clock runs ahead would take a live lease. On PostgreSQL
every lease instant is therefore read from the database (`clock_timestamp()`, the instant
of the statement, not of the transaction's start), the one clock all processes share. SQLite
is one machine's file: the processes share that machine's clock, and the injected clock (a
FrozenClock in tests) is used.

Domain time (what is due, when a retry may happen, what the room shows) stays on the
injected clock; only lease expiry comparisons use this. The timers need none: their claim is
atomic in one transaction (`scheduler.timers`), with no lease to expire.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.clock import Clock

__all__ = ["LeaseNow", "lease_clock"]

LeaseNow = Callable[[AsyncSession], Awaitable[datetime]]


def lease_clock(sqlite: bool, clock: Clock) -> LeaseNow:
    """`now(session)` for lease comparisons, read in the caller's transaction."""
    if sqlite:

        async def process_now(session: AsyncSession) -> datetime:
            return clock.now()

        return process_now

    async def database_now(session: AsyncSession) -> datetime:
        value = await session.scalar(select(func.clock_timestamp()))
        assert isinstance(value, datetime)
        return value.astimezone(UTC)

    return database_now
