"""Several processes serving `/r/`: each live room is held by one, and the others send the
late arrival there, so the two participants always meet in the same process.

Two complete Viva applications on one database (SQLite file or PostgreSQL), each on its
own port with its own `[rooms] public_url`, as two processes behind one address would be.
Real WebSockets; the participants are signaling-only here (media between two processes'
peers is the same as in one: tests/rooms/test_room_media.py).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import update

from rooms.hosts import LEASE_SECONDS
from rooms.models import RoomHost, claim_host
from rooms.signaling import CloseCode
from scheduler import keys
from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.config import Settings
from scheduler.leases import lease_clock
from scheduler.orgs import create_organisation
from tests.conftest import Org
from tests.rooms.room_support import Booked, Tab, book_interview, inside_window
from tests.rooms.test_signaling import enter, phase_is, utc
from tests.support.polling import eventually


@dataclass
class Process:
    client: TestClient
    url: str

    async def open(self, token: str) -> Tab:
        return await Tab.open(self.client, token)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def processes(settings: Settings, clock: FrozenClock) -> AsyncIterator[list[Process]]:
    made: list[Process] = []
    for _ in range(2):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        own = settings.model_copy(
            update={"rooms": settings.rooms.model_copy(update={"public_url": url})}
        )
        client = TestClient(TestServer(create_app(own, clock=clock), port=port))
        await client.start_server()
        made.append(Process(client, url))
    yield made
    for process in made:
        await process.client.close()


@pytest.fixture
async def booked_there(processes: list[Process], clock: FrozenClock) -> Booked:
    first = processes[0].client
    async with first.app[keys.DB].write() as session:
        new = await create_organisation(
            session, name="CCI", contact_email="oral@cci.example", now=clock.now()
        )
    booking = await book_interview(Org(first, new.organisation.id, new.api_key))
    clock.set(inside_window(booking))
    return booking


async def test_the_second_participant_is_sent_to_the_process_holding_the_room(
    processes: list[Process], booked_there: Booked
) -> None:
    a, b = processes
    evaluator = await enter(a.client, booked_there, "evaluator")

    # The candidate reaches the other process: it sends them to the one holding the room.
    error, code = await (await b.open(booked_there.candidate_token)).refused()
    assert (error["code"], code) == ("elsewhere", CloseCode.ELSEWHERE)
    assert CloseCode.ELSEWHERE == 4307
    host = a.url.removeprefix("http://")
    assert error["url"] == f"ws://{host}/r/{booked_there.candidate_token}/ws"
    assert not b.client.app[keys.ROOMS].rooms, "no room was opened there"
    attendance = (await booked_there.report())["room"]["attendance"]
    assert [row["role"] for row in attendance] == ["evaluator"], "a redirect is no attendance"

    candidate = await enter(a.client, booked_there, "candidate")  # where it was sent
    await evaluator.state(lambda s: s["present"]["candidate"])
    await evaluator.send(type="admit")
    await candidate.state(phase_is("admitted"))

    # Once everyone has left, the room closes and its lease goes: any process may hold the
    # next session, here the other one.
    for tab in (candidate, evaluator):
        await tab.send(type="leave")
        await tab.closed()
    room = a.client.app[keys.ROOMS]

    async def let_go() -> bool:
        return not room.rooms and await _lease(a, booked_there) is None

    await eventually(let_go, "the room closed and its lease gone")
    again = await enter(b.client, booked_there, "candidate")
    assert again.hello is not None and again.hello["room"]["phase"] == "admitted"
    assert await _lease(a, booked_there) == b.url
    await again.close()


async def test_a_room_left_by_a_crashed_process_is_taken_over_once_its_lease_expires(
    processes: list[Process], booked_there: Booked, clock: FrozenClock
) -> None:
    a, _ = processes
    crashed = "http://127.0.0.1:9"  # a process that died with a room open: nobody there
    db = a.client.app[keys.DB]
    async with db.write() as session:
        # Lease instants are the database's on PostgreSQL (scheduler.leases).
        now = await lease_clock(db.sqlite, clock)(session)
        assert (
            await claim_host(
                session,
                booked_there.booking_id,
                lease_id=booked_there.booking_id,
                url=crashed,
                now=now,
                until=now + timedelta(seconds=LEASE_SECONDS),
            )
            is None
        )
    error, _ = await (await a.open(booked_there.evaluator_token)).refused()
    assert error["code"] == "elsewhere" and error["url"].startswith("ws://127.0.0.1:9/")

    # Its lease ends (by the clock leases are read from: moved here, since on PostgreSQL
    # it is the database's own).
    async with db.write() as session:
        await session.execute(
            update(RoomHost)
            .where(RoomHost.booking_id == booked_there.booking_id)
            .values(until=now - timedelta(seconds=1))
        )
    evaluator = await enter(a.client, booked_there, "evaluator")
    assert await _lease(a, booked_there) == a.url
    # The lease is kept alive while the room is: renewing moves its end on.
    await a.client.app[keys.ROOMS].hosts.renew()
    clock.advance(timedelta(seconds=LEASE_SECONDS - 1))
    await a.client.app[keys.ROOMS].hosts.renew()
    clock.advance(timedelta(seconds=LEASE_SECONDS - 1))
    error, _ = await (await processes[1].open(booked_there.candidate_token)).refused()
    assert error["code"] == "elsewhere"  # still held: the renewals counted
    await evaluator.close()


async def test_with_one_process_nothing_is_leased(client: TestClient, booked: Booked) -> None:
    evaluator = await enter(client, booked, "evaluator")
    async with client.app[keys.DB].read() as session:
        assert await session.get(RoomHost, booked.booking_id) is None
    await evaluator.close()


async def _lease(process: Process, booked: Booked) -> str | None:
    async with process.client.app[keys.DB].read() as session:
        row = await session.get(RoomHost, booked.booking_id)
        return row.url if row is not None else None


async def test_a_change_made_through_another_process_reaches_the_room_at_the_next_renewal(
    processes: list[Process], booked_there: Booked
) -> None:
    a, b = processes
    evaluator = await enter(a.client, booked_there, "evaluator")
    candidate = await enter(a.client, booked_there, "candidate")
    # The organisation's API call lands on the other process, which has no such room.
    through_b = Org(b.client, booked_there.org.id, booked_there.org.api_key)
    later = booked_there.start + timedelta(days=1)
    await through_b.ok(
        "POST",
        f"/bookings/{booked_there.booking_id}/force-majeure",
        json={"action": "move", "start": later.isoformat(), "reason": "Evaluator ill"},
    )
    await a.client.app[keys.ROOMS].hosts.renew()
    for tab in (evaluator, candidate):
        error = await tab.error()
        assert (error["code"], error["start"]) == ("moved", utc(later))
        assert await tab.closed() == CloseCode.MOVED


async def test_a_cancellation_made_through_another_process_sends_everyone_out(
    processes: list[Process], booked_there: Booked
) -> None:
    a, b = processes
    evaluator = await enter(a.client, booked_there, "evaluator")
    through_b = Org(b.client, booked_there.org.id, booked_there.org.api_key)
    await through_b.ok(
        "POST",
        f"/bookings/{booked_there.booking_id}/force-majeure",
        json={"action": "cancel", "reason": "Evaluator ill"},
    )
    await a.client.app[keys.ROOMS].hosts.renew()
    assert (await evaluator.error())["code"] == "cancelled"
    assert await evaluator.closed() == CloseCode.CANCELLED
