"""A process that loses a room's lease sends its people away at once, so they meet again in
the process that holds the room now, instead of staying split between two.

Two complete apps on one database (the fixtures of tests/rooms/test_hosts.py). The lease is
lost for real: another holder's row found at renewal, or renewals that cannot get the
database (another connection holds its lock) before the lease would end.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import asyncpg
import pytest
from sqlalchemy import update

from rooms.models import RoomHost
from rooms.signaling import CloseCode
from scheduler import keys
from scheduler.leases import lease_clock
from tests.rooms.room_support import Booked
from tests.rooms.test_hosts import Process, booked_there, processes  # noqa: F401 - fixtures
from tests.rooms.test_signaling import enter


def _lost(process: Process) -> float:
    registry = process.client.app[keys.METRICS].registry
    return registry.get_sample_value("viva_room_leases_lost_total") or 0.0


async def test_a_holder_finding_another_at_renewal_sends_everyone_there_at_once(
    processes: list[Process],  # noqa: F811
    booked_there: Booked,  # noqa: F811
) -> None:
    a, b = processes
    evaluator = await enter(a.client, booked_there, "evaluator")
    candidate = await enter(a.client, booked_there, "candidate")
    # Process b took the room (what its claim does once a's lease has ended).
    db = a.client.app[keys.DB]
    async with db.write() as session:
        now = await lease_clock(db.sqlite, a.client.app[keys.CLOCK])(session)
        await session.execute(
            update(RoomHost)
            .where(RoomHost.booking_id == booked_there.booking_id)
            .values(lease_id=uuid.uuid4(), url=b.url, until=now + timedelta(minutes=5))
        )
    await a.client.app[keys.ROOMS].hosts.renew()
    host = b.url.removeprefix("http://")
    for tab in (evaluator, candidate):
        error = await tab.error()
        assert error["code"] == "elsewhere"
        assert error["url"].startswith(f"ws://{host}/r/")
        assert await tab.closed() == CloseCode.ELSEWHERE
    assert _lost(a) == 1


@pytest.fixture
async def write_lock(
    processes: list[Process],  # noqa: F811
) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Takes the database's write lock from another connection; released at the end."""
    db = processes[0].client.app[keys.DB]
    release: list[Callable[[], Awaitable[None]]] = []

    async def take() -> None:
        if db.sqlite:
            # The process's own writer queue (scheduler.db): its writes, the renewal among
            # them, wait behind a writer that does not finish. (Another connection's
            # BEGIN IMMEDIATE would do too, but a renewal cancelled inside SQLite's busy
            # wait keeps its connection until the busy timeout ends, 30 s.)
            await db._write_lock.acquire()

            async def free() -> None:
                db._write_lock.release()

        else:
            pg = await asyncpg.connect(db.url.replace("+asyncpg", ""))
            tx = pg.transaction()
            await tx.start()
            await pg.execute("LOCK TABLE room_hosts IN EXCLUSIVE MODE")

            async def free() -> None:
                await tx.rollback()
                await pg.close()

        release.append(free)

    async def free_all() -> None:
        while release:
            await release.pop()()

    take.free = free_all  # type: ignore[attr-defined]
    yield take
    await free_all()


async def test_a_holder_that_cannot_renew_in_time_drops_its_people_before_the_lease_ends(
    processes: list[Process],  # noqa: F811
    booked_there: Booked,  # noqa: F811
    write_lock: Callable[[], Awaitable[None]],
) -> None:
    a, _ = processes
    server = a.client.app[keys.ROOMS]
    server.hosts.lease_seconds = 0.9  # a short lease, so the test need not wait 30 s
    evaluator = await enter(a.client, booked_there, "evaluator")
    candidate = await enter(a.client, booked_there, "candidate")
    room = server.rooms[booked_there.booking_id]
    assert room.leased

    await write_lock()
    await server.hosts.keep_once()  # the renewal cannot finish while the lease holds
    assert not room.leased  # given up before its lease could end
    await write_lock.free()  # type: ignore[attr-defined]
    for tab in (evaluator, candidate):
        error = await tab.error()
        assert error["code"] == "elsewhere" and "url" not in error
        assert await tab.closed() == CloseCode.ELSEWHERE
    assert not room.leased
    assert _lost(a) == 1
