"""Check-in: whether a room link may connect now, and who is arriving but not yet seated.

Both endpoints (`/r/{token}/ws` and the connection test) resolve the link first; the room
also needs its window open. A link is resolved before the scheduler's news can reach the
room, so `CheckIn.changes` counts that news: an endpoint that sees it move while it was
resolving resolves again, and nobody enters with the ticket of a cancelled booking.
Candidates between check-in and their seat are noted, so the scheduler's no-show mark
never misses one whose attendance row is not committed yet.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from aiohttp import web

from rooms.protocol import CloseCode, CountError, refuse
from rooms.room import Clock, Ticket, TicketResolver, Window, iso
from rooms.settings import RoomsSettings

__all__ = ["CheckIn"]

log = logging.getLogger("viva.rooms")


class CheckIn:
    """The room server's door: closed until `open`, and again from `close`."""

    def __init__(self, settings: RoomsSettings, clock: Clock, count: CountError) -> None:
        self._settings = settings
        self._clock = clock
        self._count = count
        self._tickets: TicketResolver | None = None
        self.closing = False
        # Counts the bookings the scheduler said changed (see the module's docstring).
        self.changes = 0
        # Candidates between check-in and their seat (or refusal): booking -> arrival times.
        self._arrivals: dict[uuid.UUID, list[datetime]] = {}

    def open(self, tickets: TicketResolver) -> None:
        self._tickets = tickets
        self.closing = False

    def close(self) -> None:
        self.closing = True

    async def ticket(
        self, ws: web.WebSocketResponse, token: str, *, any_time: bool
    ) -> Ticket | None:
        """The link's ticket if it may connect now; otherwise refuse (error, close) and None.

        `any_time`: the room's window does not matter (the connection test), only the link.
        """
        if self.closing or self._tickets is None:
            await refuse(ws, "unavailable", "the server is restarting", CloseCode.GOING_AWAY)
            return None
        try:
            ticket = await self._tickets.resolve(token)
        except Exception:
            log.exception("could not resolve a room link")
            self._count("internal")
            await refuse(ws, "internal", "try again in a moment", CloseCode.INTERNAL_ERROR)
            return None
        if ticket is None:
            await refuse(ws, "not_found", "this link is not valid", CloseCode.NOT_FOUND)
            return None
        if any_time:
            return ticket
        now = self._clock.now()
        window = Window.of(ticket, self._settings)
        status = window.status(now)
        if status == "too_early":
            await refuse(
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
            await refuse(
                ws,
                "too_late",
                "the room is closed",
                CloseCode.TOO_LATE,
                closes_at=iso(window.closes_at),
                now=iso(now),
            )
            return None
        return ticket

    def arriving(self, ticket: Ticket, at: datetime) -> Callable[[], None]:
        """Note a candidate's arrival at `at` until they are seated (their attendance row,
        which records `at`, is then committed) or refused; returns what ends the note."""
        if ticket.role != "candidate":
            return lambda: None
        arrivals = self._arrivals.setdefault(ticket.booking_id, [])
        arrivals.append(at)

        def done() -> None:
            arrivals.remove(at)
            if not arrivals and self._arrivals.get(ticket.booking_id) is arrivals:
                del self._arrivals[ticket.booking_id]

        return done

    def arrived_by(self, booking_id: uuid.UUID, instant: datetime) -> bool:
        """Whether a candidate of this booking checked in by `instant` and is being seated."""
        return any(at <= instant for at in self._arrivals.get(booking_id, ()))
