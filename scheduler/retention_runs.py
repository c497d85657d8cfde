"""The daily retention run of each organisation: planned, claimed and logged in rows.

Rows are the truth, as with the timers (scheduler.timers): each organisation has one
pending `retention_runs` row saying when its next run is due (a unique index keeps it one,
whichever processes plan it). Each process looks every `[retention] check_minutes`
(an interval job on the timers' APScheduler, `retention_ctx`) and claims due rows with
one atomic `UPDATE … WHERE … RETURNING` that sets a lease; under PostgreSQL the chosen row
is locked `SKIP LOCKED`, so two processes never claim the same run, and a process that
died holding one is replaced once its lease lapses. Rows per organisation rather than one
global job: each organisation's next run and last counts are its own to read
(`GET /api/v1/organisation/retention`), and organisations are shared out across processes.

A run goes through the kinds of scheduler.retention in order, each in batches of
`[retention] batch_size`, one transaction per batch; after each batch the row's counts
are written and its lease renewed (a run that lost its lease stops). On finishing, the row
gets its counts and the next day's row is planned, in one transaction, and one log line
gives the counts. A run that raises keeps its row pending and is tried again after a
lease (the error is kept on the row and logged).

Clocks (scheduler.leases): `lease_until` is written from, and compared with, the lease clock
only (the database's on PostgreSQL), so a host whose clock runs ahead cannot take a run
another process holds. That includes the wait after a failed run, which is a lease held by
nobody in the same column. Domain time stays on the injected clock: when a run is due
(`due_at`), what each kind deletes (its cutoff), and when runs started and finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from aiohttp import web
from apscheduler.jobstores.base import JobLookupError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler import keys
from scheduler.clock import Clock
from scheduler.config import RetentionSettings
from scheduler.db import Database
from scheduler.leases import LeaseNow, lease_clock
from scheduler.models import Organisation, RetentionRun
from scheduler.privacy import RecordingFiles
from scheduler.retention import KINDS, Scope, cutoff, days_for

__all__ = ["RetentionJob", "RunDone", "next_due", "retention_ctx"]

log = logging.getLogger("viva.retention")
_r = RetentionRun.__table__
_JOB = "viva-retention"
# Finished runs older than this are deleted when the organisation's next run finishes.
RUNS_KEPT = timedelta(days=90)


def next_due(now: datetime, hour: int) -> datetime:
    """The first `hour`:00 UTC strictly after `now`."""
    at = datetime.combine(now.date(), time(hour), tzinfo=now.tzinfo)
    return at if at > now else at + timedelta(days=1)


@dataclass(frozen=True)
class RunDone:
    """One finished run, as logged."""

    id: uuid.UUID
    organisation_id: uuid.UUID
    counts: dict[str, int]


def _claimable(now: datetime, lease_now: datetime) -> Any:
    """Due by the app clock, and not leased by the lease clock."""
    return (
        _r.c.finished_at.is_(None)
        & (_r.c.due_at <= now)
        & (_r.c.lease_until.is_(None) | (_r.c.lease_until < lease_now))
    )


class RetentionJob:
    """This process's part of the retention runs; any number of processes may run one."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock,
        settings: RetentionSettings,
        files: RecordingFiles,
        name: str | None = None,
        lease_now: LeaseNow | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        # Lease instants: the database's clock on PostgreSQL, the injected one on SQLite.
        self._lease_now = lease_now or lease_clock(db.sqlite, clock)
        self.settings = settings
        self._files = files
        # Who holds a claim: the host, the process, and a nonce (a restarted process with
        # the same pid is someone else).
        self.name = (name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")[:64]
        # Set when the app stops: a run in progress ends after its current batch (its row
        # stays claimed until the lease lapses, then any process finishes it).
        self.stopping = False

    @property
    def _lease(self) -> timedelta:
        return timedelta(minutes=self.settings.lease_minutes)

    async def run_due(self) -> list[RunDone]:
        """Plan what is missing, then claim and run every due run, one at a time."""
        await self.plan()
        done = []
        while not self.stopping and (claimed := await self._claim()) is not None:
            finished = await self._run(*claimed)
            if finished is not None:
                done.append(finished)
        if done and not await self._db.checkpoint():
            log.warning("retention: SQLite checkpoint kept from completing by a reader")
        return done

    async def plan(self) -> None:
        """Give each organisation without a pending run one, at the next run hour."""
        now = self._clock.now()
        async with self._db.write() as session:
            pending = select(_r.c.organisation_id).where(_r.c.finished_at.is_(None))
            missing = list(
                await session.scalars(
                    select(Organisation.id).where(Organisation.id.not_in(pending))
                )
            )
            for org_id in missing:
                await _plan_one(session, org_id, next_due(now, self.settings.run_at_hour))

    async def _claim(self) -> tuple[uuid.UUID, uuid.UUID] | None:
        now = self._clock.now()
        async with self._db.write() as session:
            lease_now = await self._lease_now(session)
            claimable = _claimable(now, lease_now)
            chosen = (
                select(_r.c.id)
                .where(claimable)
                .order_by(_r.c.due_at)
                .limit(1)
                .with_for_update(skip_locked=True)
                .cte("chosen")
                .prefix_with("MATERIALIZED", dialect="postgresql")
            )
            row = (
                await session.execute(
                    update(_r)
                    # Repeated outside: under READ COMMITTED a concurrent claimer
                    # re-evaluates it on the updated row and takes nothing.
                    .where(_r.c.id.in_(select(chosen.c.id)), claimable)
                    .values(
                        claimed_by=self.name,
                        lease_until=lease_now + self._lease,
                        started_at=now,
                    )
                    .returning(_r.c.id, _r.c.organisation_id)
                )
            ).first()
        return (row[0], row[1]) if row is not None else None

    async def _run(self, run_id: uuid.UUID, org_id: uuid.UUID) -> RunDone | None:
        counts: dict[str, int] = {}
        try:
            async with self._db.read() as session:
                org = await session.get(Organisation, org_id)
                overrides = org.retention if org is not None else None
            periods = days_for(overrides, self.settings)
            for kind in KINDS:
                now = self._clock.now()
                due = cutoff(now, periods[kind.name])
                if due is None:
                    continue
                scope = Scope(org_id, now, due, self._files)
                counts[kind.name] = 0
                while True:
                    skipped = len(scope.skipped)
                    async with self._db.write() as session:
                        n = await kind.batch(session, scope, self.settings.batch_size)
                    counts[kind.name] += n
                    if not await self._renew(run_id, counts):
                        log.warning("retention run %s lost its claim to another process", run_id)
                        return None
                    # Until a batch finds nothing: each one removes what it did, or sets
                    # aside what it could not, so the loop ends.
                    if self.stopping:
                        return None
                    if n == 0 and len(scope.skipped) == skipped:
                        break
                if scope.skipped:
                    counts["skipped"] = counts.get("skipped", 0) + len(scope.skipped)
        except Exception as exc:
            log.exception("retention run %s of organisation %s failed", run_id, org_id)
            await self._failed(run_id, counts, exc)
            return None
        await self._finish(run_id, org_id, counts)
        log.info(
            "retention run %s of organisation %s: %s",
            run_id,
            org_id,
            ", ".join(f"{k}={v}" for k, v in counts.items()) or "nothing to do",
        )
        return RunDone(run_id, org_id, counts)

    async def _renew(self, run_id: uuid.UUID, counts: dict[str, int]) -> bool:
        async with self._db.write() as session:
            lease_now = await self._lease_now(session)
            result = await session.execute(
                update(_r)
                .where(_r.c.id == run_id, _r.c.claimed_by == self.name, _r.c.finished_at.is_(None))
                .values(lease_until=lease_now + self._lease, counts=dict(counts))
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _finish(self, run_id: uuid.UUID, org_id: uuid.UUID, counts: dict[str, int]) -> None:
        now = self._clock.now()
        async with self._db.write() as session:
            await session.execute(
                update(_r)
                .where(_r.c.id == run_id, _r.c.claimed_by == self.name)
                .values(finished_at=now, lease_until=None, counts=dict(counts), last_error=None)
            )
            await _plan_one(session, org_id, next_due(now, self.settings.run_at_hour))
            # The runs' own record is kept for a while, not for ever.
            await session.execute(
                delete(_r).where(_r.c.organisation_id == org_id, _r.c.finished_at < now - RUNS_KEPT)
            )

    async def _failed(self, run_id: uuid.UUID, counts: dict[str, int], exc: Exception) -> None:
        """The row stays pending; its lease (held by nobody, on the lease clock like every
        lease, since `_claimable` compares it with that clock) now says when to try again."""
        try:
            async with self._db.write() as session:
                lease_now = await self._lease_now(session)
                await session.execute(
                    update(_r)
                    .where(_r.c.id == run_id, _r.c.claimed_by == self.name)
                    .values(
                        claimed_by=None,
                        lease_until=lease_now + self._lease,
                        counts=dict(counts),
                        last_error=f"{type(exc).__name__}: {exc}"[:1000],
                    )
                )
        except Exception:
            log.exception("could not record the failure of retention run %s", run_id)


async def _plan_one(session: AsyncSession, org_id: uuid.UUID, due_at: datetime) -> None:
    """Insert the organisation's pending run, unless another process just did."""
    try:
        async with session.begin_nested():
            session.add(RetentionRun(id=uuid.uuid4(), organisation_id=org_id, due_at=due_at))
    except IntegrityError:
        pass  # its pending row exists: the unique index said so


async def pending_and_last(
    session: AsyncSession, org_id: uuid.UUID
) -> tuple[RetentionRun | None, RetentionRun | None]:
    """The organisation's planned run and its last finished one (for the API)."""
    pending = await session.scalar(
        select(RetentionRun).where(
            RetentionRun.organisation_id == org_id, RetentionRun.finished_at.is_(None)
        )
    )
    last = await session.scalar(
        select(RetentionRun)
        .where(RetentionRun.organisation_id == org_id, RetentionRun.finished_at.is_not(None))
        .order_by(RetentionRun.finished_at.desc(), RetentionRun.id)
        .limit(1)
    )
    return pending, last


async def retention_ctx(app: web.Application) -> AsyncIterator[None]:
    """After the timers: the retention job runs on their APScheduler, every check_minutes."""
    settings = app[keys.SETTINGS]
    job = RetentionJob(
        app[keys.DB],
        clock=app[keys.CLOCK],
        settings=settings.retention,
        files=RecordingFiles(
            folder=settings.recordings_path,
            in_progress=app[keys.ROOMS].recording_in_progress,
            room_closes_after=timedelta(minutes=settings.rooms.close_after_minutes),
        ),
    )
    app[keys.RETENTION] = job
    running: set[asyncio.Task[None]] = set()

    async def check() -> None:
        task = asyncio.current_task()
        assert task is not None
        running.add(task)
        try:
            await job.run_due()
        except Exception:
            # The next check tries again; the rows say what is left.
            log.exception("retention check failed")
        finally:
            running.discard(task)

    app[keys.TIMERS].scheduler.add_job(
        check,
        "interval",
        minutes=settings.retention.check_minutes,
        id=_JOB,
        replace_existing=True,
    )
    yield
    # Before the timers and the database stop: let a batch in progress commit.
    job.stopping = True
    with contextlib.suppress(JobLookupError):
        app[keys.TIMERS].scheduler.remove_job(_JOB)
    await asyncio.gather(*running, return_exceptions=True)
