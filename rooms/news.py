"""The scheduler's news in the live rooms: a booking cancelled or moved, links revoked, a
candidate marked absent.

Rooms cannot read bookings: the scheduler calls these once its change has committed (in
one process at once, through `RoomServer`; from another process at the next lease renewal,
`rooms.hosts`). Each bumps `CheckIn.changes` before its first await, so a link being
resolved meanwhile is resolved again (`RoomServer._enter`).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime

from rooms.checkin import CheckIn
from rooms.echo import EchoService
from rooms.messages import BookingChange, change_error
from rooms.protocol import CloseCode, Connection
from rooms.room import Room, TicketResolver
from rooms.settings import RoomsSettings

__all__ = ["NO_SHOW", "BookingNews"]

# The no-show mark, as the candidate's refusal (`missed`) and the evaluator's `notice` say it.
NO_SHOW = "the candidate did not join in time and is marked absent"
_REVOKED = "this link is no longer valid: a newer one was sent by e-mail"

RoomTask = Callable[[Room[Connection]], Awaitable[None]]


class BookingNews:
    """Applies the scheduler's news to the room server's live rooms and connection tests."""

    def __init__(
        self,
        rooms: MutableMapping[uuid.UUID, Room[Connection]],
        echoes: EchoService,
        check_in: CheckIn,
        settings: RoomsSettings,
        *,
        broadcast: RoomTask,
        unbridge: Callable[[Room[Connection], Connection], Awaitable[None]],
    ) -> None:
        self._rooms = rooms
        self._echoes = echoes
        self._check_in = check_in
        self._settings = settings
        self._broadcast = broadcast
        self._unbridge = unbridge
        self._tickets: TicketResolver | None = None

    def start(self, tickets: TicketResolver) -> None:
        self._tickets = tickets

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
        # No await before the room leaves the registry: see `RoomServer._enter`.
        self._check_in.changes += 1
        room = self._rooms.pop(booking_id, None)
        message = change_error(change, self._settings, start=start, end=end)
        told: list[Connection] = []
        if room is not None:
            async with room.lock:
                told.extend(room.connections.values())
        if change == "cancelled":
            told.extend(self._echoes.of(booking_id))
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

        Each live connection's link is resolved again, and those that no longer resolve (to
        the same role) are the revoked ones. Call it before `booking_changed`, which would
        otherwise send them out as merely `moved`. True if anyone was sent out.
        """
        assert self._tickets is not None
        self._check_in.changes += 1
        room = self._rooms.get(booking_id)
        live: list[Connection] = []
        if room is not None:
            async with room.lock:
                live.extend(room.connections.values())
        live.extend(self._echoes.of(booking_id))
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
            await self._unbridge(room, connection)
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
        self._check_in.changes += 1
        room = self._rooms.get(booking_id)
        evaluator = room.connections.get("evaluator") if room is not None else None
        if room is None or evaluator is None:
            return False
        room.no_show_told = True
        await evaluator.send({"type": "notice", "code": "no_show", "message": NO_SHOW})
        return True
