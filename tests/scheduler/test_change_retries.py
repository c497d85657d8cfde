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
from scheduler.evaluator_choice import lock_evaluator
from tests.conftest import Org, _run, _truncate, token_of
from tests.support.locks import waiting_on_a_lock
from tests.support.polling import eventually

pytestmark = pytest.mark.postgres

START = "2026-12-02T09:00:00+01:00"  # outside the lock at the test clock's time


@pytest.fixture
def db_url(postgres_url: str) -> str:
    """PostgreSQL only: SQLite has one writer at a time, so it cannot deadlock."""
    _run(_truncate(postgres_url))
    return postgres_url


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
        await eventually(
            lambda: waiting_on_a_lock(org.client.app[keys.DB]), "the cancellation waiting on a lock"
        )
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


async def test_a_move_that_must_change_evaluator_never_holds_one_while_waiting_for_another(
    make_org,
) -> None:
    """The organisation moves a booking to a time its evaluator (E1) is busy, so Viva looks
    for another (E2), whom another transaction holds. That transaction then wants E1. Were
    E1 still held by the move while it waits for E2, PostgreSQL would break a deadlock (and
    one side would have to run again); the move lets E1 go first, so both simply go through."""
    org: Org = await make_org()
    first, second = await org.make_evaluator(), await org.make_evaluator()
    bookings = []
    for at in (START, "2026-12-02T10:00:00+01:00"):
        token = token_of((await org.make_candidate())["link"])
        resp = await org.client.post(f"/c/{token}/booking", json={"start": at})
        assert resp.status == 201, await resp.text()
        bookings.append(await org.ok("GET", f"/bookings/{(await resp.json())['id']}"))
    e1 = bookings[0]["evaluator_id"]
    e2 = second["id"] if e1 == first["id"] else first["id"]
    if bookings[1]["evaluator_id"] != e1:  # both with E1: E1 is busy at 10:00
        await org.ok(
            "POST",
            f"/bookings/{bookings[1]['id']}/force-majeure",
            json={
                "action": "move",
                "start": bookings[1]["start"],
                "evaluator_id": e1,
                "reason": "set-up",
            },
        )
    db = org.client.app[keys.DB]
    contention = db.contention
    before = contention.deadlock_retries
    async with db.write() as other:
        assert await lock_evaluator(other, uuid.UUID(e2))
        move = asyncio.create_task(
            org.call(
                "POST",
                f"/bookings/{bookings[0]['id']}/force-majeure",
                json={
                    "action": "move",
                    "start": "2026-12-02T10:00:00+01:00",
                    "reason": "Room unavailable",
                },
            )
        )
        await eventually(
            lambda: waiting_on_a_lock(org.client.app[keys.DB]), "the move waiting for E2"
        )
        # Were E1 still the move's, this would close the circle.
        assert await asyncio.wait_for(lock_evaluator(other, uuid.UUID(e1)), 30)
    status, moved = await move
    assert status == 200, moved
    assert moved["evaluator_id"] == e2
    assert contention.deadlock_retries == before
