"""A booking's history: who changed what, when, from what to what, and why. Append-only."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.models import Booking, BookingEvent


@dataclass(frozen=True)
class Actor:
    kind: str  # "candidate", "evaluator" (ending the interview), "organisation" or "system"
    name: str  # the candidate's name, the API key's name, or "viva"


SYSTEM = Actor("system", "viva")


def snapshot(booking: Booking) -> dict[str, Any]:
    return {
        "start": booking.start_at.isoformat(),
        "end": booking.end_at.isoformat(),
        "evaluator_id": str(booking.evaluator_id),
        "status": booking.status,
    }


async def record(
    session: AsyncSession,
    booking: Booking,
    *,
    actor: Actor,
    action: str,
    now: datetime,
    before: dict[str, Any] | None = None,
    reason: str | None = None,
    new: bool = False,
    after: dict[str, Any] | None = None,
) -> None:
    """Append one event to the booking's history, in the caller's transaction.

    `new` says the booking was inserted in this same transaction: it can have no event yet,
    so this one is the first without a query to find the last. `after`: what the event
    changed, when it is not the booking itself (an assessment); the booking's snapshot
    otherwise.
    """
    last = (
        None
        if new
        else await session.scalar(
            select(func.max(BookingEvent.position)).where(BookingEvent.booking_id == booking.id)
        )
    )
    session.add(
        BookingEvent(
            id=uuid.uuid4(),
            booking_id=booking.id,
            organisation_id=booking.organisation_id,
            position=(last or 0) + 1,
            at=now,
            actor=actor.kind,
            actor_name=actor.name,
            action=action,
            before=before,
            after=after if after is not None else snapshot(booking),
            reason=reason,
        )
    )


async def events(session: AsyncSession, booking_id: uuid.UUID) -> list[BookingEvent]:
    rows = await session.scalars(
        select(BookingEvent)
        .where(BookingEvent.booking_id == booking_id)
        .order_by(BookingEvent.position)
    )
    return list(rows)
