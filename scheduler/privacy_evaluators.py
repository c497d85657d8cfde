"""An evaluator's personal data erased on request (GDPR article 17), as a candidate's is in
scheduler.privacy.

Their past interviews stay, with an anonymous evaluator: the organisation's statistics
and the candidates' records (a candidate's booking still says when it was and how it
ended) need the row, not the person. What could name them goes: their name and address,
their weekly hours, their name as the actor of history events (ending an interview) and
inside free-text reasons, their name in their consents to recording, and every e-mail
sent to them (subject, body, address), their own calendars and the busy times read from
them. Their room links and calendar feed die (the nonces rotate).

Refused while they have an interview ahead: it would lose its evaluator; move or cancel
it first. Recordings are not deleted here: they are the candidate's interview record,
kept under the organisation's retention period for recordings (scheduler.retention), and
deleted one by one through the API if the organisation decides so.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailer.models import outbox_messages as outbox
from rooms.models import RoomConsent
from rooms.tokens import new_nonce
from scheduler import history
from scheduler.availability import Availability
from scheduler.errors import Conflict
from scheduler.history import Actor
from scheduler.models import (
    ACTIVE_STATUSES,
    Booking,
    BookingEvent,
    Evaluator,
    ExternalBusy,
    ExternalCalendar,
    ExternalPushed,
)
from scheduler.privacy import ERASED_ERROR, ERASED_NAME, erased_address

__all__ = ["ERASED_EVALUATOR", "EvaluatorErasure", "erase_evaluator"]

ERASED_EVALUATOR = "(erased evaluator)"


@dataclass(frozen=True)
class EvaluatorErasure:
    """Counts only: the history event and the log line must not keep what went."""

    bookings: int
    messages: int
    booking_ids: tuple[uuid.UUID, ...]  # whose room links died: the rooms are told


async def erase_evaluator(
    session: AsyncSession, evaluator: Evaluator, *, actor: Actor, now: datetime
) -> EvaluatorErasure:
    """Anonymise everything about `evaluator`, in the caller's transaction."""
    ahead = await session.scalar(
        select(Booking.id)
        .where(
            Booking.evaluator_id == evaluator.id,
            Booking.status.in_(ACTIVE_STATUSES),
            Booking.end_at > now,
        )
        .limit(1)
    )
    if ahead is not None:
        raise Conflict("this evaluator has interviews ahead; move or cancel them first, then erase")
    name, address = evaluator.name, evaluator.email
    bookings = list(
        await session.scalars(select(Booking).where(Booking.evaluator_id == evaluator.id))
    )
    ids = [b.id for b in bookings]
    # Their name as an actor, wherever it stands in the organisation's history (a booking
    # may have moved to another evaluator since), and inside free-text reasons.
    await session.execute(
        update(BookingEvent)
        .where(
            BookingEvent.organisation_id == evaluator.organisation_id,
            BookingEvent.actor == "evaluator",
            BookingEvent.actor_name == name,
        )
        .values(actor_name=ERASED_EVALUATOR)
    )
    pattern = re.compile(re.escape(name), re.IGNORECASE)
    named = await session.scalars(
        select(BookingEvent).where(
            BookingEvent.organisation_id == evaluator.organisation_id,
            func.lower(BookingEvent.reason).contains(name.lower()),
        )
    )
    for event in named:
        event.reason = pattern.sub(ERASED_EVALUATOR, event.reason or "")
    for b in bookings:
        if b.cancel_reason and name.lower() in b.cancel_reason.lower():
            b.cancel_reason = pattern.sub(ERASED_EVALUATOR, b.cancel_reason)
        b.evaluator_room_nonce = new_nonce()  # their room link dies
        b.updated_at = now
    if ids:
        await session.execute(
            update(RoomConsent)
            .where(RoomConsent.booking_id.in_(ids), RoomConsent.role == "evaluator")
            .values(name=ERASED_EVALUATOR)
        )
    messages = await _erase_messages(session, evaluator, address)
    await _forget_calendars(session, evaluator)
    evaluator.feed_nonce = new_nonce()  # their calendar feed's link dies, whatever else does
    evaluator.name = ERASED_NAME
    evaluator.email = erased_address(evaluator.id)
    evaluator.availability = Availability.from_document({}).to_document()
    evaluator.deleted_at = evaluator.deleted_at or now
    evaluator.erased_at = now
    await session.flush()
    for b in bookings:
        await history.record(session, b, actor=actor, action="evaluator_erased", now=now)
    return EvaluatorErasure(len(bookings), messages, tuple(ids))


async def _forget_calendars(session: AsyncSession, evaluator: Evaluator) -> None:
    """Their own calendars (addresses, user names, sealed passwords) and what was read from
    them say who they are and what else they do: all of it goes. Events Viva wrote into
    those calendars stay there: they are the evaluator's own copy, on their server."""
    calendars = select(ExternalCalendar.id).where(ExternalCalendar.evaluator_id == evaluator.id)
    await session.execute(delete(ExternalBusy).where(ExternalBusy.evaluator_id == evaluator.id))
    await session.execute(delete(ExternalPushed).where(ExternalPushed.calendar_id.in_(calendars)))
    await session.execute(
        delete(ExternalCalendar).where(ExternalCalendar.evaluator_id == evaluator.id)
    )


async def _erase_messages(session: AsyncSession, evaluator: Evaluator, address: str) -> int:
    """Every message to their address: not sent if still owed, subject and body dropped."""
    to_them = (outbox.c.organisation_id == evaluator.organisation_id) & (
        func.lower(outbox.c.recipient) == address.lower()
    )
    await session.execute(
        update(outbox)
        .where(to_them, outbox.c.status.in_(("pending", "sending")))
        .values(status="failed", claimed_by=None)
    )
    result = await session.execute(
        update(outbox)
        .where(to_them)
        .values(
            recipient=erased_address(evaluator.id),
            subject="",
            raw=b"",
            last_error=ERASED_ERROR,
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
