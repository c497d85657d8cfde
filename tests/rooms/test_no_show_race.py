"""The no-show mark and a candidate arriving at the last moment, made to meet on purpose.

The candidate opens the room before the no-show deadline, but their attendance row is not
committed yet (their entry waits on the room's lock, held here by the test) when the mark
falls due. The mark must see the arrival in the live room and leave the booking alone.
Both databases, a real WebSocket through the real server.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import text

from rooms.protocol import CloseCode
from scheduler import keys
from tests.rooms.room_support import Booked, Tab
from tests.rooms.test_signaling import enter
from tests.support.locks import waiting_on_a_lock
from tests.support.polling import eventually


async def test_a_candidate_arriving_before_the_deadline_is_not_marked_absent(
    client: TestClient, booked: Booked, clock: Any
) -> None:
    timers = client.app[keys.TIMERS]
    server = client.app[keys.ROOMS]
    deadline = booked.start + timedelta(minutes=10)  # [rooms] no_show_after_minutes
    clock.set(deadline - timedelta(milliseconds=5))
    await timers.run_due()  # the lock, so only the mark is left to fall due
    evaluator = await enter(client, booked, "evaluator")
    room = server.rooms[booked.booking_id]

    async with room.lock:  # the candidate's entry will wait here, before its row is written
        candidate = await Tab.open(client, booked.candidate_token)
        await eventually(lambda: bool(room.lock._waiters), "the candidate waiting to be seated")
        clock.set(deadline)
        await timers.run_due()
        assert (await booked.report())["status"] == "locked"

    await candidate.expect("hello")  # seated once the lock is free
    report = await booked.report()
    assert report["status"] == "locked"
    # Both recorded; the candidate's arrival is their check-in, before the deadline.
    arrivals = {a["role"]: a["joined_at"] for a in report["room"]["attendance"]}
    assert sorted(arrivals) == ["candidate", "evaluator"]
    assert datetime.fromisoformat(arrivals["candidate"]) < deadline
    # The mark was dropped for good, not postponed: moving on changes nothing.
    clock.advance(timedelta(minutes=5))
    await timers.run_due()
    assert (await booked.report())["status"] == "locked"
    await candidate.close()
    await evaluator.close()


async def test_a_candidate_arriving_after_the_deadline_is_still_marked(
    client: TestClient, booked: Booked, clock: Any
) -> None:
    """The guard above is the arrival's time, not any arrival: late is late."""
    timers = client.app[keys.TIMERS]
    server = client.app[keys.ROOMS]
    deadline = booked.start + timedelta(minutes=10)
    clock.set(deadline - timedelta(minutes=1))
    await timers.run_due()
    evaluator = await enter(client, booked, "evaluator")
    room = server.rooms[booked.booking_id]
    clock.set(deadline + timedelta(milliseconds=1))
    async with room.lock:
        candidate = await Tab.open(client, booked.candidate_token)
        await eventually(lambda: bool(room.lock._waiters), "the candidate waiting to be seated")
        await timers.run_due()
    assert (await booked.report())["status"] == "no_show"
    await asyncio.gather(candidate.close(), evaluator.close())


async def test_a_mark_retried_after_a_seating_that_ended_late_still_sees_the_arrival(
    client: TestClient, booked: Booked, clock: Any
) -> None:
    """The candidate checks in 5 ms before the deadline; their seating ends 20 ms after it;
    the mark's first try fails (a transient error) and its retry runs after they left. The
    attendance row must say when they arrived (checked in), not when the seating ended, or
    the retry marks absent a candidate who came in time."""
    timers = client.app[keys.TIMERS]
    server = client.app[keys.ROOMS]
    deadline = booked.start + timedelta(minutes=10)
    clock.set(deadline - timedelta(milliseconds=5))
    await timers.run_due()
    evaluator = await enter(client, booked, "evaluator")
    room = server.rooms[booked.booking_id]
    failures = 1

    async def transient(session: Any, booking_id: uuid.UUID, kind: str) -> None:
        nonlocal failures
        if kind == "no_show" and failures:
            failures -= 1
            await session.execute(text("SELECT x FROM no_such_table"))

    timers.before_action = transient
    async with room.lock:
        candidate = await Tab.open(client, booked.candidate_token)  # checks in now
        await eventually(lambda: bool(room.lock._waiters), "the candidate waiting to be seated")
        clock.set(deadline)
        await timers.run_due()  # the mark fails once: planned again a little later
        clock.set(deadline + timedelta(milliseconds=20))  # the seating ends now
    await candidate.expect("hello")
    await candidate.close()
    await eventually(lambda: "candidate" not in room.connections, "the candidate gone")
    clock.set(deadline + timedelta(minutes=1))
    await timers.run_due()
    report = await booked.report()
    assert failures == 0  # the mark did fail once, and was run again
    assert report["status"] == "locked", report
    (arrival,) = [a for a in report["room"]["attendance"] if a["role"] == "candidate"]
    assert datetime.fromisoformat(arrival["joined_at"]) < deadline
    await evaluator.close()


async def test_a_mark_committed_by_another_process_while_the_candidate_is_seated_refuses_them(
    client: TestClient, booked: Booked, clock: Any
) -> None:
    """The mark runs in another process, which this one's room state cannot tell about: the
    booking's row lock decides between the two. Here the other process's mark holds the row
    when the candidate's arrival is being recorded: the arrival waits, sees the mark, and is
    refused as missed (no attendance row); the booking and the room agree."""
    db = client.app[keys.DB]
    if db.sqlite:
        pytest.skip("SQLite is one machine: one writer, and its marks run in this process")
    deadline = booked.start + timedelta(minutes=10)
    clock.set(deadline - timedelta(minutes=1))
    await client.app[keys.TIMERS].run_due()  # the lock
    clock.set(deadline + timedelta(seconds=1))
    evaluator = await enter(client, booked, "evaluator")
    async with db.engine.connect() as other:  # the other process's mark, its claim's lock
        mark = await other.begin()
        await other.execute(
            text("SELECT id FROM bookings WHERE id = :id FOR NO KEY UPDATE"),
            {"id": booked.booking_id},
        )
        candidate = await Tab.open(client, booked.candidate_token)

        await eventually(lambda: waiting_on_a_lock(db), "the arrival waiting for the booking's row")
        await other.execute(
            text("UPDATE bookings SET status = 'no_show' WHERE id = :id"),
            {"id": booked.booking_id},
        )
        await mark.commit()
    error, code = await candidate.refused()
    assert (error["code"], code) == ("missed", CloseCode.ENDED)
    report = await booked.report()
    assert report["status"] == "no_show"
    assert [a["role"] for a in report["room"]["attendance"]] == ["evaluator"]
    await evaluator.close()
