"""The rooms' signaling: one WebSocket per participant at `/r/{token}/ws` (docs/rooms.md).

`RoomServer` holds the live rooms (one `rooms.room.Room` per booking while someone is
connected), seats and unseats their participants, and is the only writer of a room's rows.
It coordinates the modules that own each concern: the wire protocol (`rooms.protocol`),
the message handlers (`rooms.handlers`), the messages it builds (`rooms.messages`), the
leases when several processes serve rooms (`rooms.hosts`), the connection test
(`rooms.echo`) and recording control (`rooms.recordings`). It knows nothing of bookings:
a `TicketResolver` turns a token into a `Ticket`, and `Sessions` gives it database
transactions; the scheduler provides both (`scheduler/room_wiring.py`).

Robustness rules: every message is handled in its connection's own task, in order; a bad
message gets an `error` and changes nothing; a connection that keeps sending bad messages
is closed (1008) without touching the room or the other participant; a failure of one room
never reaches another.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.checkin import CheckIn
from rooms.echo import EchoService
from rooms.handlers import HANDLERS, Transition, handle
from rooms.hosts import ELSEWHERE, LEASE_SECONDS, LeaseNow, RoomHosts
from rooms.messages import BookingChange, hello, room_info
from rooms.models import load_state, record_join, record_leave, save_state
from rooms.news import NO_SHOW, BookingNews
from rooms.protocol import (
    COUNTED_ERRORS,
    MAX_MESSAGE_BYTES,
    MAX_PROTOCOL_ERRORS,
    CloseCode,
    Connection,
    ice_servers,
    parse,
    receive,
    refuse,
    socket,
    ws_url,
)
from rooms.recordings import Recordings
from rooms.room import Clock, Room, Sessions, Ticket, TicketResolver, iso, write_notes
from rooms.settings import RoomsSettings

# The page asks for consent before it connects; a client that skipped it is told why.
NO_CONSENT = (
    "this interview is recorded: consent to the recording on the room page before joining, "
    "or ask the organisation to turn recording off for it"
)

__all__ = [
    "COUNTED_ERRORS",
    "LEASE_SECONDS",
    "MAX_MESSAGE_BYTES",
    "MAX_PROTOCOL_ERRORS",
    "BookingChange",
    "CloseCode",
    "Connection",
    "Missed",
    "RoomServer",
    "ice_servers",
    "room_info",
]

log = logging.getLogger("viva.rooms")

# Told, in the transaction that records it, that the evaluator ended the interview with an
# outcome (the scheduler closes the booking: rooms cannot touch bookings themselves).
OnEnded = Callable[[AsyncSession, uuid.UUID, str, datetime], Awaitable[None]]
# Told each candidate arrival (booking id, instant) in the transaction recording it; raises
# `Missed` when the booking was marked no-show first (the transaction is then rolled back,
# the arrival refused).
OnJoined = Callable[[AsyncSession, uuid.UUID, datetime], Awaitable[None]]


class Missed(Exception):
    """The no-show mark was committed before this arrival could be: the candidate is refused
    as missed, exactly as if they had come after it (the mark and the arrival are decided
    under the booking's row lock, whichever process each runs in)."""


class _ResolveAgain(Exception):
    """A booking changed while a link was being resolved: its ticket may be stale."""


class RoomServer:
    """Every live room of this process, and the WebSocket endpoints that fill them.

    Create it with the app (its routes must exist before the app starts), `start()` it once
    the database is up, `shutdown()` when the server stops accepting (participants get 1001
    and their departure is recorded), `close()` last.
    """

    def __init__(
        self,
        settings: RoomsSettings,
        clock: Clock,
        *,
        recordings: Path | None = None,
        host_url: str | None = None,
        lease_now: LeaseNow | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        # Told each error sent to a client, by code, and each room given up with its lease.
        self.on_ws_error: Callable[[str], None] | None = None
        self.on_lease_lost: Callable[[], None] | None = None
        self._rooms: dict[uuid.UUID, Room[Connection]] = {}
        self.hosts = RoomHosts(
            self._rooms, clock, host_url=host_url, lease_now=lease_now, on_lost=self._lease_lost
        )
        # Where recordings go; None: this server records nothing, whatever the tickets say.
        self.recordings = Recordings(recordings, settings, clock)
        self.echoes = EchoService(
            settings, clock, room_types=HANDLERS, spawn=self._spawn, count=self._count_error
        )
        self._sessions: Sessions | None = None
        self._on_ended: OnEnded | None = None
        self._on_joined: OnJoined | None = None
        self.check_in = CheckIn(settings, clock, self._count_error)
        self.news = BookingNews(
            self._rooms,
            self.echoes,
            self.check_in,
            settings,
            broadcast=self._broadcast,
            unbridge=self._unbridge,
        )
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- lifecycle ---------------------------------------------------------------------

    def start(
        self,
        tickets: TicketResolver,
        sessions: Sessions,
        *,
        on_ended: OnEnded | None = None,
        on_joined: OnJoined | None = None,
    ) -> None:
        self._sessions = sessions
        self._on_ended = on_ended
        self._on_joined = on_joined
        self.check_in.open(tickets)
        self.recordings.start(sessions)
        self.news.start(tickets)
        self.hosts.start(sessions, tickets, self.news)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/r/{token}/ws", self.websocket, name="room.ws")
        router.add_get("/r/{token}/echo", self.echo, name="room.echo")

    @property
    def rooms(self) -> Mapping[uuid.UUID, Room[Connection]]:
        """The live rooms by booking id (for tests and metrics)."""
        return self._rooms

    async def shutdown(self) -> None:
        """Stop taking participants and close every WebSocket with 1001 (going away).

        The handlers then record each departure and close each room's peer connections;
        aiohttp waits for them before the database goes away.
        """
        self.check_in.close()
        for room in self._rooms.values():
            for connection in room.connections.values():
                connection.kick(CloseCode.GOING_AWAY, "shutdown", "server restarting")
        self.echoes.stop_all()

    async def close(self) -> None:
        """Release whatever `shutdown` left (handlers cancelled on timeout, pending tasks)."""
        self.check_in.close()
        self.echoes.stop_all()
        while self._tasks:
            await asyncio.gather(*tuple(self._tasks), return_exceptions=True)
        await self.hosts.stop()
        rooms = tuple(self._rooms.values())
        self._rooms.clear()
        for room in rooms:
            await room.close()
        await self.recordings.close()

    def recording_in_progress(self, recording_id: uuid.UUID) -> bool:
        """Whether this process is writing that recording right now."""
        return self.recordings.in_progress(recording_id)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("room task failed", exc_info=task.exception())

    def _count_error(self, code: str) -> None:
        if self.on_ws_error is not None:
            self.on_ws_error(code)

    def _lease_lost(self) -> None:
        if self.on_lease_lost is not None:
            self.on_lease_lost()

    # --- the endpoints -----------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        ws = socket()
        await ws.prepare(request)
        while True:
            seen = self.check_in.changes
            ticket = await self.check_in.ticket(ws, request.match_info["token"], any_time=False)
            if ticket is None:
                return ws
            arrived_at = self.clock.now()
            connection = Connection(
                ws, ticket, token=request.match_info["token"], arrived_at=arrived_at
            )
            arrival = self.check_in.arriving(ticket, arrived_at)
            try:
                room = await self._enter(connection, seen)
            except _ResolveAgain:
                continue
            finally:
                arrival()
            break
        if room is None:
            return ws
        try:
            await self._converse(room, connection)
        except Exception:
            log.exception("room %s: %s's connection failed", room.booking_id, connection.role)
            self._count_error("connection_failed")
            await connection.close(CloseCode.INTERNAL_ERROR, "disconnected", "server error")
        finally:
            # Shielded: a handler cancelled at shutdown must still record the departure.
            await asyncio.shield(self._spawn(self._leave(room, connection)))
        return ws

    async def echo(self, request: web.Request) -> web.StreamResponse:
        """`/r/{token}/echo`: the connection test (`rooms.echo`).

        Any day while the link is valid, before, during and after the room's window: the
        device check is done ahead of time, and proves nothing about the room itself.
        """
        ws = socket()
        await ws.prepare(request)
        while True:
            seen = self.check_in.changes
            ticket = await self.check_in.ticket(ws, request.match_info["token"], any_time=True)
            if ticket is None:
                return ws
            # `serve` registers the test before its first await: a later change finds it.
            if self.check_in.changes == seen:
                break
        await self.echoes.serve(ws, ticket, request.match_info["token"])
        return ws

    # --- arrivals and departures -------------------------------------------------------

    async def _enter(self, connection: Connection, seen: int) -> Room[Connection] | None:
        """Seat the connection in its booking's room (made on first arrival); None if refused.

        `seen` is `check_in.changes` from before the link was resolved. If a booking changed
        since, this raises `_ResolveAgain`: the ticket may be a cancelled or moved booking's.
        The check is made under the room's lock, which `booking_changed` takes to find whom
        to tell, so a change either comes before it (and is seen) or finds this connection.
        """
        ticket = connection.ticket
        while True:
            room = self._room_of(ticket)
            async with room.lock:
                if room.closed:
                    continue  # its last participant just left; take a fresh room
                if self.check_in.changes != seen:
                    if self._forget_if_empty(room):
                        self._spawn(room.close())
                    raise _ResolveAgain
                previous = room.connections.get(ticket.role)
                refusal = await self._admission(room, connection)
                if refusal is None:
                    first = not room.connections
                    room.connections[ticket.role] = connection
                    if ticket.consented:
                        room.consented.add(ticket.role)
                    room.changed()
                    await self.recordings.sync(room)
                    if first:
                        room.expire_at(self.clock, functools.partial(self._expire, room))
                    break
                empty = self._forget_if_empty(room)
            if empty:
                await room.close()
            code, message, close_code, extra = refusal
            await refuse(connection.ws, code, message, close_code, **extra)
            return None
        if previous is not None:
            # The same link in another tab (or a reconnection the server had not noticed):
            # the newcomer wins, the previous one is told why before it is closed.
            previous.leave_reason = "replaced"
            await previous.send({"type": "replaced"})
            previous.kick(CloseCode.REPLACED, "replaced", "replaced")
        if self.check_in.closing:
            connection.kick(CloseCode.GOING_AWAY, "shutdown", "server restarting")
        return room

    def _room_of(self, ticket: Ticket) -> Room[Connection]:
        """The booking's live room, made (and registered) if there is none."""
        room = self._rooms.get(ticket.booking_id)
        if room is None:
            room = Room[Connection](ticket, self.settings)
            self.recordings.prepare(room)
            room.on_closed = functools.partial(self.hosts.release, room)
            self._rooms[ticket.booking_id] = room
        return room

    async def _admission(
        self, room: Room[Connection], connection: Connection
    ) -> tuple[str, str, int, dict[str, Any]] | None:
        """Under `room.lock`: record the arrival and return None, or say why it is refused
        (error code, message, close code, extra fields)."""
        assert self._sessions is not None
        ticket = connection.ticket
        try:
            elsewhere = await self.hosts.claim(room)
            if not room.loaded:
                async with self._sessions.read() as session:
                    room.state = await load_state(session, ticket.booking_id)
                room.loaded = True
            if elsewhere is not None:
                url = ws_url(elsewhere, connection.token)
                return ("elsewhere", ELSEWHERE, CloseCode.ELSEWHERE, {"url": url})
            if ticket.role == "candidate" and ticket.held == "no_show":
                return ("missed", NO_SHOW, CloseCode.ENDED, {})
            if ticket.role == "candidate" and (
                room.state.ended_at is not None or ticket.held is not None
            ):
                return ("ended", "the interview has ended", CloseCode.ENDED, {})
            if room.recording and not ticket.consented:
                return ("consent_required", NO_CONSENT, CloseCode.CONSENT_REQUIRED, {})
            async with self._sessions.write() as session:
                # The check-in instant, not this commit's: a candidate who checked in before
                # the no-show deadline arrived in time, however long the seating took (the
                # room's lock, the database's write lock, the lease).
                at = connection.arrived_at or self.clock.now()
                connection.attendance_id = await record_join(
                    session, ticket.booking_id, ticket.role, at
                )
                if ticket.role == "candidate" and self._on_joined is not None:
                    await self._on_joined(session, ticket.booking_id, at)
        except Missed:
            connection.attendance_id = None  # its row was rolled back with the arrival
            return ("missed", NO_SHOW, CloseCode.ENDED, {})
        except Exception:
            log.exception("room %s: could not record an arrival", ticket.booking_id)
            self._count_error("internal")
            return ("internal", "try again in a moment", CloseCode.INTERNAL_ERROR, {})
        return None

    def candidate_arrived(self, booking_id: uuid.UUID, instant: datetime) -> bool:
        """Whether this booking's candidate is in its room here, or arrived by `instant` and
        is being seated (their attendance row may not be committed yet).

        The scheduler's no-show mark asks this before it reads the attendance rows. It is
        synchronous: on this event loop no arrival can be half-registered while it runs.
        """
        if self.check_in.arrived_by(booking_id, instant):
            return True
        room = self._rooms.get(booking_id)
        return room is not None and "candidate" in room.connections

    def _forget_if_empty(self, room: Room[Connection]) -> bool:
        """Under `room.lock`: with nobody left, mark it closed and drop it from the registry."""
        if room.connections or room.closed:
            return False
        room.closed = True
        if self._rooms.get(room.booking_id) is room:
            del self._rooms[room.booking_id]
        return True

    async def _leave(self, room: Room[Connection], connection: Connection) -> None:
        assert self._sessions is not None
        role = connection.role
        async with room.lock:
            if connection.attendance_id is not None:
                try:
                    async with self._sessions.write() as session:
                        await record_leave(
                            session,
                            connection.attendance_id,
                            self.clock.now(),
                            connection.leave_reason,
                        )
                except Exception:
                    log.exception("room %s: could not record a departure", room.booking_id)
            current = room.connections.get(role) is connection
            if current:
                del room.connections[role]
                room.changed()
            empty = self._forget_if_empty(room)
        if empty:
            await room.close()
            return
        if not current:
            return  # replaced: the successor's offer replaces the peer connection
        await self._unbridge(room, connection)
        await self._broadcast(room)

    async def _unbridge(self, room: Room[Connection], connection: Connection) -> None:
        """Drop the role's peer connection, unless a successor took the seat meanwhile."""
        async with room.media_locks[connection.role]:
            if connection.role not in room.connections:
                await room.bridge.remove(connection.role)

    def _expire(self, room: Room[Connection]) -> None:
        """The window closed during the session: everyone is told, then disconnected."""

        async def expire() -> None:
            now = self.clock.now()
            for connection in tuple(room.connections.values()):
                await connection.send(
                    {
                        "type": "error",
                        "code": "too_late",
                        "message": "the room has closed",
                        "closes_at": iso(room.window.closes_at),
                        "now": iso(now),
                    }
                )
                connection.kick(CloseCode.TOO_LATE, "expired", "too_late")

        if not room.closed and not room.expired:
            room.expired = True
            self._spawn(expire())

    # --- news from the scheduler (`rooms.news`) ------------------------------------------

    async def booking_changed(
        self,
        booking_id: uuid.UUID,
        change: BookingChange,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> bool:
        """The booking was cancelled or moved: everyone is sent out (`BookingNews`)."""
        return await self.news.booking_changed(booking_id, change, start=start, end=end)

    async def links_revoked(self, booking_id: uuid.UUID) -> bool:
        """Some of the booking's links were replaced: their holders are sent out."""
        return await self.news.links_revoked(booking_id)

    async def marked_no_show(self, booking_id: uuid.UUID) -> bool:
        """The candidate was marked absent: a waiting evaluator is told."""
        return await self.news.marked_no_show(booking_id)

    # --- the conversation --------------------------------------------------------------

    async def _converse(self, room: Room[Connection], connection: Connection) -> None:
        await connection.send(hello(room, connection.ticket, self.settings, self.clock.now()))
        await self._broadcast(room)
        await self._offer(room, connection)
        on_text = functools.partial(self._on_text, room, connection)
        await receive(connection, on_text, self._count_error)

    async def _broadcast(self, room: Room[Connection]) -> None:
        message = {"type": "state", **room.fields(self.clock.now())}
        for connection in tuple(room.connections.values()):
            await connection.send(message)

    async def _offer(self, room: Room[Connection], connection: Connection) -> None:
        role = connection.role
        async with room.media_locks[role]:
            if room.connections.get(role) is not connection or connection.ws.closed:
                return
            offer = await room.bridge.offer(role)
            connection.offered = True
        await connection.send({"type": "offer", "sdp": offer["sdp"]})

    async def _on_text(self, room: Room[Connection], connection: Connection, data: str) -> None:
        if room.window.status(self.clock.now()) == "too_late":
            self._expire(room)
            return
        message = await parse(connection, data, self._count_error)
        if message is not None:
            await handle(self, room, connection, message, self._count_error)

    # --- what handlers do to a room (`rooms.handlers.RoomActions`) ---------------------

    async def change(self, room: Room[Connection], change: Transition) -> bool:
        """Apply a transition under the room's lock: persist first, then adopt and tell all."""
        assert self._sessions is not None
        async with room.lock:
            now = self.clock.now()
            new = change(room.state, now)
            if new == room.state:
                return False
            async with self._sessions.write() as session:
                await save_state(session, new, now=now)
                ended = new.ended_at is not None and room.state.ended_at is None
                if ended and new.outcome is not None and self._on_ended is not None:
                    await self._on_ended(session, room.booking_id, new.outcome, now)
            room.changed(new)
            await self.recordings.sync(room)
        await self._broadcast(room)
        return True

    async def write_notes(self, room: Room[Connection], text: str) -> datetime:
        """Persist the evaluator's notes under the room's lock: private, so no version and
        no broadcast."""
        assert self._sessions is not None
        async with room.lock:
            now = self.clock.now()
            new = write_notes(room.state, text)
            if new != room.state:
                async with self._sessions.write() as session:
                    await save_state(session, new, now=now)
                room.state = new
        return now
