"""What follows a booking change: its messages and timer rows inside its transaction
(`MailAndTimers`, the app's `scheduler.bookings.BookingEffects`), then the wake-ups after it
commits, the live rooms included (`AfterCommit`). scheduler.booking_service runs both."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from rooms.signaling import RoomServer
from scheduler.confirmations import write_confirmations
from scheduler.db import Database
from scheduler.models import Booking, Candidate
from scheduler.notify import Notifier

log = logging.getLogger("viva.effects")


class Replan(Protocol):
    """Re-plans a booking's timer rows in the caller's transaction (scheduler.timers).

    `new`: the booking was inserted in this transaction, so it has no rows to read yet.
    """

    def __call__(
        self, session: AsyncSession, booking: Booking, now: datetime, *, new: bool = False
    ) -> Awaitable[None]: ...


@dataclass(frozen=True)
class MailAndTimers:
    """The messages and timer rows a change writes in its own transaction."""

    notifier: Notifier
    replan: Replan | None = None

    async def _timers(
        self, session: AsyncSession, booking: Booking, now: datetime, *, new: bool = False
    ) -> None:
        if self.replan is not None:
            await self.replan(session, booking, now, new=new)

    async def booked(
        self, session: AsyncSession, booking: Booking, candidate: Candidate, now: datetime
    ) -> None:
        """`booking` was inserted in the caller's transaction (scheduler.bookings.book).

        Its timers only: the confirmations follow the commit (`confirm`), so the evaluator's
        lock is not held while they are composed."""
        await self._timers(session, booking, now, new=True)

    async def confirm(
        self, db: Database, booking: Booking, candidate: Candidate, now: datetime
    ) -> None:
        """After the booking committed: its confirmations (scheduler.confirmations)."""
        await write_confirmations(db, self.notifier, booking, candidate, now)

    async def moved(
        self,
        session: AsyncSession,
        booking: Booking,
        candidate: Candidate,
        *,
        previous_start: datetime,
        previous_evaluator_id: uuid.UUID,
        reason: str | None,
        now: datetime,
    ) -> None:
        await self.notifier.booking_moved(
            session,
            booking,
            candidate,
            previous_start=previous_start,
            previous_evaluator_id=previous_evaluator_id,
            reason=reason,
            now=now,
        )
        await self._timers(session, booking, now)

    async def links_reissued(
        self,
        session: AsyncSession,
        candidate: Candidate,
        booking: Booking | None,
        now: datetime,
    ) -> None:
        """The candidate's links were re-issued (scheduler.reissue): mail them the new ones."""
        await self.notifier.links_reissued(session, candidate, booking, now)

    async def cancelled(
        self,
        session: AsyncSession,
        booking: Booking,
        candidate: Candidate,
        *,
        reason: str | None,
        now: datetime,
    ) -> None:
        await self.notifier.booking_cancelled(session, booking, candidate, reason=reason, now=now)
        await self._timers(session, booking, now)


class MailWorker(Protocol):
    def wake(self) -> None: ...


class TimerJobs(Protocol):
    async def sync(self, booking_ids: Iterable[uuid.UUID]) -> None: ...

    async def sync_new(self, booking_id: uuid.UUID, start: datetime) -> None: ...


@dataclass(frozen=True)
class AfterCommit:
    """What follows a commit, once the change is visible to everyone: the mail worker
    woken, the live rooms told, the timer jobs brought in line (scheduler.booking_service
    runs it; nothing else has to remember it)."""

    mail: MailWorker
    timers: TimerJobs
    rooms: RoomServer

    async def bookings_changed(
        self, booking_ids: Iterable[uuid.UUID], *, changed: Iterable[Booking] = ()
    ) -> None:
        """Let the messages leave now, send the participants of `changed` bookings
        (cancelled, or moved) out of their live room, and bring the timer jobs in line."""
        self.mail.wake()
        # Rooms first: a live room must stop writing its (now stale) state as soon as possible.
        for booking in changed:
            await self.tell_room(booking)
        await self.timers.sync(list(booking_ids))

    async def booking_created(self, booking: Booking) -> None:
        """`bookings_changed` for a new booking: no room to tell, and its timer jobs only if
        one of its timers is due soon (scheduler.timers.TimerService.sync_new)."""
        self.mail.wake()
        await self.timers.sync_new(booking.id, booking.start_at)

    async def tell_room(self, booking: Booking) -> None:
        """Tell the booking's live room, if any, that it was cancelled or moved.

        Only after the commit: a participant sent away must find the new state when they
        come back. A move may have revoked a link (another evaluator took the booking): its
        holder is sent out as revoked first, so that they are not invited back at the new
        time. Best effort: the change stands, and a room that was not told still refuses its
        revoked links, and closes with its old window, at the latest.
        """
        rooms = self.rooms
        if booking.status != "cancelled":
            try:
                await rooms.links_revoked(booking.id)
            except Exception:  # the move itself must still reach the room
                log.exception("could not close the revoked links of booking %s", booking.id)
        try:
            if booking.status == "cancelled":
                await rooms.booking_changed(booking.id, "cancelled")
            else:
                await rooms.booking_changed(
                    booking.id, "moved", start=booking.start_at, end=booking.end_at
                )
        except Exception:
            log.exception("could not tell the room of booking %s about its change", booking.id)

    async def links_changed(self, booking_id: uuid.UUID | None) -> None:
        """After the commit of new links: the mail leaves now, and whatever the revoked
        links of the booking hold open (a room, a connection test) is closed."""
        self.mail.wake()
        if booking_id is None:
            return
        try:
            await self.rooms.links_revoked(booking_id)
        except Exception:
            log.exception("could not tell the room of booking %s about its new links", booking_id)
