"""What follows a booking change: messages and timers inside its transaction, then the
wake-ups after it commits. Implements `scheduler.bookings.Effects`."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler import keys
from scheduler.models import Booking, Candidate
from scheduler.notify import Notifier

# Re-plans a booking's timer rows in the caller's transaction (scheduler.timers).
Replan = Callable[[AsyncSession, Booking, datetime], Awaitable[None]]


@dataclass(frozen=True)
class Effects:
    notifier: Notifier
    replan: Replan | None = None

    async def _timers(self, session: AsyncSession, booking: Booking, now: datetime) -> None:
        if self.replan is not None:
            await self.replan(session, booking, now)

    async def booked(
        self, session: AsyncSession, booking: Booking, candidate: Candidate, now: datetime
    ) -> None:
        await self.notifier.booking_confirmed(session, booking, candidate, now)
        await self._timers(session, booking, now)

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


async def committed(app: web.Application, booking_ids: Iterable[uuid.UUID]) -> None:
    """After the commit: let the messages leave now, and bring the timer jobs in line."""
    app[keys.MAIL].wake()
    await app[keys.TIMERS].sync(list(booking_ids))
