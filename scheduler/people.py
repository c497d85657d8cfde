"""Evaluators and candidates: creating them from validated input (API and demo alike)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.tokens import new_nonce
from scheduler.availability import Availability
from scheduler.errors import FieldError, ValidationFailed
from scheduler.models import Candidate, Evaluator
from scheduler.web.schemas import CandidateIn, EvaluatorIn


async def create_evaluator(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    data: EvaluatorIn,
    *,
    now: datetime,
    availability: Availability | None = None,
) -> Evaluator:
    doc = (availability or Availability.from_document({})).to_document()
    ev = Evaluator(
        id=uuid.uuid4(),
        organisation_id=organisation_id,
        availability=doc,
        created_at=now,
        **data.model_dump(),
    )
    session.add(ev)
    await session.flush()
    return ev


def book_by_instant(value: date | datetime | None, tz: str) -> datetime | None:
    """A date means the end of that day where the candidate lives."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValidationFailed([FieldError("book_by", "needs a UTC offset, or give a date")])
        return value.astimezone(UTC)
    return datetime.combine(value + timedelta(days=1), time(0), ZoneInfo(tz)).astimezone(UTC)


async def create_candidate(
    session: AsyncSession, organisation_id: uuid.UUID, data: CandidateIn, *, now: datetime
) -> Candidate:
    cand = Candidate(
        id=uuid.uuid4(),
        organisation_id=organisation_id,
        name=data.name,
        email=data.email,
        language=data.language,
        locale=data.locale,
        timezone=data.timezone,
        book_by=book_by_instant(data.book_by, data.timezone),
        link_nonce=new_nonce(),
        created_at=now,
    )
    session.add(cand)
    await session.flush()
    return cand


async def examined_languages(session: AsyncSession, organisation_id: uuid.UUID) -> set[str]:
    """The exam languages some current evaluator of the organisation examines.

    A candidate whose language is not among them sees "no slot" until an evaluator for it
    is added: the API accepts such a candidate (candidates are often imported before the
    evaluators are set up) and says so in its `warnings`.
    """
    rows = await session.scalars(
        select(Evaluator.languages).where(
            Evaluator.organisation_id == organisation_id, Evaluator.deleted_at.is_(None)
        )
    )
    return {language for languages in rows for language in languages}
