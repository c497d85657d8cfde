"""Evaluators and candidates: creating them from validated input (API and demo alike).

The input is plain data (`NewEvaluator`, `NewCandidate`): the API validates a request with
its pydantic models (scheduler/web/schemas.py) and hands over the result, the demo and the
benchmark write theirs directly, and this module knows nothing of HTTP.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.tokens import new_nonce
from scheduler.availability import Availability
from scheduler.errors import FieldError, ValidationFailed
from scheduler.models import Candidate, Evaluator


@dataclass(frozen=True)
class NewEvaluator:
    """An evaluator's details, already valid (trimmed, a known zone, lower-case languages)."""

    name: str
    email: str
    timezone: str
    languages: list[str]
    locale: str = "fr"


@dataclass(frozen=True)
class NewCandidate:
    """A candidate's details, already valid; `book_by` as the API takes it (see
    `book_by_instant`)."""

    name: str
    email: str
    language: str
    locale: str = "fr"
    timezone: str = "Europe/Paris"
    book_by: date | datetime | None = None


async def create_evaluator(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    data: NewEvaluator,
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
        **asdict(data),
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
    session: AsyncSession, organisation_id: uuid.UUID, data: NewCandidate, *, now: datetime
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
