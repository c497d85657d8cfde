"""Loading what the slot engine needs: qualified evaluators and their busy intervals.

This is the hot path of every calendar page and of every booking, so it reads columns
rather than ORM objects, leaves most other languages' evaluators in the database, leaves JSON
undecoded until an evaluator is known to qualify, and parses SQLite's stored timestamps with
the C `fromisoformat` instead of the generic type machinery.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, String, Text, bindparam, cast, exists, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.availability import Availability
from scheduler.models import ACTIVE_STATUSES, Booking, Evaluator, ExternalBusy, ExternalCalendar
from scheduler.slots import EvaluatorCalendar
from scheduler.sql import among, any_of

# Bookings this far outside the asked range still matter: buffers, and the daily cap counted
# on an evaluator's local day, which can lie up to 14 hours either side of UTC.
_MARGIN = timedelta(days=2)


@lru_cache(maxsize=4096)
def _availability(raw: str) -> Availability:
    """Parsing is a pure function of the stored text, so caching it can never go stale."""
    return Availability.from_document(json.loads(raw))


def _raw_json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _instant(value: datetime | str) -> datetime:
    if isinstance(value, str):  # SQLite: naive UTC text
        # Parsing the offset is 6x faster than datetime.replace(tzinfo=...) afterwards.
        return datetime.fromisoformat(value + "+00:00")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


@lru_cache(maxsize=1024)
def _languages(raw: str) -> tuple[str, ...]:
    """An evaluator's languages, decoded once per distinct stored text (there are few)."""
    return tuple(json.loads(raw))


# The hot queries are built once, with bound parameters: building a statement and its cache
# key cost as much as running it. The JSON columns are cast to text in SQL, not only for
# SQLAlchemy: asyncpg would otherwise decode every evaluator's documents (and `_raw_json`
# encode them again for the cache), a seventh of a booking's CPU on PostgreSQL.
_QUALIFIED = (
    select(
        Evaluator.id,
        Evaluator.timezone,
        cast(Evaluator.languages, Text),
        cast(Evaluator.availability, Text),
    )
    .where(
        Evaluator.organisation_id == bindparam("organisation_id"),
        Evaluator.deleted_at.is_(None),
        cast(Evaluator.languages, Text).like(bindparam("languages_like"), escape="\\"),
    )
    .order_by(Evaluator.id)
)


def _languages_like(language: str) -> str:
    """A LIKE pattern that every stored language list holding `language` matches.

    The column holds the list as SQLAlchemy's `json.dumps` wrote it, and PostgreSQL's JSON
    type keeps that text as written; a list holding `language` therefore contains
    `json.dumps(language)`, quotes included. The pattern may also match a list that does
    not hold it (SQLite's LIKE ignores ASCII case): it only keeps most other languages'
    evaluators in the database, and the decoded list is still checked exactly.
    """
    literal = json.dumps(language)
    for special in ("\\", "%", "_"):
        literal = literal.replace(special, "\\" + special)
    return f"%{literal}%"


async def qualified_evaluators(
    session: AsyncSession, organisation_id: uuid.UUID, language: str
) -> list[tuple[uuid.UUID, str, Availability]]:
    """(id, time zone, availability) of the organisation's evaluators examining `language`."""
    rows = await session.execute(
        _QUALIFIED,
        {"organisation_id": organisation_id, "languages_like": _languages_like(language)},
    )
    out = []
    for eid, tz, languages, availability in rows:
        if language in _languages(_raw_json(languages)):
            out.append((eid, tz, _availability(_raw_json(availability))))
    return out


# The same evaluators with what the booking's choice needs of each besides (scheduler.
# evaluator_choice): their active bookings in the week of the start, and whether they have
# calendars of their own to read busy times from; one statement instead of three.
_QUALIFIED_FOR_BOOKING = _QUALIFIED.add_columns(
    select(func.count())
    .where(
        Booking.evaluator_id == Evaluator.id,
        among(Booking.status, ACTIVE_STATUSES),
        Booking.start_at >= bindparam("week_start", type_=Booking.start_at.type),
        Booking.start_at < bindparam("week_end", type_=Booking.start_at.type),
    )
    .scalar_subquery(),
    exists().where(ExternalCalendar.evaluator_id == Evaluator.id),
)


async def qualified_for_booking(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    language: str,
    week_start: datetime,
    week_end: datetime,
) -> list[tuple[uuid.UUID, str, Availability, int, bool]]:
    """`qualified_evaluators`, each with their active bookings starting in [week_start,
    week_end) and whether they have external calendars."""
    rows = await session.execute(
        _QUALIFIED_FOR_BOOKING,
        {
            "organisation_id": organisation_id,
            "languages_like": _languages_like(language),
            "week_start": week_start,
            "week_end": week_end,
        },
    )
    out = []
    for eid, tz, languages, availability, week_count, has_calendars in rows:
        if language in _languages(_raw_json(languages)):
            availability_ = _availability(_raw_json(availability))
            out.append((eid, tz, availability_, int(week_count), bool(has_calendars)))
    return out


def _busy_statement(exclude: bool) -> Select[str, str, str]:
    """Active bookings of some evaluators overlapping a window; `exclude` leaves one out."""
    return (
        select(
            type_coerce(Booking.evaluator_id, String),
            type_coerce(Booking.start_at, String),
            type_coerce(Booking.end_at, String),
        )
        .where(
            any_of(Booking.evaluator_id, "evaluator_ids"),
            among(Booking.status, ACTIVE_STATUSES),
            Booking.start_at < bindparam("before", type_=Booking.start_at.type),
            Booking.end_at > bindparam("after", type_=Booking.end_at.type),
            *([Booking.id != bindparam("exclude", type_=Booking.id.type)] if exclude else []),
        )
        .order_by(Booking.start_at)
    )


_BUSY = {False: _busy_statement(False), True: _busy_statement(True)}


async def busy_intervals(
    session: AsyncSession,
    evaluator_ids: Iterable[uuid.UUID],
    start: datetime,
    end: datetime,
    margin: timedelta = _MARGIN,
    exclude: uuid.UUID | None = None,
) -> dict[uuid.UUID, list[tuple[datetime, datetime]]]:
    """Active bookings per evaluator overlapping [start - margin, end + margin), by start.

    `exclude` leaves out one booking: the one being moved, which must not block itself.
    """
    ids = list(evaluator_ids)
    busy: dict[uuid.UUID, list[tuple[datetime, datetime]]] = defaultdict(list)
    if not ids:
        return busy
    params: dict[str, Any] = {
        "evaluator_ids": ids,
        "before": end + margin,
        "after": start - margin,
    }
    if exclude is not None:
        params["exclude"] = exclude
    rows = await session.execute(_BUSY[exclude is not None], params)
    by_text: dict[Any, uuid.UUID] = {}
    for evaluator_id, b_start, b_end in rows:
        key = by_text.get(evaluator_id)
        if key is None:
            key = by_text[evaluator_id] = _uuid(evaluator_id)
        busy[key].append((_instant(b_start), _instant(b_end)))
    return busy


_EXTERNAL = (
    select(
        type_coerce(ExternalBusy.evaluator_id, String),
        type_coerce(ExternalBusy.start_at, String),
        type_coerce(ExternalBusy.end_at, String),
    )
    .where(
        any_of(ExternalBusy.evaluator_id, "evaluator_ids"),
        ExternalBusy.start_at < bindparam("before", type_=ExternalBusy.start_at.type),
        ExternalBusy.end_at > bindparam("after", type_=ExternalBusy.end_at.type),
    )
    .order_by(ExternalBusy.start_at)
)


async def external_busy(
    session: AsyncSession,
    evaluator_ids: Iterable[uuid.UUID],
    start: datetime,
    end: datetime,
    margin: timedelta = _MARGIN,
) -> dict[uuid.UUID, list[tuple[datetime, datetime]]]:
    """Busy times read from evaluators' own calendars (the last good copy of each,
    scheduler.external_calendars) overlapping [start - margin, end + margin), by start."""
    ids = list(evaluator_ids)
    busy: dict[uuid.UUID, list[tuple[datetime, datetime]]] = defaultdict(list)
    if not ids:
        return busy
    rows = await session.execute(
        _EXTERNAL, {"evaluator_ids": ids, "before": end + margin, "after": start - margin}
    )
    for evaluator_id, b_start, b_end in rows:
        busy[_uuid(evaluator_id)].append((_instant(b_start), _instant(b_end)))
    return busy


def calendar_of(
    evaluator_id: uuid.UUID,
    tz: str,
    availability: Availability,
    busy: list[tuple[datetime, datetime]],
    external: list[tuple[datetime, datetime]] | None = None,
) -> EvaluatorCalendar:
    return EvaluatorCalendar(
        id=evaluator_id,
        tz=ZoneInfo(tz),
        availability=availability,
        busy=tuple(busy),
        external=tuple(external or ()),
    )


async def load_calendars(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    language: str,
    start: datetime,
    end: datetime,
    margin: timedelta = _MARGIN,
    exclude: uuid.UUID | None = None,
) -> list[EvaluatorCalendar]:
    evaluators = await qualified_evaluators(session, organisation_id, language)
    ids = [e[0] for e in evaluators]
    busy = await busy_intervals(session, ids, start, end, margin, exclude)
    external = await external_busy(session, ids, start, end, margin)
    return [
        calendar_of(eid, tz, av, busy.get(eid, []), external.get(eid)) for eid, tz, av in evaluators
    ]
