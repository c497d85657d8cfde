"""The rooms' signaling: one WebSocket per participant at `/r/{token}/ws` (docs/rooms.md).

`RoomServer` holds the live rooms (one `rooms.room.Room` per booking while someone is
connected), speaks the JSON protocol, and is the only writer of a room's rows. It knows
nothing of bookings: a `TicketResolver` turns a token into a `Ticket`, and `Sessions` gives
it database transactions; the scheduler provides both (`scheduler/room_wiring.py`).

Robustness rules: every message is handled in its connection's own task, in order; a bad
message gets an `error` and changes nothing; a connection that keeps sending bad messages
is closed (1008) without touching the room or the other participant; a failure of one room
never reaches another.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum
from pathlib import Path
from typing import Any, Literal

from aiohttp import WSMsgType, web
from aiortc import RTCIceCandidate
from aiortc.sdp import candidate_from_sdp
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.echo import EchoPeer
from rooms.models import (
    RoomState,
    claim_host,
    load_state,
    record_join,
    record_leave,
    recording_finished,
    recording_started,
    release_host,
    renew_hosts,
    save_state,
)
from rooms.recording import SUFFIX as RECORDING_SUFFIX
from rooms.recording import RecordingWorker, RoomRecorder
from rooms.relay import Role, rtc_configuration
from rooms.room import (
    ROLES,
    STEPS,
    Clock,
    Refusal,
    Room,
    Sessions,
    Ticket,
    TicketResolver,
    Window,
    admit,
    check_id,
    end,
    iso,
    move_to,
    recorded,
    write_notes,
)
from rooms.settings import RoomsSettings
from rooms.turn import ice_servers_until

__all__ = [
    "COUNTED_ERRORS",
    "MAX_MESSAGE_BYTES",
    "MAX_PROTOCOL_ERRORS",
    "BookingChange",
    "CloseCode",
    "Connection",
    "RoomServer",
    "ice_servers",
    "room_info",
]

log = logging.getLogger("viva.rooms")

PROTOCOL_VERSION = 1
# Larger messages get a `too_large` error; frames beyond FRAME_LIMIT_BYTES are not even
# read (aiohttp closes with 1009), so nobody can make the server buffer megabytes.
MAX_MESSAGE_BYTES = 64 * 1024
FRAME_LIMIT_BYTES = 1024 * 1024
MAX_PROTOCOL_ERRORS = 5
# Browsers answer WebSocket pings by themselves: a tab that vanished without a close frame
# (sleep, lost network) is noticed within about this long and counted as a departure.
HEARTBEAT_SECONDS = 20.0
# How long a closing handshake may wait for the other side before the socket is dropped.
CLOSE_TIMEOUT_SECONDS = 2.0
# Token bucket per connection: bursts of trickled candidates pass, floods do not.
BURST_MESSAGES = 50
REFILL_PER_SECOND = 20.0
# The connection test (`/r/{token}/echo`): long enough to see and hear oneself, short
# enough that forgotten tabs do not hold server peer connections; and a bound on how many
# run at once per organisation, so that a link holder cannot turn the server into a media
# reflector, and one organisation's busy day never turns another's candidates away.
ECHO_SECONDS = 60.0
MAX_ECHOES = 20

# The codes that count towards MAX_PROTOCOL_ERRORS: a client's mistakes, not the room's
# state (an evaluator clicking "admit" twice while the candidate reconnects is no abuse).
COUNTED_ERRORS = frozenset(
    {"malformed", "too_large", "unknown_type", "invalid", "out_of_order", "forbidden"}
    | {"rate_limited"}
)
# The no-show mark, as the candidate's refusal (`missed`) and the evaluator's `notice` say it.
_NO_SHOW = "the candidate did not join in time and is marked absent"
_ELSEWHERE = "this interview's room is served at another address: connect there"
_REVOKED = "this link is no longer valid: a newer one was sent by e-mail"
# A room's lease (`rooms.models.RoomHost`) lasts this long and is renewed three times as
# often: a process that died leaves its rooms to others within LEASE_SECONDS.
LEASE_SECONDS = 30.0
LEASE_RENEW_SECONDS = LEASE_SECONDS / 3
EVALUATOR_ONLY = frozenset({"admit", "id_checked", "step", "notes", "end"})

# What the scheduler tells a live room after a commit (`RoomServer.booking_changed`): the
# `error` code sent, the close code and the attendance's `left_reason` are all named after it.
BookingChange = Literal["cancelled", "moved"]
_CHANGE_MESSAGES: dict[str, str] = {
    "cancelled": "the interview has been cancelled",
    "moved": "the interview has been moved",
}


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    ENDED = 4000
    CANCELLED = 4001
    MOVED = 4002
    ELSEWHERE = 4307
    REVOKED = 4403
    NOT_FOUND = 4404
    TIME_LIMIT = 4408
    REPLACED = 4409
    TOO_LATE = 4410
    TOO_EARLY = 4425


class ProtocolError(Exception):
    """A message this connection should not have sent (or not now); nothing changed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _ResolveAgain(Exception):
    """A booking changed while a link was being resolved: its ticket may be stale."""


def ice_servers(settings: RoomsSettings, expires_at: datetime, ident: str) -> list[dict[str, Any]]:
    """The STUN/TURN servers in the browser's RTCIceServer shape; shared-secret TURN
    credentials (`rooms.turn`) for `ident` expire at `expires_at` (the room's window end)."""
    servers: list[dict[str, Any]] = []
    for server in ice_servers_until(settings, expires_at, ident):
        entry: dict[str, Any] = {"urls": list(server.urls)}
        if server.username is not None:
            entry["username"] = server.username
        if server.credential is not None:
            entry["credential"] = server.credential
        servers.append(entry)
    return servers


def _interview(settings: RoomsSettings) -> dict[str, Any]:
    return {"target_minutes": settings.interview_target_minutes, "steps": list(STEPS)}


def room_info(ticket: Ticket, settings: RoomsSettings, now: datetime, token: str) -> dict[str, Any]:
    """What a room page needs before joining (`GET /r/{token}/info`, docs/rooms.md)."""
    window = Window.of(ticket, settings)
    return {
        "role": ticket.role,
        "name": ticket.display_name,
        "other_name": ticket.other_name,
        "organisation": ticket.organisation,
        "locale": ticket.locale,
        "timezone": ticket.timezone,
        "language": ticket.language,
        "start": iso(ticket.start),
        "end": iso(ticket.end),
        "opens_at": iso(window.opens_at),
        "closes_at": iso(window.closes_at),
        "now": iso(now),
        "window": window.status(now),
        "interview": _interview(settings),
        "recording": recorded(ticket, settings),
        "websocket": f"/r/{token}/ws",
    }


@dataclass(eq=False)
class Connection:
    """One participant's WebSocket, and where its signaling stands."""

    ws: web.WebSocketResponse
    ticket: Ticket
    token: str = ""  # the link it came with (to send it to another process's address)
    attendance_id: uuid.UUID | None = None
    errors: int = 0
    offered: bool = False
    answered: bool = False
    # Why it ended, for the attendance row; whoever closes it says why first.
    leave_reason: str = "disconnected"
    tokens: float = BURST_MESSAGES
    refilled_at: float | None = None
    # Set by `kick`: the close code and text this connection's own handler closes with.
    kicked: asyncio.Future[tuple[int, str]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future(), repr=False
    )

    @property
    def role(self) -> Role:
        return self.ticket.role

    async def send(self, message: Mapping[str, Any]) -> None:
        """Send if still possible; a peer that is gone is noticed by its own handler."""
        if self.ws.closed:
            return
        try:
            await self.ws.send_str(json.dumps(message, ensure_ascii=False))
        except (ConnectionError, RuntimeError):
            pass

    async def close(self, code: int, reason: str, text: str = "") -> None:
        """Close from this connection's own handler: waits for the client's close frame."""
        self.leave_reason = reason
        try:
            await self.ws.close(code=code, message=text.encode())
        except (ConnectionError, RuntimeError):
            pass

    def kick(self, code: int, reason: str, text: str = "") -> None:
        """Have this connection closed, from any other task.

        The handler does the closing itself, so the closing handshake completes and the
        client reads `code` (aiohttp closing a socket whose reader waits in another task
        drops the transport at once, which clients report as 1006).
        """
        if not self.kicked.done():
            self.leave_reason = reason
            self.kicked.set_result((code, text))

    def allow(self, now: float) -> bool:
        """Take a token from the bucket (`now` from the loop's monotonic clock)."""
        if self.refilled_at is not None:
            self.tokens = min(
                BURST_MESSAGES, self.tokens + (now - self.refilled_at) * REFILL_PER_SECOND
            )
        self.refilled_at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


Handler = Callable[[Room[Connection], Connection, dict[str, Any]], Awaitable[None]]
Transition = Callable[[RoomState, datetime], RoomState]
# Told, in the transaction that records it, that the evaluator ended the interview with an
# outcome (the scheduler closes the booking: rooms cannot touch bookings themselves).
OnEnded = Callable[[AsyncSession, uuid.UUID, str, datetime], Awaitable[None]]


class RoomServer:
    """Every live room of this process, and the WebSocket endpoint that fills them.

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
        lease_now: Callable[[AsyncSession], Awaitable[datetime]] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        # Where lease expiry is read (the database's clock on PostgreSQL); None: `clock`.
        self._lease_now = lease_now
        self.lease_seconds = LEASE_SECONDS
        # Loop time at which each held room's lease was last known to be ours (measured
        # before the claim or renewal that confirmed it, so never later than the truth).
        self._lease_confirmed: dict[uuid.UUID, float] = {}
        # Told each error sent to a client, by code, and each room given up with its lease.
        self.on_ws_error: Callable[[str], None] | None = None
        self.on_lease_lost: Callable[[], None] | None = None
        # This process's own base URL when several serve rooms (`[rooms] public_url`): each
        # live room is then leased to one process. None: this process serves every room.
        self.host_url = host_url.rstrip("/") if host_url else None
        self._lease_task: asyncio.Task[None] | None = None
        # Where recordings go; None: this server records nothing, whatever the tickets say.
        self.recordings = recordings
        self._recording_worker = RecordingWorker()
        self._recording_ids: dict[RoomRecorder, uuid.UUID] = {}
        self._tickets: TicketResolver | None = None
        self._sessions: Sessions | None = None
        self._on_ended: OnEnded | None = None
        self._rooms: dict[uuid.UUID, Room[Connection]] = {}
        self._echoes: dict[tuple[uuid.UUID, Role], Connection] = {}
        # Candidates between check-in and their seat (or refusal): booking -> arrival times.
        self._arrivals: dict[uuid.UUID, list[datetime]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        # Counts the bookings the scheduler said changed: a link resolved while it moved on
        # is resolved again, so nobody enters a room with the ticket of a cancelled booking.
        self._changes = 0
        self.echo_seconds = ECHO_SECONDS
        self.max_echoes = MAX_ECHOES  # per organisation
        self._handlers: dict[str, Handler] = {
            "answer": self._on_answer,
            "candidate": self._on_candidate,
            "offer": self._on_offer,
            "admit": self._on_admit,
            "id_checked": self._on_id_checked,
            "step": self._on_step,
            "notes": self._on_notes,
            "end": self._on_end,
            "leave": self._on_leave,
            "ping": self._on_ping,
        }

    # --- lifecycle ---------------------------------------------------------------------

    def start(
        self, tickets: TicketResolver, sessions: Sessions, *, on_ended: OnEnded | None = None
    ) -> None:
        self._tickets = tickets
        self._sessions = sessions
        self._on_ended = on_ended
        self._closing = False
        if self.host_url is not None and self._lease_task is None:
            self._lease_task = asyncio.ensure_future(self._keep_leases())

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
        self._closing = True
        connections = [c for room in self._rooms.values() for c in room.connections.values()]
        for connection in [*connections, *self._echoes.values()]:
            connection.kick(CloseCode.GOING_AWAY, "shutdown", "server restarting")

    async def close(self) -> None:
        """Release whatever `shutdown` left (handlers cancelled on timeout, pending tasks)."""
        self._closing = True
        for connection in tuple(self._echoes.values()):
            connection.kick(CloseCode.GOING_AWAY, "shutdown", "server restarting")
        while self._tasks:
            await asyncio.gather(*tuple(self._tasks), return_exceptions=True)
        if self._lease_task is not None:
            self._lease_task.cancel()
            await asyncio.gather(self._lease_task, return_exceptions=True)
            self._lease_task = None
        rooms = tuple(self._rooms.values())
        self._rooms.clear()
        for room in rooms:
            await room.close()
        await self._recording_worker.close()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("room task failed", exc_info=task.exception())

    # --- the endpoint ------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        ws = _socket()
        await ws.prepare(request)
        while True:
            seen = self._changes
            ticket = await self._check_in(ws, request.match_info["token"], any_time=False)
            if ticket is None:
                return ws
            connection = Connection(ws, ticket, token=request.match_info["token"])
            arrival = self._arriving(ticket)
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

    async def _check_in(
        self, ws: web.WebSocketResponse, token: str, *, any_time: bool
    ) -> Ticket | None:
        """The link's ticket if it may connect now; otherwise refuse (error, close) and None.

        `any_time`: the room's window does not matter (the connection test), only the link.
        """
        if self._closing or self._tickets is None or self._sessions is None:
            await _refuse(ws, "unavailable", "the server is restarting", CloseCode.GOING_AWAY)
            return None
        try:
            ticket = await self._tickets.resolve(token)
        except Exception:
            log.exception("could not resolve a room link")
            self._count_error("internal")
            await _refuse(ws, "internal", "try again in a moment", CloseCode.INTERNAL_ERROR)
            return None
        if ticket is None:
            await _refuse(ws, "not_found", "this link is not valid", CloseCode.NOT_FOUND)
            return None
        if any_time:
            return ticket
        now = self.clock.now()
        window = Window.of(ticket, self.settings)
        status = window.status(now)
        if status == "too_early":
            await _refuse(
                ws,
                "too_early",
                "the room is not open yet",
                CloseCode.TOO_EARLY,
                opens_at=iso(window.opens_at),
                start=iso(ticket.start),
                now=iso(now),
            )
            return None
        if status == "too_late":
            await _refuse(
                ws,
                "too_late",
                "the room is closed",
                CloseCode.TOO_LATE,
                closes_at=iso(window.closes_at),
                now=iso(now),
            )
            return None
        return ticket

    # --- arrivals and departures -------------------------------------------------------

    async def _enter(self, connection: Connection, seen: int) -> Room[Connection] | None:
        """Seat the connection in its booking's room (made on first arrival); None if refused.

        `seen` is `_changes` from before the link was resolved. If a booking changed since,
        this raises `_ResolveAgain`: the ticket may be a cancelled or moved booking's. The
        check is made under the room's lock, which `booking_changed` takes to find whom to
        tell, so a change either comes before it (and is seen) or finds this connection.
        """
        assert self._sessions is not None
        ticket = connection.ticket
        refusal: tuple[str, str, int] | None = None
        while True:
            room = self._rooms.get(ticket.booking_id)
            if room is None:
                room = Room[Connection](ticket, self.settings)
                if self.recordings is None:
                    room.recording = False
                room.on_recording_stopped = self._recording_stopped
                room.on_closed = functools.partial(self._release, room)
                self._rooms[ticket.booking_id] = room
            async with room.lock:
                if room.closed:
                    continue  # its last participant just left; take a fresh room
                if self._changes != seen:
                    if self._forget_if_empty(room):
                        self._spawn(room.close())
                    raise _ResolveAgain
                previous = room.connections.get(ticket.role)
                extra: dict[str, Any] = {}
                try:
                    elsewhere = await self._claim(room)
                    if not room.loaded:
                        async with self._sessions.read() as session:
                            room.state = await load_state(session, ticket.booking_id)
                        room.loaded = True
                    if elsewhere is not None:
                        refusal = ("elsewhere", _ELSEWHERE, CloseCode.ELSEWHERE)
                        extra["url"] = _ws_url(elsewhere, connection.token)
                    elif ticket.role == "candidate" and ticket.held == "no_show":
                        refusal = ("missed", _NO_SHOW, CloseCode.ENDED)
                    elif ticket.role == "candidate" and (
                        room.state.ended_at is not None or ticket.held is not None
                    ):
                        refusal = ("ended", "the interview has ended", CloseCode.ENDED)
                    else:
                        async with self._sessions.write() as session:
                            connection.attendance_id = await record_join(
                                session, ticket.booking_id, ticket.role, self.clock.now()
                            )
                except Exception:
                    log.exception("room %s: could not record an arrival", ticket.booking_id)
                    self._count_error("internal")
                    refusal = ("internal", "try again in a moment", CloseCode.INTERNAL_ERROR)
                if refusal is None:
                    first = not room.connections
                    room.connections[ticket.role] = connection
                    room.changed()
                    await self._sync_recording(room)
                    if first:
                        room.expire_at(self.clock, functools.partial(self._expire, room))
                    break
                empty = self._forget_if_empty(room)
            if empty:
                await room.close()
            code, message, close_code = refusal
            await _refuse(connection.ws, code, message, close_code, **extra)
            return None
        if previous is not None:
            # The same link in another tab (or a reconnection the server had not noticed):
            # the newcomer wins, the previous one is told why before it is closed.
            previous.leave_reason = "replaced"
            await previous.send({"type": "replaced"})
            previous.kick(CloseCode.REPLACED, "replaced", "replaced")
        if self._closing:
            connection.kick(CloseCode.GOING_AWAY, "shutdown", "server restarting")
        return room

    def _arriving(self, ticket: Ticket) -> Callable[[], None]:
        """Note a candidate's arrival until `_enter` is over (their attendance row is then
        committed, or they were refused); returns what ends the note."""
        if ticket.role != "candidate":
            return lambda: None
        at = self.clock.now()
        arrivals = self._arrivals.setdefault(ticket.booking_id, [])
        arrivals.append(at)

        def done() -> None:
            arrivals.remove(at)
            if not arrivals and self._arrivals.get(ticket.booking_id) is arrivals:
                del self._arrivals[ticket.booking_id]

        return done

    def candidate_arrived(self, booking_id: uuid.UUID, instant: datetime) -> bool:
        """Whether this booking's candidate is in its room here, or arrived by `instant` and
        is being seated (their attendance row may not be committed yet).

        The scheduler's no-show mark asks this before it reads the attendance rows. It is
        synchronous: on this event loop no arrival can be half-registered while it runs.
        """
        if any(at <= instant for at in self._arrivals.get(booking_id, ())):
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
        async with room.media_locks[role]:
            if role not in room.connections:
                await room.bridge.remove(role)
        await self._broadcast(room)

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

    # --- news from the scheduler -------------------------------------------------------
    # Rooms cannot read bookings: the scheduler calls these once its change has committed.

    async def booking_changed(
        self,
        booking_id: uuid.UUID,
        change: BookingChange,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> bool:
        """Send everyone out of a booking's room: it was cancelled, or moved (to `start`).

        Each participant gets an `error` with the change as its code and is closed with 4001
        or 4002; their attendance says why. The room is forgotten at once, so the next
        connection resolves its link afresh: a cancelled booking's links are revoked, a
        moved one's window is elsewhere (its interview starts over: `rooms.models.restart`). A
        cancellation also ends the links' connection tests; a move does not concern them.
        True if anyone was connected.
        """
        # No await before the room leaves the registry: see `_enter`.
        self._changes += 1
        room = self._rooms.pop(booking_id, None)
        message: dict[str, Any] = {
            "type": "error",
            "code": change,
            "message": _CHANGE_MESSAGES[change],
        }
        if change == "moved" and start is not None and end is not None:
            window = Window.around(start, end, self.settings)
            message.update(
                start=iso(start),
                end=iso(end),
                opens_at=iso(window.opens_at),
                closes_at=iso(window.closes_at),
            )
        told: list[Connection] = []
        if room is not None:
            async with room.lock:
                told.extend(room.connections.values())
        if change == "cancelled":
            for role in ROLES:
                test = self._echoes.get((booking_id, role))
                if test is not None:
                    told.append(test)
        close_code = CloseCode.CANCELLED if change == "cancelled" else CloseCode.MOVED
        for connection in told:
            await connection.send(message)
            connection.kick(close_code, change, change)
        return bool(told)

    async def links_revoked(self, booking_id: uuid.UUID) -> bool:
        """Some of a booking's links were replaced by new ones (another evaluator took the
        booking, or the candidate's links were re-issued): whoever is connected with a link
        that no longer opens the room, in the room or in a connection test, gets a `revoked`
        error and is closed with 4403, and the room forgets them at once (their media
        included), so they see and hear nothing more, whatever their page does.

        The rooms cannot read bookings: each live connection's link is resolved again, and
        those that no longer resolve (to the same role) are the revoked ones. Call it before
        `booking_changed`, which would otherwise send them out as merely `moved`. True if
        anyone was sent out.
        """
        assert self._tickets is not None
        # Before any await: a link being resolved meanwhile is resolved again (see `_enter`).
        self._changes += 1
        room = self._rooms.get(booking_id)
        live: list[Connection] = []
        if room is not None:
            async with room.lock:
                live.extend(room.connections.values())
        live.extend(c for (booking, _), c in self._echoes.items() if booking == booking_id)
        revoked: list[Connection] = []
        for connection in live:
            ticket = await self._tickets.resolve(connection.token)
            if ticket is None or ticket.role != connection.role:
                revoked.append(connection)
        for connection in revoked:
            await connection.send({"type": "error", "code": "revoked", "message": _REVOKED})
            connection.kick(CloseCode.REVOKED, "revoked", "revoked")
            if room is None or room.connections.get(connection.role) is not connection:
                continue  # a connection test, or already gone
            async with room.lock:
                if room.connections.get(connection.role) is connection:
                    del room.connections[connection.role]
                    room.changed()
            async with room.media_locks[connection.role]:
                if connection.role not in room.connections:
                    await room.bridge.remove(connection.role)
        if room is not None and revoked:
            await self._broadcast(room)  # the other participant sees them gone
        return bool(revoked)

    async def marked_no_show(self, booking_id: uuid.UUID) -> bool:
        """Tell an evaluator waiting in the room that the candidate was marked absent.

        Nobody is sent away: the evaluator may stay, and come back, until the room closes,
        to end the interview and finish the notes. The candidate's link no longer opens the
        room; a candidate connected when the mark came (only a late mark allows it) is left
        alone rather than cut off mid-interview. True if the evaluator was told.
        """
        self._changes += 1
        room = self._rooms.get(booking_id)
        evaluator = room.connections.get("evaluator") if room is not None else None
        if room is None or evaluator is None:
            return False
        room.no_show_told = True
        await evaluator.send(
            {
                "type": "notice",
                "code": "no_show",
                "message": _NO_SHOW,
            }
        )
        return True

    # --- the conversation --------------------------------------------------------------

    async def _converse(self, room: Room[Connection], connection: Connection) -> None:
        await connection.send(self._hello(room, connection))
        await self._broadcast(room)
        await self._offer(room, connection)
        await self._receive(connection, functools.partial(self._on_text, room, connection))

    async def _receive(
        self, connection: Connection, on_text: Callable[[str], Awaitable[None]]
    ) -> None:
        """Hand each text message to `on_text`, in order, until the socket closes or is kicked."""
        ws = connection.ws
        while not ws.closed:
            if connection.kicked.done():
                code, text = connection.kicked.result()
                await connection.close(code, connection.leave_reason, text)
                return
            receive = asyncio.ensure_future(ws.receive())
            await asyncio.wait((receive, connection.kicked), return_when=asyncio.FIRST_COMPLETED)
            if not receive.done():
                receive.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await receive
                continue
            msg = receive.result()
            if msg.type == WSMsgType.TEXT:
                await on_text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await self._error(connection, "malformed", "send JSON in text frames", None)
            else:
                return  # closed by the client, or ERROR (a frame over FRAME_LIMIT_BYTES)

    def _hello(self, room: Room[Connection], connection: Connection) -> dict[str, Any]:
        ticket = connection.ticket
        now = self.clock.now()
        hello: dict[str, Any] = {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "mode": "room",
            "role": ticket.role,
            "name": ticket.display_name,
            "other_name": ticket.other_name,
            "organisation": ticket.organisation,
            "locale": ticket.locale,
            "timezone": ticket.timezone,
            "language": ticket.language,
            "booking": {
                "id": str(ticket.booking_id),
                "start": iso(ticket.start),
                "end": iso(ticket.end),
                "opens_at": iso(room.window.opens_at),
                "closes_at": iso(room.window.closes_at),
            },
            "now": iso(now),
            "ice_servers": ice_servers(
                self.settings, room.window.closes_at, f"{ticket.booking_id}-{ticket.role}"
            ),
            "interview": _interview(self.settings),
            "recording": room.recording,
            "room": room.fields(now),
        }
        if ticket.role == "evaluator":
            hello["notes"] = room.state.notes
        return hello

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

    async def _parse(self, connection: Connection, data: str) -> dict[str, Any] | None:
        """The message as a JSON object with a string type; None (after an error) if not."""
        if not connection.allow(asyncio.get_running_loop().time()):
            await self._error(connection, "rate_limited", "too many messages; slow down", None)
            return None
        if len(data) * 4 > MAX_MESSAGE_BYTES and len(data.encode()) > MAX_MESSAGE_BYTES:
            await self._error(
                connection, "too_large", f"messages are limited to {MAX_MESSAGE_BYTES} bytes", None
            )
            return None
        try:
            message = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: "[[[[…" nested too deep
            await self._error(connection, "malformed", "not JSON", None)
            return None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self._error(connection, "malformed", "a JSON object with a string type", None)
            return None
        return message

    async def _on_text(self, room: Room[Connection], connection: Connection, data: str) -> None:
        if room.window.status(self.clock.now()) == "too_late":
            self._expire(room)
            return
        message = await self._parse(connection, data)
        if message is None:
            return
        kind: str = message["type"]
        handler = self._handlers.get(kind)
        if handler is None:
            await self._error(connection, "unknown_type", "unknown message type", kind[:40])
            return
        if kind in EVALUATOR_ONLY and connection.role != "evaluator":
            await self._error(connection, "forbidden", f"only the evaluator can send {kind}", kind)
            return
        try:
            await handler(room, connection, message)
        except (ProtocolError, Refusal) as exc:
            await self._error(connection, exc.code, exc.message, kind)
        except Exception:
            log.exception("room %s: %s failed", room.booking_id, kind)
            await self._error(connection, "internal", "the server could not do it; retry", kind)

    async def _error(
        self, connection: Connection, code: str, message: str, about: str | None
    ) -> None:
        error: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if about is not None:
            error["about"] = about
        self._count_error(code)
        await connection.send(error)
        if code in COUNTED_ERRORS:
            connection.errors += 1
            if connection.errors >= MAX_PROTOCOL_ERRORS:
                await connection.close(
                    CloseCode.POLICY_VIOLATION, "policy", "too many protocol errors"
                )

    async def _change(self, room: Room[Connection], change: Transition) -> bool:
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
            await self._sync_recording(room)
        await self._broadcast(room)
        return True

    # --- several processes: one holds each live room -----------------------------------

    async def _claim(self, room: Room[Connection]) -> str | None:
        """Under `room.lock`: lease the room to this process; None if it is ours, else the
        base URL of the live process that holds it. No-op with a single process."""
        if self.host_url is None or room.leased:
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
                        url=self.host_url,
                        now=now,
                        until=until,
                    )
            except IntegrityError:
                if attempt:
                    raise
                continue  # another process inserted the first lease at the same moment
            room.leased = elsewhere is None
            if room.leased:
                self._lease_confirmed[room.booking_id] = started
            return elsewhere
        return None  # not reached

    def _count_error(self, code: str) -> None:
        if self.on_ws_error is not None:
            self.on_ws_error(code)

    async def _lease_time(self, session: AsyncSession) -> datetime:
        return await self._lease_now(session) if self._lease_now is not None else self.clock.now()

    async def _release(self, room: Room[Connection]) -> None:
        """The room has closed: its lease goes, so the next arrival may be served anywhere."""
        if not room.leased or self._sessions is None:
            return
        room.leased = False
        self._lease_confirmed.pop(room.booking_id, None)
        try:
            async with self._sessions.write() as session:
                await release_host(session, room.booking_id, room.lease_id)
        except Exception:
            log.exception("room %s: could not release its lease", room.booking_id)

    async def _keep_leases(self) -> None:
        """Renew every third of a lease. A renewal that fails, or does not finish while the
        leases can still be vouched for, makes this process give up the rooms whose lease
        may end before the next try: their people reconnect to whoever holds them next,
        instead of staying here while the others meet there."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            await self.keep_leases_once()

    async def keep_leases_once(self) -> None:
        """One renewal, bounded by the time the leases can still be vouched for."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(max(self._time_left(), 0.001)):
                await self.renew_leases()
        except Exception:
            log.exception("could not renew the rooms' leases")
            await self.drop_lapsing(loop.time() + self.lease_seconds / 3)

    def _time_left(self) -> float:
        """Seconds until the first held lease may end (with a margin); a lot if none."""
        now = asyncio.get_running_loop().time()
        ends = [
            at + self.lease_seconds * 0.9 - now
            for booking_id, at in self._lease_confirmed.items()
            if (room := self._rooms.get(booking_id)) is not None and room.leased
        ]
        return min(ends, default=self.lease_seconds)

    async def drop_lapsing(self, before: float) -> int:
        """Give up every held room whose lease may have ended by loop time `before`: its
        people are sent away with `elsewhere` (no address: they start over at the one they
        came in by, and are sent on to the new holder). Returns how many rooms."""
        dropped = 0
        for room in list(self._rooms.values()):
            confirmed = self._lease_confirmed.get(room.booking_id)
            if not room.leased or room.closed or confirmed is None:
                continue
            if confirmed + self.lease_seconds * 0.9 > before:
                continue
            room.leased = False
            self._lease_confirmed.pop(room.booking_id, None)
            dropped += 1
            log.error("room %s: its lease could not be renewed; its people go", room.booking_id)
            if self.on_lease_lost is not None:
                self.on_lease_lost()
            await self._send_elsewhere(room, None)
        return dropped

    async def _send_elsewhere(self, room: Room[Connection], url: str | None) -> None:
        for connection in tuple(room.connections.values()):
            message: dict[str, Any] = {"type": "error", "code": "elsewhere", "message": _ELSEWHERE}
            if url is not None:
                message["url"] = _ws_url(url, connection.token)
            with contextlib.suppress(Exception):
                await connection.send(message)
            connection.kick(CloseCode.ELSEWHERE, "elsewhere", "elsewhere")

    async def renew_leases(self) -> None:
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
                self._lease_confirmed[room.booking_id] = started
        await self._reconcile(rooms)
        for room in rooms:
            if room.lease_id in kept or room.closed:
                continue
            async with room.lock:
                room.leased = False
                self._lease_confirmed.pop(room.booking_id, None)
                elsewhere = await self._claim(room)
                if elsewhere is None:
                    continue
                if self.on_lease_lost is not None:
                    self.on_lease_lost()
                await self._send_elsewhere(room, elsewhere)

    async def _reconcile(self, rooms: list[Room[Connection]]) -> None:
        """Catch up with changes made by other processes (their API, their timers).

        In one process the scheduler tells the room at once (`booking_changed`,
        `marked_no_show`); a change committed by another process only reaches the room
        here, at the next renewal.
        """
        assert self._tickets is not None
        for room in rooms:
            if room.closed:
                continue
            schedule = await self._tickets.schedule(room.booking_id)
            if schedule is None or schedule.status == "cancelled":
                await self.booking_changed(room.booking_id, "cancelled")
            elif schedule.start != room.start:
                await self.booking_changed(
                    room.booking_id, "moved", start=schedule.start, end=schedule.end
                )
            elif schedule.status == "no_show" and not room.no_show_told:
                await self.marked_no_show(room.booking_id)

    # --- recording ---------------------------------------------------------------------

    async def _sync_recording(self, room: Room[Connection]) -> None:
        """Under `room.lock`: start or stop the room's recorder as its state now requires.

        A recording that cannot start (disk, encoder) is logged and the interview goes on
        unrecorded: losing the recording must never cost the candidate their interview.
        """
        assert self._sessions is not None
        wanted = room.should_record()
        if not wanted:
            if room.recorder is not None:
                await room.stop_recording()
            return
        if room.recorder is not None or self.recordings is None:
            return
        now = self.clock.now()
        name = f"{room.booking_id}/{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}{RECORDING_SUFFIX}"
        recorder = RoomRecorder(
            self.recordings / name,
            self._recording_worker,
            preset=self.settings.recording_preset,
        )
        try:
            await recorder.start()
            async with self._sessions.write() as session:
                self._recording_ids[recorder] = await recording_started(
                    session, room.booking_id, name, now
                )
        except Exception:
            log.exception("room %s: could not start recording", room.booking_id)
            await recorder.stop()
            return
        room.start_recording(recorder)

    def recording_in_progress(self, recording_id: uuid.UUID) -> bool:
        """Whether this process is writing that recording right now."""
        return recording_id in self._recording_ids.values()

    async def _recording_stopped(self, recorder: RoomRecorder) -> None:
        recording_id = self._recording_ids.pop(recorder, None)
        if recording_id is None or self._sessions is None:
            return
        try:
            async with self._sessions.write() as session:
                await recording_finished(session, recording_id, self.clock.now(), recorder.size)
        except Exception:
            log.exception("could not record the end of recording %s", recording_id)

    # --- the connection test ---------------------------------------------------------

    async def echo(self, request: web.Request) -> web.StreamResponse:
        """`/r/{token}/echo`: the participant's media comes back through the server.

        Any day while the link is valid, before, during and after the room's window: the
        device check is done ahead of time, and proves nothing about the room itself. It is
        not attendance, and it never touches the room.
        """
        ws = _socket()
        await ws.prepare(request)
        while True:
            seen = self._changes
            ticket = await self._check_in(ws, request.match_info["token"], any_time=True)
            if ticket is None:
                return ws
            # Registered below without awaiting: a later cancellation finds this test.
            if self._changes == seen:
                break
        key = (ticket.booking_id, ticket.role)
        share = sum(
            1
            for other in self._echoes.values()
            if other.ticket.organisation_id == ticket.organisation_id
        )
        if key not in self._echoes and share >= self.max_echoes:
            await _refuse(
                ws, "busy", "too many tests at once; retry soon", CloseCode.TRY_AGAIN_LATER
            )
            return ws
        connection = Connection(ws, ticket, token=request.match_info["token"])
        previous = self._echoes.get(key)
        self._echoes[key] = connection
        if previous is not None:
            await previous.send({"type": "replaced"})
            previous.kick(CloseCode.REPLACED, "replaced", "replaced")
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.echo_seconds, self._echo_time_up, connection)
        peer: EchoPeer | None = None
        try:
            # The test runs any day: its TURN credentials last as long as the test itself.
            until = self.clock.now() + timedelta(seconds=self.echo_seconds + 60)
            ident = f"{ticket.booking_id}-{ticket.role}-echo"
            peer = EchoPeer(
                rtc_configuration(self.settings, until, ident),
                max_video_bitrate=self.settings.max_video_bitrate or None,
            )
            await connection.send(
                {
                    "type": "hello",
                    "protocol": PROTOCOL_VERSION,
                    "mode": "echo",
                    "role": ticket.role,
                    "ice_servers": ice_servers(self.settings, until, ident),
                    "seconds": self.echo_seconds,
                }
            )
            offer = await peer.offer()
            connection.offered = True
            await connection.send({"type": "offer", "sdp": offer["sdp"]})
            await self._receive(connection, functools.partial(self._on_echo_text, peer, connection))
        except Exception:
            log.exception("a connection test failed")
            await connection.close(CloseCode.INTERNAL_ERROR, "disconnected", "server error")
        finally:
            timer.cancel()
            if self._echoes.get(key) is connection:
                del self._echoes[key]
            if peer is not None:
                await asyncio.shield(self._spawn(peer.close()))
        return ws

    def _echo_time_up(self, connection: Connection) -> None:
        async def time_up() -> None:
            await connection.send(
                {"type": "error", "code": "time_limit", "message": "the test is over"}
            )
            connection.kick(CloseCode.TIME_LIMIT, "time_limit", "time_limit")

        self._spawn(time_up())

    async def _on_echo_text(self, peer: EchoPeer, connection: Connection, data: str) -> None:
        message = await self._parse(connection, data)
        if message is None:
            return
        kind: str = message["type"]
        try:
            if kind == "answer":
                sdp = _answer_sdp(connection, message)
                try:
                    await peer.answer({"type": "answer", "sdp": sdp})
                except Exception as exc:
                    raise ProtocolError("invalid", f"the answer was refused: {exc}"[:200]) from exc
                connection.answered = True
            elif kind == "candidate":
                candidate = _trickled(connection, message)
                try:
                    await peer.add_ice_candidate(candidate)
                except Exception as exc:
                    raise ProtocolError(
                        "invalid", f"the candidate was refused: {exc}"[:200]
                    ) from exc
            elif kind == "ping":
                await connection.send({"type": "pong"})
            elif kind == "leave":
                await connection.close(CloseCode.NORMAL, "left", "bye")
            elif kind == "offer":
                raise ProtocolError("out_of_order", "the server makes the offers; send an answer")
            elif kind in self._handlers:
                raise ProtocolError("forbidden", f"{kind} has no meaning in a connection test")
            else:
                await self._error(connection, "unknown_type", "unknown message type", kind[:40])
        except ProtocolError as exc:
            await self._error(connection, exc.code, exc.message, kind)

    # --- message handlers ----------------------------------------------------------------

    async def _on_answer(
        self, room: Room[Connection], connection: Connection, message: dict[str, Any]
    ) -> None:
        sdp = _answer_sdp(connection, message)
        role = connection.role
        async with room.media_locks[role]:
            if room.connections.get(role) is not connection:
                return
            try:
                await room.bridge.answer(role, {"type": "answer", "sdp": sdp})
            except Exception as exc:
                raise ProtocolError("invalid", f"the answer was refused: {exc}"[:200]) from exc
            connection.answered = True

    async def _on_candidate(
        self, room: Room[Connection], connection: Connection, message: dict[str, Any]
    ) -> None:
        candidate = _trickled(connection, message)
        role = connection.role
        async with room.media_locks[role]:
            if room.connections.get(role) is not connection:
                return
            try:
                await room.bridge.add_ice_candidate(role, candidate)
            except Exception as exc:
                raise ProtocolError("invalid", f"the candidate was refused: {exc}"[:200]) from exc

    async def _on_offer(
        self, room: Room[Connection], connection: Connection, message: dict[str, Any]
    ) -> None:
        raise ProtocolError("out_of_order", "the server makes the offers; send an answer")

    async def _on_admit(
        self, room: Room[Connection], connection: Connection, message: dict[str, Any]
    ) -> None:
        def change(state: RoomState, now: datetime) -> RoomState:
            return admit(state, now, candidate_present="candidate" in room.connections)

        if not await self._change(room, change):
            await connection.send({"type": "state", **room.fields(self.clock.now())})

    async def _on_id_checked(
        self, room: Room[Connection], connection: Connection, message: dict[str, Any]
    ) -> None:
        checked = message.get("checked")
        if not isinstance(checked, bool):
            raise ProtocolError("invalid", "checked must be true or false")
        await self._change(room, lambda state, now: check_id(state, now, checked))

    async def _on_step(
        self, room: Room[Connection], connection: Connection, message: dict[str, Any]
    ) -> None:
        step = message.get("step")
        if step not in STEPS:
            raise ProtocolError("invalid", f"step must be one of {', '.join(STEPS)}")
        await self._change(room, lambda state, now: move_to(state, now, step))

    async def _on_notes(
        self, room: Room[Connection], connection: Connection, message: dict[str, Any]
    ) -> None:
        text = _text(message, "text", allow_empty=True)
        assert self._sessions is not None
        async with room.lock:
            now = self.clock.now()
            new = write_notes(room.state, text)
            if new != room.state:
                async with self._sessions.write() as session:
                    await save_state(session, new, now=now)
                room.state = new  # private: no version, no broadcast
        await connection.send({"type": "notes_saved", "at": iso(now), "length": len(text)})

    async def _on_end(
        self, room: Room[Connection], connection: Connection, message: dict[str, Any]
    ) -> None:
        outcome = message.get("outcome", "completed")
        if not isinstance(outcome, str):
            raise ProtocolError("invalid", "outcome must be a string")
        await self._change(room, lambda state, now: end(state, now, outcome))
        candidate = room.connections.get("candidate")
        if candidate is not None:
            candidate.leave_reason = "ended"
            await candidate.send(
                {"type": "error", "code": "ended", "message": "the interview has ended"}
            )
            candidate.kick(CloseCode.ENDED, "ended", "ended")

    async def _on_leave(
        self, room: Room[Connection], connection: Connection, message: dict[str, Any]
    ) -> None:
        await connection.close(CloseCode.NORMAL, "left", "bye")

    async def _on_ping(
        self, room: Room[Connection], connection: Connection, message: dict[str, Any]
    ) -> None:
        await connection.send({"type": "pong"})


def _answer_sdp(connection: Connection, message: Mapping[str, Any]) -> str:
    sdp = _text(message, "sdp")
    if not connection.offered or connection.answered:
        raise ProtocolError("out_of_order", "no offer is waiting for an answer")
    return sdp


def _trickled(connection: Connection, message: Mapping[str, Any]) -> RTCIceCandidate | None:
    """The candidate a `candidate` message carries; None for the end of candidates."""
    if "candidate" not in message:
        raise ProtocolError("invalid", "candidate is required (null: end of candidates)")
    if not connection.answered:
        raise ProtocolError("out_of_order", "send the answer before the candidates")
    value = message["candidate"]
    return None if value is None or value == "" else _ice_candidate(message)


def _socket() -> web.WebSocketResponse:
    return web.WebSocketResponse(
        timeout=CLOSE_TIMEOUT_SECONDS,
        heartbeat=HEARTBEAT_SECONDS,
        max_msg_size=FRAME_LIMIT_BYTES,
        compress=False,
    )


def _text(message: Mapping[str, Any], name: str, *, allow_empty: bool = False) -> str:
    value = message.get(name)
    if not isinstance(value, str) or (not value and not allow_empty):
        kind = "a string" if allow_empty else "a non-empty string"
        raise ProtocolError("invalid", f"{name} must be {kind}")
    return value


def _ice_candidate(message: Mapping[str, Any]) -> RTCIceCandidate:
    """A browser's RTCIceCandidateInit as aiortc's RTCIceCandidate, or ProtocolError."""
    value = message["candidate"]
    mid = message.get("sdpMid")
    index = message.get("sdpMLineIndex")
    if not isinstance(value, str):
        raise ProtocolError("invalid", "candidate must be a string or null")
    if mid is not None and not isinstance(mid, str):
        raise ProtocolError("invalid", "sdpMid must be a string or null")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
        raise ProtocolError("invalid", "sdpMLineIndex must be an integer or null")
    if mid is None and index is None:
        raise ProtocolError("invalid", "sdpMid or sdpMLineIndex is required")
    line = value.strip().removeprefix("a=").removeprefix("candidate:")
    if len(line.split()) < 8:
        raise ProtocolError("invalid", "not an ICE candidate")
    try:
        candidate = candidate_from_sdp(line)
    except (ValueError, IndexError, AssertionError) as exc:
        raise ProtocolError("invalid", "not an ICE candidate") from exc
    candidate.sdpMid = mid
    candidate.sdpMLineIndex = index
    return candidate


def _ws_url(base: str, token: str) -> str:
    """The room WebSocket of `token` at another process's base URL (http -> ws)."""
    scheme, _, rest = base.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest.rstrip('/')}/r/{token}/ws"


async def _refuse(
    ws: web.WebSocketResponse, code: str, message: str, close: int, **extra: Any
) -> None:
    """Tell why, then close: a browser cannot read the status of a refused handshake."""
    if ws.closed:
        return
    try:
        await ws.send_str(json.dumps({"type": "error", "code": code, "message": message, **extra}))
        await ws.close(code=close, message=code.encode())
    except (ConnectionError, RuntimeError):
        pass
