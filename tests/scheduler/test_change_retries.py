"""A booking change that PostgreSQL refuses as a deadlock is run again, not answered 500.

Every change takes row locks: the booking's row as it writes it, then the organisation's row
at the commit, where the calendar version is raised (scheduler.calendar_versions). A
transaction that holds the organisation's row and then wants the booking's takes them in
the other order: a real deadlock, which PostgreSQL breaks by refusing the transaction that
has waited longest — the candidate's cancellation here. The cancellation must then run
again whole, and succeed once the other transaction is gone.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text

from scheduler import keys
from tests.conftest import Org, _run, _truncate, token_of
from tests.support.polling import eventually

pytestmark = pytest.mark.postgres

START = "2026-12-02T09:00:00+01:00"  # outside the lock at the test clock's time


@pytest.fixture
def db_url(postgres_url: str) -> str:
    """PostgreSQL only: SQLite has one writer at a time, so it cannot deadlock."""
    _run(_truncate(postgres_url))
    return postgres_url


async def _waiting_on_a_lock(org: Org) -> bool:
    async with org.client.app[keys.DB].read() as session:
        waiting = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return bool(waiting)


async def test_a_cancellation_refused_as_a_deadlock_is_run_again(make_org) -> None:
    org: Org = await make_org()
    await org.make_evaluator()
    candidate = await org.make_candidate()
    token = token_of(candidate["link"])
    resp = await org.client.post(f"/c/{token}/booking", json={"start": START})
    assert resp.status == 201, await resp.text()
    booking_id = uuid.UUID((await resp.json())["id"])
    db = org.client.app[keys.DB]
    contention = db.contention
    before = contention.deadlock_retries

    async with db.engine.connect() as other:
        tx = await other.begin()
        # The other transaction holds the organisation's row first...
        await other.execute(
            text("SELECT id FROM organisations WHERE id = :id FOR UPDATE"),
            {"id": org.id},
        )
        cancel = asyncio.create_task(org.client.delete(f"/c/{token}/booking"))
        # ...the cancellation writes the booking, then waits for the organisation's row...
        await eventually(lambda: _waiting_on_a_lock(org), "the cancellation waiting on a lock")
        # ...and the other transaction now wants the booking's row: a deadlock.
        await other.execute(
            text("SELECT id FROM bookings WHERE id = :id FOR UPDATE"),
            {"id": booking_id},
        )
        await tx.commit()

    resp = await cancel
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "cancelled"
    assert contention.deadlock_retries == before + 1
    detail = await org.ok("GET", f"/bookings/{booking_id}")
    assert detail["status"] == "cancelled"
    # The refused attempt left nothing behind: the history says it once.
    history = (await org.ok("GET", f"/bookings/{booking_id}/history"))["events"]
    assert [e["action"] for e in history] == ["booked", "cancelled"]
