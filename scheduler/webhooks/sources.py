"""What each change tells the organisation's webhooks, written in the change's transaction.

Booking changes are heard where every one of them is recorded: `scheduler.history.record`
calls `booking_recorded` with the history's action, so a change path added later cannot
forget its webhook. The room's side (a candidate's first arrival, an interview ended
without holding the booking) and the mail outbox's (a message failed for good) call their
own function here from their hooks (scheduler.room_wiring, scheduler.mail_worker).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.models import RoomAttendance
from scheduler.models import Booking
from scheduler.webhooks.store import enqueue

__all__ = ["booking_recorded", "candidate_joined", "interview_ended", "message_failed"]

# history action -> event type
_ACTIONS = {
    "booked": "booking.created",
    "rescheduled": "booking.rescheduled",
    "cancelled": "booking.cancelled",
    "force_majeure_move": "booking.force_majeure",
    "force_majeure_cancel": "booking.force_majeure",
    "locked": "booking.locked",
    "no_show": "booking.no_show",
    "completed": "booking.completed",
}


def booking_data(booking: Booking) -> dict[str, Any]:
    return {
        "booking_id": booking.id,
        "candidate_id": booking.candidate_id,
        "evaluator_id": booking.evaluator_id,
        "status": booking.status,
        "start": booking.start_at,
        "end": booking.end_at,
        "sequence": booking.sequence,
    }


async def booking_recorded(
    session: AsyncSession,
    booking: Booking,
    *,
    action: str,
    actor_kind: str,
    before: dict[str, Any] | None,
    reason: str | None,
    now: datetime,
) -> None:
    """The history recorded `action` on `booking`: its event, if it has one."""
    event_type = _ACTIONS.get(action)
    if event_type is None:
        return
    data = booking_data(booking)
    if action in ("rescheduled", "force_majeure_move", "force_majeure_cancel"):
        previous = before or {}
        data["previous_start"] = previous.get("start", booking.start_at)
        data["previous_evaluator_id"] = previous.get("evaluator_id", booking.evaluator_id)
    if action == "cancelled":
        data["reason"] = reason
    elif event_type == "booking.force_majeure":
        data["action"] = "move" if action == "force_majeure_move" else "cancel"
        data["reason"] = reason or ""
    elif action == "no_show":
        data["marked_by"] = "evaluator" if actor_kind == "evaluator" else "system"
    elif action == "completed":
        data["outcome"] = "completed"
    await enqueue(
        session, booking.organisation_id, event_type, data, now=now, booking_id=booking.id
    )


async def interview_ended(
    session: AsyncSession, booking: Booking, outcome: str, now: datetime
) -> None:
    """An interview ended without holding the booking (interrupted, identity refused): the
    history has no change to record, the organisation still hears of it."""
    data = booking_data(booking) | {"outcome": outcome}
    await enqueue(
        session, booking.organisation_id, "booking.completed", data, now=now, booking_id=booking.id
    )


async def candidate_joined(session: AsyncSession, booking_id: uuid.UUID, now: datetime) -> None:
    """The candidate's arrival was just recorded: told once, at the first one (a dropped
    connection that comes back is not news)."""
    arrivals = await session.scalar(
        select(func.count())
        .select_from(RoomAttendance)
        .where(RoomAttendance.booking_id == booking_id, RoomAttendance.role == "candidate")
    )
    if arrivals != 1:
        return
    booking = await session.get(Booking, booking_id)
    if booking is None:
        return
    data = {"booking_id": booking.id, "candidate_id": booking.candidate_id, "joined_at": now}
    await enqueue(
        session,
        booking.organisation_id,
        "room.candidate_joined",
        data,
        now=now,
        booking_id=booking.id,
    )


async def message_failed(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    message_id: uuid.UUID,
    booking_id: uuid.UUID | None,
    kind: str,
    attempts: int,
    error: str | None,
    now: datetime,
) -> None:
    """A message was marked failed for good (mailer.outbox), in that same transaction.
    The error is the server's answer with the recipient's address already removed."""
    data = {
        "message_id": message_id,
        "booking_id": booking_id,
        "kind": kind,
        "attempts": attempts,
        "error": error,
    }
    await enqueue(session, organisation_id, "message.failed", data, now=now, booking_id=booking_id)
