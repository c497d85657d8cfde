"""Room hosts across processes: each live room is leased to one process in the database.

When several processes serve `/r/` (`[rooms] public_url`), the first arrival's process
claims the room (`rooms.models.RoomHost`), renews the lease every third of its length while
the room is live and drops it when the room closes; an arrival at any other process is sent
to the holder (`elsewhere`). A holder that cannot renew in time gives its rooms up before
their leases can end, so the two participants never meet in two different processes.
With one process (`host_url` None) none of this happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.messages import BookingChange
from rooms.models import claim_host, release_host, renew_hosts
from rooms.protocol import CloseCode, Connection, ws_url
from rooms.room import Clock, Room, Sessions, TicketResolver

__all__ = ["ELSEWHERE", "LEASE_SECONDS", "RoomHosts", "ScheduleNews"]

log = logging.getLogger("viva.rooms")

# A room's lease (`rooms.models.RoomHost`) lasts this long and is renewed three times as
# often: a process that died leaves its rooms to others within LEASE_SECONDS.
LEASE_SECONDS = 30.0
ELSEWHERE = "this interview's room is served at another address: connect there"

LeaseNow = Callable[[AsyncSession], Awaitable[datetime]]


class ScheduleNews(Protocol):
    """What the room server does when the scheduler reports a change (`rooms.signaling`)."""

    async def booking_changed(
        self,
        booking_id: uuid.UUID,
        change: BookingChange,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> bool: ...

    async def marked_no_show(self, booking_id: uuid.UUID) -> bool: ...


class RoomHosts:
    """This process's leases on the live rooms in `rooms` (the room server's registry)."""

    def __init__(
        self,
        rooms: Mapping[uuid.UUID, Room[Connection]],
        clock: Clock,
        *,
        host_url: str | None,
        lease_now: LeaseNow | None,
        on_lost: Callable[[], None],
    ) -> None:
        self._rooms = rooms
        self._clock = clock
        # This process's own base URL when several serve rooms; None: it serves every room.
        self.url = host_url.rstrip("/") if host_url else None
        # Where lease expiry is read (the database's clock on PostgreSQL); None: `clock`.
        self._lease_now = lease_now
        self._on_lost = on_lost
        self.lease_seconds = LEASE_SECONDS
        # Loop time at which each held room's lease was last known to be ours (measured
        # before the claim or renewal that confirmed it, so never later than the truth).
        self._confirmed: dict[uuid.UUID, float] = {}
        self._sessions: Sessions | None = None
        self._tickets: TicketResolver | None = None
        self._news: ScheduleNews | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, sessions: Sessions, tickets: TicketResolver, news: ScheduleNews) -> None:
        self._sessions = sessions
        self._tickets = tickets
        self._news = news
        if self.url is not None and self._task is None:
            self._task = asyncio.ensure_future(self._keep())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def claim(self, room: Room[Connection]) -> str | None:
        """Under `room.lock`: lease the room to this process; None if it is ours, else the
        base URL of the live process that holds it. No-op with a single process."""
        if self.url is None or room.leased:
            return None
        assert self._sessions is not None
        started = asyncio.get_running_loop().time()
        for attempt in range(2):
            try:
                async with self._sessions.write() as session:
                    now = await self._lease_time(session)
                    until = now + timedelta(seconds=self.lease_seconds)
                    elsewhere = await claim_host(
                        session,
                        room.booking_id,
                        lease_id=room.lease_id,
                        url=self.url,
                        now=now,
                        until=until,
                    )
            except IntegrityError:
                if attempt:
                    raise
                continue  # another process inserted the first lease at the same moment
            room.leased = elsewhere is None
            if room.leased:
                self._confirmed[room.booking_id] = started
            return elsewhere
        return None  # not reached

    async def release(self, room: Room[Connection]) -> None:
        """The room has closed: its lease goes, so the next arrival may be served anywhere."""
        if not room.leased or self._sessions is None:
            return
        room.leased = False
        self._confirmed.pop(room.booking_id, None)
        try:
            async with self._sessions.write() as session:
                await release_host(session, room.booking_id, room.lease_id)
        except Exception:
            log.exception("room %s: could not release its lease", room.booking_id)

    async def _lease_time(self, session: AsyncSession) -> datetime:
        return await self._lease_now(session) if self._lease_now is not None else self._clock.now()

    async def _keep(self) -> None:
        """Renew every third of a lease. A renewal that fails, or does not finish while the
        leases can still be vouched for, makes this process give up the rooms whose lease
        may end before the next try: their people reconnect to whoever holds them next,
        instead of staying here while the others meet there."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            await self.keep_once()

    async def keep_once(self) -> None:
        """One renewal, bounded by the time the leases can still be vouched for."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(max(self._time_left(), 0.001)):
                await self.renew()
        except Exception:
            log.exception("could not renew the rooms' leases")
            await self.drop_lapsing(loop.time() + self.lease_seconds / 3)

    def _time_left(self) -> float:
        """Seconds until the first held lease may end (with a margin); a lot if none."""
        now = asyncio.get_running_loop().time()
        ends = [
            at + self.lease_seconds * 0.9 - now
            for booking_id, at in self._confirmed.items()
            if (room := self._rooms.get(booking_id)) is not None and room.leased
        ]
        return min(ends, default=self.lease_seconds)

    async def drop_lapsing(self, before: float) -> int:
        """Give up every held room whose lease may have ended by loop time `before`: its
        people are sent away with `elsewhere` (no address: they start over at the one they
        came in by, and are sent on to the new holder). Returns how many rooms."""
        dropped = 0
        for room in list(self._rooms.values()):
            confirmed = self._confirmed.get(room.booking_id)
            if not room.leased or room.closed or confirmed is None:
                continue
            if confirmed + self.lease_seconds * 0.9 > before:
                continue
            room.leased = False
            self._confirmed.pop(room.booking_id, None)
            dropped += 1
            log.error("room %s: its lease could not be renewed; its people go", room.booking_id)
            self._on_lost()
            await _send_elsewhere(room, None)
        return dropped

    async def renew(self) -> None:
        """Extend the leases of this process's live rooms (every third of a lease).

        A lease found taken over (this process could not renew in time) is claimed again;
        if another process holds the room now, the participants here are sent there at
        once, so that the two never stay apart.
        """
        assert self._sessions is not None
        rooms = [room for room in self._rooms.values() if room.leased and not room.closed]
        if not rooms:
            return
        started = asyncio.get_running_loop().time()
        async with self._sessions.write() as session:
            until = await self._lease_time(session) + timedelta(seconds=self.lease_seconds)
            kept = await renew_hosts(session, [room.lease_id for room in rooms], until=until)
        for room in rooms:
            if room.lease_id in kept:
                self._confirmed[room.booking_id] = started
        await self._reconcile(rooms)
        for room in rooms:
            if room.lease_id in kept or room.closed:
                continue
            async with room.lock:
                room.leased = False
                self._confirmed.pop(room.booking_id, None)
                elsewhere = await self.claim(room)
                if elsewhere is None:
                    continue
                self._on_lost()
                await _send_elsewhere(room, elsewhere)

    async def _reconcile(self, rooms: list[Room[Connection]]) -> None:
        """Catch up with changes made by other processes (their API, their timers).

        In one process the scheduler tells the room at once (`booking_changed`,
        `marked_no_show`); a change committed by another process only reaches the room
        here, at the next renewal.
        """
        assert self._tickets is not None and self._news is not None
        for room in rooms:
            if room.closed:
                continue
            schedule = await self._tickets.schedule(room.booking_id)
            if schedule is None or schedule.status == "cancelled":
                await self._news.booking_changed(room.booking_id, "cancelled")
            elif schedule.start != room.start:
                await self._news.booking_changed(
                    room.booking_id, "moved", start=schedule.start, end=schedule.end
                )
            elif schedule.status == "no_show" and not room.no_show_told:
                await self._news.marked_no_show(room.booking_id)


async def _send_elsewhere(room: Room[Connection], url: str | None) -> None:
    for connection in tuple(room.connections.values()):
        message: dict[str, Any] = {"type": "error", "code": "elsewhere", "message": ELSEWHERE}
        if url is not None:
            message["url"] = ws_url(url, connection.token)
        with contextlib.suppress(Exception):
            await connection.send(message)
        connection.kick(CloseCode.ELSEWHERE, "elsewhere", "elsewhere")
