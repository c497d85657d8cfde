"""The scheduler's side of the rooms: room links to tickets, the database, the app's lifecycle.

`rooms` never imports the scheduler (tests/test_layout.py), so it declares what it needs —
a `TicketResolver` and `Sessions` — and this module provides them from the bookings and the
app's `Database`. The HTTP around the rooms (the room page, `GET /r/{token}/info`) is in
scheduler/web/room_pages.py; a failed look-up is counted by the callback `setup` is given
(the web layer's throttle), so this module needs nothing of HTTP.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

from aiohttp import web
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.models import consented
from rooms.relay import Role
from rooms.room import Schedule, Ticket
from rooms.signaling import Missed, RoomServer
from rooms.tokens import LinkKind, LinkSigner, ParsedLink, new_nonce, parse_link
from scheduler import history, keys
from scheduler.bookings import HELD_STATUSES
from scheduler.db import Database, is_sqlite
from scheduler.history import Actor
from scheduler.i18n import Catalogs
from scheduler.leases import lease_clock
from scheduler.links import room_nonce
from scheduler.models import ACTIVE_STATUSES, Booking, Candidate, Evaluator, Organisation
from scheduler.notices import current_versions
from scheduler.webhooks import sources as webhooks

__all__ = ["BookingTickets", "setup", "ticket_for"]

log = logging.getLogger("viva.rooms")

OnMiss = Callable[[], Awaitable[None]]

_KINDS: tuple[tuple[LinkKind, Role], ...] = (
    (LinkKind.ROOM_CANDIDATE, "candidate"),
    (LinkKind.ROOM_EVALUATOR, "evaluator"),
)
# Checked against when the booking does not exist, so that a forged id costs the same MAC
# computation as a real one and takes the same path out.
_NO_NONCE = new_nonce()
# The statuses in which a link resolves. Once the booking is held (marked no_show, or
# completed) the candidate's turn is used: their link says so (`Ticket.held`) and no longer
# opens the room, but the evaluator may still have notes to finish, or be waiting when the
# no-show mark comes. A cancelled booking resolves for nobody (its nonce was rotated too).
_RESOLVING = (*ACTIVE_STATUSES, *HELD_STATUSES)


async def ticket_for(
    session: AsyncSession, signer: LinkSigner, token: str, catalogs: Catalogs | None = None
) -> Ticket | None:
    """The ticket behind a room token, or None, whatever the reason.

    Unknown, forged, revoked (the nonce was rotated), cancelled or otherwise not in
    `_RESOLVING`: all answer None, so that a caller learns nothing about
    bookings it does not hold a link to.
    The MAC is compared in constant time (`LinkSigner.verify`).
    """
    for kind, role in _KINDS:
        link = parse_link(token, kind)
        if link is not None:
            return await _ticket(session, signer, link, role, catalogs)
    return None


async def _ticket(
    session: AsyncSession,
    signer: LinkSigner,
    link: ParsedLink,
    role: Role,
    catalogs: Catalogs | None,
) -> Ticket | None:
    booking = await session.get(Booking, link.ident)
    # The role's own nonce: a replaced evaluator's link (or a candidate's re-issued one) no
    # longer verifies, while the other role's link goes on working.
    authentic = signer.verify(link, room_nonce(booking, role) if booking is not None else _NO_NONCE)
    if booking is None or not authentic or booking.status not in _RESOLVING:
        return None
    candidate = await session.get(Candidate, booking.candidate_id)
    evaluator = await session.get(Evaluator, booking.evaluator_id)
    organisation = await session.get(Organisation, booking.organisation_id)
    if candidate is None or evaluator is None or organisation is None:
        return None  # foreign keys make this impossible; say "not found" rather than crash
    me, other = (candidate, evaluator) if role == "candidate" else (evaluator, candidate)
    return Ticket(
        booking_id=booking.id,
        role=role,
        display_name=me.name,
        other_name=other.name,
        organisation=organisation.name,
        start=booking.start_at,
        end=booking.end_at,
        locale=me.locale,
        timezone=me.timezone,
        language=candidate.language,
        recording=organisation.recording and booking.recording is not False,
        # A consent to the organisation's current notice (any language) counts; one to a
        # text it has since changed asks again. Without catalogs (a migration's test), any.
        consented=await consented(
            session,
            booking.id,
            role,
            current_versions(organisation.consent_notices, catalogs) if catalogs else None,
        ),
        held=booking.status if booking.status in HELD_STATUSES else None,
        organisation_id=organisation.id,
    )


async def interview_ended(
    session: AsyncSession, booking_id: uuid.UUID, outcome: str, now: datetime
) -> None:
    """The evaluator ended the interview: a completed one or a no-show closes the booking.

    Runs in the transaction that records the end, so the room and the booking never
    disagree. `interrupted` and `id_refused` leave the booking as it is: the organisation
    decides what follows (a force-majeure move gives the candidate a new interview); its
    webhooks hear of them (the held outcomes are heard through the history).
    """
    if outcome not in HELD_STATUSES:
        booking = await session.get(Booking, booking_id)
        if booking is not None and booking.status in ACTIVE_STATUSES:
            await webhooks.interview_ended(session, booking, outcome, now)
        return
    booking = await session.get(Booking, booking_id, with_for_update=True)
    if booking is None or booking.status not in ACTIVE_STATUSES:
        return
    evaluator = await session.get(Evaluator, booking.evaluator_id)
    before = history.snapshot(booking)
    booking.status = outcome
    booking.updated_at = now
    await session.flush()
    await history.record(
        session,
        booking,
        actor=Actor("evaluator", evaluator.name if evaluator is not None else "evaluator"),
        action=outcome,
        now=now,
        before=before,
    )


# FOR SHARE on PostgreSQL; SQLite renders no locking clause (its writer is alone anyway).
_SHARED = (
    select(Booking.status).where(Booking.id == bindparam("booking_id")).with_for_update(read=True)
)


async def candidate_joined(session: AsyncSession, booking_id: uuid.UUID, at: datetime) -> None:
    """The candidate's arrival is being recorded (`at`: when they checked in): refused
    (`rooms.signaling.Missed`, the arrival rolled back) if the booking was marked no-show
    first; else its webhooks hear of it.

    The booking's row is read under a share lock (PostgreSQL), which the no-show mark's
    claim (FOR NO KEY UPDATE SKIP LOCKED, scheduler.timers.claims) cannot take meanwhile:
    an arrival and a mark in two processes are decided one after the other, never both. A
    mark that holds the row first makes this wait, then see `no_show`; an arrival that holds
    it first makes the mark's claim skip the timer until the arrival is committed, and the
    mark's next pass sees it. On SQLite the write transaction is exclusive already.
    """
    status = await session.scalar(_SHARED, {"booking_id": booking_id})
    if status == "no_show":
        raise Missed(str(booking_id))
    await webhooks.candidate_joined(session, booking_id, at)


class BookingTickets:
    """`rooms.room.TicketResolver` over the bookings table; also for the room page's handler."""

    def __init__(
        self, db: Database, signer: LinkSigner, *, on_miss: OnMiss, catalogs: Catalogs
    ) -> None:
        self._db = db
        self._signer = signer
        self._on_miss = on_miss
        self._catalogs = catalogs

    async def resolve(self, token: str) -> Ticket | None:
        async with self._db.read() as session:
            ticket = await ticket_for(session, self._signer, token, self._catalogs)
        if ticket is None:
            await self._on_miss()  # the page, /info, /ws and /echo alike
        return ticket

    async def schedule(self, booking_id: uuid.UUID) -> Schedule | None:
        async with self._db.read() as session:
            booking = await session.get(Booking, booking_id)
        if booking is None:
            return None
        return Schedule(booking.status, booking.start_at, booking.end_at)


def setup(app: web.Application, *, on_miss: OnMiss) -> None:
    """Register the rooms' routes and lifecycle; called once by `create_app`.

    `on_miss`: awaited when a room link resolves to nothing (the throttle counts it)."""
    settings = app[keys.SETTINGS]
    server = RoomServer(
        settings.rooms,
        app[keys.CLOCK],
        recordings=settings.recordings_path,
        host_url=settings.rooms.public_url or None,
        lease_now=lease_clock(is_sqlite(settings.database.url), app[keys.CLOCK]),
    )
    metrics = app[keys.METRICS]
    server.on_ws_error = lambda code: metrics.websocket_errors.labels(code=code).inc()
    server.on_lease_lost = metrics.room_leases_lost.inc
    app[keys.ROOMS] = server
    server.add_routes(app.router)

    async def rooms_ctx(app: web.Application) -> AsyncIterator[None]:
        """Take participants once the database is up; close every peer connection last."""
        db = app[keys.DB]
        tickets = BookingTickets(
            db, app[keys.LINKS].signer, on_miss=on_miss, catalogs=app[keys.CATALOGS]
        )
        app[keys.ROOM_TICKETS] = tickets
        server.start(tickets, db, on_ended=interview_ended, on_joined=candidate_joined)
        yield
        await server.close()

    app.cleanup_ctx.append(rooms_ctx)
    app.on_shutdown.append(_shutdown)


async def _shutdown(app: web.Application) -> None:
    # Before aiohttp waits for its handlers: a WebSocket would otherwise keep it waiting.
    await app[keys.ROOMS].shutdown()
