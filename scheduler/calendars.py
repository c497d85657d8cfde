"""Loading what the slot engine needs: qualified evaluators and their busy intervals."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.availability import Availability
from scheduler.models import ACTIVE_STATUSES, Booking, Evaluator
from scheduler.slots import EvaluatorCalendar

# Bookings this far outside the asked range still matter: buffers, and the daily cap counted
# on an evaluator's local day, which can lie up to 14 hours either side of UTC.
_MARGIN = timedelta(days=2)


async def qualified_evaluators(
    session: AsyncSession, organisation_id: uuid.UUID, language: str
) -> list[Evaluator]:
    rows = await session.scalars(
        select(Evaluator).where(
            Evaluator.organisation_id == organisation_id, Evaluator.deleted_at.is_(None)
        )
    )
    return [e for e in rows if language in e.languages]


async def busy_intervals(
    session: AsyncSession, evaluator_ids: Iterable[uuid.UUID], start: datetime, end: datetime
) -> dict[uuid.UUID, list[tuple[datetime, datetime]]]:
    """Active bookings per evaluator overlapping [start - margin, end + margin), by start."""
    ids = list(evaluator_ids)
    busy: dict[uuid.UUID, list[tuple[datetime, datetime]]] = defaultdict(list)
    if not ids:
        return busy
    rows = await session.execute(
        select(Booking.evaluator_id, Booking.start_at, Booking.end_at)
        .where(
            Booking.evaluator_id.in_(ids),
            Booking.status.in_(ACTIVE_STATUSES),
            Booking.start_at < end + _MARGIN,
            Booking.end_at > start - _MARGIN,
        )
        .order_by(Booking.start_at)
    )
    for evaluator_id, b_start, b_end in rows:
        busy[evaluator_id].append((b_start, b_end))
    return busy


def calendar_of(evaluator: Evaluator, busy: list[tuple[datetime, datetime]]) -> EvaluatorCalendar:
    return EvaluatorCalendar(
        id=evaluator.id,
        tz=ZoneInfo(evaluator.timezone),
        availability=Availability.from_document(evaluator.availability),
        busy=tuple(busy),
    )


async def load_calendars(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    language: str,
    start: datetime,
    end: datetime,
) -> list[EvaluatorCalendar]:
    evaluators = await qualified_evaluators(session, organisation_id, language)
    busy = await busy_intervals(session, (e.id for e in evaluators), start, end)
    return [calendar_of(e, busy.get(e.id, [])) for e in evaluators]
