"""Whether some PostgreSQL session is waiting for a lock: how a test knows that the
transaction it started has reached the lock it is meant to meet (polled with
tests.support.polling.eventually; nothing else signals it)."""

from __future__ import annotations

from sqlalchemy import text

from scheduler.db import Database

_WAITING = text(
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


async def waiting_on_a_lock(db: Database) -> bool:
    async with db.read() as session:
        return bool(await session.scalar(_WAITING))
