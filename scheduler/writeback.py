"""Writing an evaluator's interviews into their own CalDAV calendar, where they asked for it.

Opt-in per calendar (`write_back`). Each interview ahead is PUT as a calendar object of its
own, named after the booking and carrying the invitation's event (same UID and SEQUENCE,
scheduler.feeds.one_interview), and rewritten when its SEQUENCE changes (moved, locked,
cancelled). An interview cancelled or given to another evaluator is DELETEd. Once written,
the past stays as it was, except that a candidate's erasure has every copy naming them
written again without the name (scheduler.privacy marks them `ExternalPushed.REWRITE`).
What was written, at which SEQUENCE, is kept (`external_pushed`), so each pass sends only
changes. It runs with the calendar's fetch (scheduler.external_calendars), never in a
booking, so a calendar server that is down delays the copy, never the booking; reading busy
times skips these events (their UIDs are Viva's bookings).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import jinja2
from sqlalchemy import delete, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.busy_fetch import FetchError, Limits, Source, client, status_error
from scheduler.db import Database
from scheduler.feeds import one_interview
from scheduler.i18n import Catalogs
from scheduler.models import (
    ACTIVE_STATUSES,
    Booking,
    Candidate,
    Evaluator,
    ExternalCalendar,
    ExternalPushed,
    Organisation,
)
from scheduler.notify import Notifier

__all__ = ["Writer"]


@dataclass(frozen=True)
class _Plan:
    put: dict[uuid.UUID, tuple[int, bytes]]  # booking -> (sequence, calendar object)
    delete: list[uuid.UUID]


@dataclass(frozen=True)
class Writer:
    notifier: Notifier
    env: jinja2.Environment
    catalogs: Catalogs

    async def push(
        self,
        db: Database,
        calendar: ExternalCalendar,
        source: Source,
        limits: Limits,
        now: datetime,
    ) -> None:
        """Bring the calendar's copies of the evaluator's interviews up to date; FetchError
        if the server refused (what was done before the refusal is kept)."""
        async with db.read() as session:
            plan = await self._plan(session, calendar, now)
        if not plan.put and not plan.delete:
            return
        base = source.url if source.url.endswith("/") else source.url + "/"
        done: dict[uuid.UUID, int | None] = {}
        try:
            async with client(source, limits) as http:
                for booking_id, (sequence, body) in plan.put.items():
                    headers = {"Content-Type": "text/calendar; charset=utf-8"}
                    async with http.put(
                        f"{base}viva-{booking_id}.ics",
                        data=body,
                        headers=headers,
                        allow_redirects=False,
                    ) as resp:
                        if resp.status not in (200, 201, 204):
                            raise FetchError(status_error("PUT", resp.status))
                    done[booking_id] = sequence
                for booking_id in plan.delete:
                    async with http.delete(
                        f"{base}viva-{booking_id}.ics", allow_redirects=False
                    ) as resp:
                        if resp.status not in (200, 204, 404):
                            raise FetchError(status_error("DELETE", resp.status))
                    done[booking_id] = None
        except TimeoutError as exc:
            raise FetchError(f"writing back: no answer within {limits.timeout:g} s") from exc
        finally:
            await self._record(db, calendar.id, done, now)

    async def _plan(
        self, session: AsyncSession, calendar: ExternalCalendar, now: datetime
    ) -> _Plan:
        pushed = {
            row.booking_id: row.sequence
            for row in await session.scalars(
                select(ExternalPushed).where(ExternalPushed.calendar_id == calendar.id)
            )
        }
        rewrite = [b for b, sequence in pushed.items() if sequence == ExternalPushed.REWRITE]
        evaluator = await session.get(Evaluator, calendar.evaluator_id)
        org = await session.get(Organisation, calendar.organisation_id)
        assert evaluator is not None and org is not None  # foreign keys
        rows = await session.execute(
            select(Booking, Candidate)
            .join(Candidate, Candidate.id == Booking.candidate_id)
            .where(
                or_(
                    Booking.evaluator_id == evaluator.id,
                    Booking.id.in_(list(pushed)),
                ),
                or_(
                    Booking.end_at > now,  # the past stays as it was written,
                    Booking.id.in_(rewrite),  # unless it names an erased candidate
                ),
            )
        )
        put: dict[uuid.UUID, tuple[int, bytes]] = {}
        gone: list[uuid.UUID] = []
        for booking, candidate in rows:
            ours = booking.evaluator_id == evaluator.id and (
                booking.status in ACTIVE_STATUSES
                # A past interview is rewritten as it ended (held, missed), the name gone.
                or (booking.id in rewrite and booking.status != "cancelled")
            )
            if not ours:
                if booking.id in pushed:
                    gone.append(booking.id)
            elif pushed.get(booking.id) != booking.sequence:
                body = one_interview(
                    booking,
                    candidate,
                    evaluator,
                    org,
                    notifier=self.notifier,
                    env=self.env,
                    catalogs=self.catalogs,
                )
                put[booking.id] = (booking.sequence, body)
        return _Plan(put, gone)

    @staticmethod
    async def _record(
        db: Database, calendar_id: uuid.UUID, done: dict[uuid.UUID, int | None], now: datetime
    ) -> None:
        if not done:
            return
        async with db.write() as session:
            await session.execute(
                delete(ExternalPushed).where(
                    ExternalPushed.calendar_id == calendar_id,
                    ExternalPushed.booking_id.in_(list(done)),
                )
            )
            written = [
                {
                    "calendar_id": calendar_id,
                    "booking_id": booking_id,
                    "sequence": sequence,
                    "pushed_at": now,
                }
                for booking_id, sequence in done.items()
                if sequence is not None
            ]
            if written:
                await session.execute(insert(ExternalPushed), written)
