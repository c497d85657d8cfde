"""Evaluators' own calendars: which they are, their last good busy times, and keeping those fresh.

Booking never waits on an external server: the slot engine reads the busy times from the
database (`external_busy`, scheduler.calendars), where the last successful fetch of each
calendar left them. A fetch runs outside any transaction; its result is written in a short
one that replaces the calendar's rows only if they changed, and then raises the
organisation's calendar version (scheduler.calendar_versions: the rows are written with Core
statements the session hook cannot see, hence `touch`), so every process's cached free times
are recomputed at once. A failed fetch keeps the rows and records the error.

Scheduled fetches are claimed with one conditional UPDATE of `due_at` per calendar, so with
several processes each calendar is fetched by one of them per period; an on-demand refresh
fetches at once and pushes `due_at` on as well.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler import keys
from scheduler.busy_fetch import FetchError, Limits, Source, fetch_busy
from scheduler.calendar_versions import touch
from scheduler.clock import Clock
from scheduler.config import CalendarsSettings
from scheduler.credentials import CredentialBox, InvalidToken
from scheduler.db import Database
from scheduler.models import Booking, Evaluator, ExternalBusy, ExternalCalendar, ExternalPushed
from scheduler.writeback import Writer

__all__ = [
    "CalendarStatus",
    "CalendarSync",
    "NewCalendar",
    "calendar_sync",
    "replace_calendars",
    "statuses",
]

log = logging.getLogger("viva.calendars")
# A calendar's error as shown to the organisation: enough to act on, never a whole page.
_MAX_ERROR = 500
# Calendars one scheduled pass claims and fetches together.
_BATCH = 50


@dataclass(frozen=True)
class NewCalendar:
    kind: Literal["caldav", "ics"]
    url: str
    username: str | None = None
    # None: keep the password already stored for the same kind, URL and user, if any.
    password: str | None = None
    write_back: bool = False


@dataclass(frozen=True)
class CalendarStatus:
    id: uuid.UUID
    kind: str
    url: str
    username: str | None
    has_password: bool
    write_back: bool
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    busy_count: int


async def replace_calendars(
    session: AsyncSession,
    evaluator: Evaluator,
    calendars: Sequence[NewCalendar],
    box: CredentialBox,
    now: datetime,
) -> None:
    """The evaluator's calendars become `calendars`, each due for a fetch now.

    The busy times of the calendars replaced go with them (and the slots they took come
    back); the new ones count once fetched.
    """
    old = list(
        await session.scalars(
            select(ExternalCalendar).where(ExternalCalendar.evaluator_id == evaluator.id)
        )
    )
    kept = {(c.kind, c.url, c.username): c.secret for c in old}
    if old:
        ids = [c.id for c in old]
        removed = await session.execute(
            delete(ExternalBusy).where(ExternalBusy.calendar_id.in_(ids))
        )
        # What was written into them stays there; Viva only forgets it wrote it.
        await session.execute(delete(ExternalPushed).where(ExternalPushed.calendar_id.in_(ids)))
        await session.execute(delete(ExternalCalendar).where(ExternalCalendar.id.in_(ids)))
        if removed.rowcount:  # type: ignore[attr-defined]
            touch(session, evaluator.organisation_id)
    for position, new in enumerate(calendars):
        if new.password is not None:
            secret = box.seal(new.password) if new.password else None
        else:
            secret = kept.get((new.kind, new.url, new.username))
        await session.execute(
            insert(ExternalCalendar).values(
                id=uuid.uuid4(),
                organisation_id=evaluator.organisation_id,
                evaluator_id=evaluator.id,
                position=position,
                kind=new.kind,
                url=new.url,
                username=new.username,
                secret=secret,
                created_at=now,
                due_at=now,
                write_back=new.write_back,
            )
        )


async def statuses(session: AsyncSession, evaluator_id: uuid.UUID) -> list[CalendarStatus]:
    counts = (
        select(ExternalBusy.calendar_id, func.count().label("n"))
        .group_by(ExternalBusy.calendar_id)
        .subquery()
    )
    rows = await session.execute(
        select(ExternalCalendar, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.calendar_id == ExternalCalendar.id)
        .where(ExternalCalendar.evaluator_id == evaluator_id)
        .order_by(ExternalCalendar.position)
    )
    return [
        CalendarStatus(
            id=c.id,
            kind=c.kind,
            url=c.url,
            username=c.username,
            has_password=c.secret is not None,
            write_back=c.write_back,
            last_attempt_at=c.last_attempt_at,
            last_success_at=c.last_success_at,
            last_error=c.last_error,
            busy_count=n,
        )
        for c, n in rows
    ]


def _day(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), time(), UTC)


class CalendarSync:
    """Fetches calendars and stores what they say; one per app (process)."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        box: CredentialBox,
        settings: CalendarsSettings,
        horizon_days: int,
        *,
        dev_mode: bool = False,
        writer: Writer | None = None,
    ) -> None:
        self.db = db
        self.writer = writer
        self.clock = clock
        self.box = box
        self.period = timedelta(minutes=settings.refresh_minutes)
        self.horizon = timedelta(days=horizon_days)
        self.limits = Limits(
            timeout=settings.timeout_seconds,
            max_bytes=settings.max_bytes,
            allow_private=settings.allow_private_networks or dev_mode,
        )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """What is fetched: the whole booking horizon, from the start of today (UTC) with a
        day's margin each side (daily caps and buffers look beyond the offered range)."""
        return _day(now) - timedelta(days=1), _day(now) + self.horizon + timedelta(days=2)

    async def refresh_evaluator(self, evaluator_id: uuid.UUID) -> None:
        """Fetch every calendar of the evaluator now (the on-demand refresh)."""
        async with self.db.read() as session:
            ids = list(
                await session.scalars(
                    select(ExternalCalendar.id)
                    .where(ExternalCalendar.evaluator_id == evaluator_id)
                    .order_by(ExternalCalendar.position)
                )
            )
        await asyncio.gather(*(self.refresh(calendar_id) for calendar_id in ids))

    async def refresh_due(self, limit: int = _BATCH) -> int:
        """Fetch the calendars whose period is over, each claimed first; how many were."""
        now = self.clock.now()
        async with self.db.read() as session:
            due = list(
                await session.scalars(
                    select(ExternalCalendar.id)
                    .join(Evaluator, Evaluator.id == ExternalCalendar.evaluator_id)
                    .where(ExternalCalendar.due_at <= now, Evaluator.deleted_at.is_(None))
                    .order_by(ExternalCalendar.due_at)
                    .limit(limit)
                )
            )
        claimed = []
        for calendar_id in due:
            async with self.db.write() as session:
                won = await session.execute(
                    update(ExternalCalendar)
                    .where(ExternalCalendar.id == calendar_id, ExternalCalendar.due_at <= now)
                    .values(due_at=now + self.period)
                )
            if won.rowcount:  # type: ignore[attr-defined]
                claimed.append(calendar_id)
        await asyncio.gather(*(self.refresh(calendar_id) for calendar_id in claimed))
        return len(claimed)

    async def refresh(self, calendar_id: uuid.UUID) -> None:
        """Fetch one calendar and keep what it says, or keep the last good copy and the error."""
        async with self.db.read() as session:
            row = (
                await session.execute(
                    select(ExternalCalendar, Evaluator.timezone)
                    .join(Evaluator, Evaluator.id == ExternalCalendar.evaluator_id)
                    .where(ExternalCalendar.id == calendar_id)
                )
            ).first()
            if row is None:
                return  # replaced meanwhile
            calendar, tz = row
            now = self.clock.now()
            start, end = self.window(now)
            # Viva's own interviews, if the evaluator's calendar holds them (accepted
            # invitations): Viva knows them already, and a stale copy of one that moved
            # must not block its new time.
            ours = frozenset(
                str(booking_id)
                for booking_id in await session.scalars(
                    select(Booking.id).where(
                        Booking.evaluator_id == calendar.evaluator_id, Booking.end_at > start
                    )
                )
            )
        busy: list[tuple[datetime, datetime]] | None = None
        error: str | None = None
        try:
            password = self.box.open(calendar.secret) if calendar.secret else None
            source = Source(calendar.kind, calendar.url, calendar.username, password)  # type: ignore[arg-type]
            busy = await fetch_busy(source, start, end, ZoneInfo(tz), self.limits, ignore=ours)
            if calendar.write_back and self.writer is not None:
                try:
                    await self.writer.push(self.db, calendar, source, self.limits, now)
                except (FetchError, aiohttp.ClientError) as exc:
                    error = f"writing back: {exc}"  # the busy times read are kept all the same
        except InvalidToken:
            error = "the stored password cannot be read (server.secret_key changed?): set it again"
        except FetchError as exc:
            error = str(exc)
        except Exception as exc:  # a bug or an unforeseen answer: kept, shown, logged
            log.exception("calendar %s: fetch failed", calendar_id)
            error = f"unexpected error: {type(exc).__name__}"
        await self._store(calendar, now, busy, error)

    async def _store(
        self,
        calendar: ExternalCalendar,
        now: datetime,
        busy: list[tuple[datetime, datetime]] | None,
        error: str | None,
    ) -> None:
        async with self.db.write() as session:
            shown = error[:_MAX_ERROR] if error is not None else None
            outcome = (
                {"last_success_at": now, "last_error": shown}
                if busy is not None
                else {"last_error": shown}
            )
            done = await session.execute(
                update(ExternalCalendar)
                .where(ExternalCalendar.id == calendar.id)
                .values(last_attempt_at=now, due_at=now + self.period, **outcome)
            )
            if not done.rowcount or busy is None:  # type: ignore[attr-defined]
                if busy is None:
                    log.warning("calendar %s: %s", calendar.id, error)
                return  # replaced meanwhile, or failed: the last good copy stays
            stored = await session.execute(
                select(ExternalBusy.start_at, ExternalBusy.end_at)
                .where(ExternalBusy.calendar_id == calendar.id)
                .order_by(ExternalBusy.start_at)
            )
            if [tuple(r) for r in stored] == busy:
                return
            await session.execute(
                delete(ExternalBusy).where(ExternalBusy.calendar_id == calendar.id)
            )
            if busy:
                await session.execute(
                    insert(ExternalBusy),
                    [
                        {
                            "id": uuid.uuid4(),
                            "calendar_id": calendar.id,
                            "evaluator_id": calendar.evaluator_id,
                            "start_at": begin,
                            "end_at": finish,
                        }
                        for begin, finish in busy
                    ],
                )
            touch(session, calendar.organisation_id)

    async def run(self) -> None:
        """The schedule: due calendars every minute at most (each one once per period)."""
        pause = min(60.0, self.period.total_seconds())
        while not self._stop.is_set():
            try:
                # A full batch means more may be due: go on rather than wait a minute.
                while await self.refresh_due() == _BATCH and not self._stop.is_set():
                    pass
            except Exception:
                log.exception("calendars: the scheduled refresh failed")
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=pause)
            except TimeoutError:
                pass

    def start(self) -> None:
        self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


async def calendar_sync(app: web.Application) -> AsyncIterator[None]:
    """The refresher's life in the app's: after the database, before its disposal."""
    settings = app[keys.SETTINGS]
    sync = CalendarSync(
        app[keys.DB],
        app[keys.CLOCK],
        app[keys.CREDENTIALS],
        settings.calendars,
        settings.policy.booking_horizon_days,
        dev_mode=settings.server.dev_mode,
        writer=Writer(app[keys.NOTIFIER], app[keys.JINJA], app[keys.CATALOGS]),
    )
    app[keys.CALENDAR_SYNC] = sync
    sync.start()
    yield
    await sync.stop()
