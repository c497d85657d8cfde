"""The timers of one process: APScheduler wakes it, the pass claims and acts.

APScheduler (AsyncIOScheduler) only decides *when to wake up*. A job holds nothing but a
timer's id; when it fires, the service claims every due row (`claims.claim_statement`) and
acts on each claimed row in that same transaction (`actions`). A stale job (its row
cancelled or already done) claims nothing. Every decision reads the injected clock, never
APScheduler's.

Jobs exist only for timers due within a look-ahead window ([reminders] lookahead_minutes):
APScheduler 3 keeps its jobs in one sorted list, and 300,000 of them (100,000 bookings) take
17 to 21 s to load and 400 MB to hold (bench/timers.py); the window holds a few thousand.
A periodic sweep acts on any due row whose job was lost (a crash, a row written by another
process) and gives jobs to the rows entering the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_RUNNING
from apscheduler.triggers.date import DateTrigger
from prometheus_client import Counter, Histogram
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.clock import Clock, SystemClock
from scheduler.config import ReminderSettings
from scheduler.db import Database
from scheduler.models import Timer
from scheduler.notify import Notifier
from scheduler.policy import Policy
from scheduler.sql import any_of
from scheduler.timers.actions import Dropped, TimerActions
from scheduler.timers.claims import (
    CLAIM_BATCH,
    Claim,
    Fired,
    Held,
    claim_statement,
    due,
    mark_dropped,
    next_at,
    retry_or_fail,
)
from scheduler.timers.plan import NO_SHOW, plan

__all__ = ["TimerMetrics", "TimerService"]

logger = logging.getLogger("viva.timers")

_SWEEP_JOB = "viva-timers-sweep"
# A due row a pass had to skip (its booking locked by a change, or by another pass) is
# tried again this soon, not at the next sweep.
_SKIPPED_RETRY_SECONDS = 0.5
_t = Timer.__table__
# The pending timers of some bookings, as `sync` reads them after every change; built once.
_PENDING_OF = select(_t.c.id, _t.c.booking_id, next_at.label("due_at")).where(
    any_of(_t.c.booking_id, "booking_ids"), _t.c.done_at.is_(None)
)


class TimerMetrics(Protocol):
    """The figures the timers move (scheduler.metrics.Metrics has them)."""

    timer_lag: Histogram
    timer_retries: Counter
    timer_failures: Counter


class TimerService:
    """The timers of one process: its APScheduler, its sweep, and the claim-and-act pass.

    `clock` makes every decision (what is due, whether a reminder still makes sense);
    `real_clock` is only used to turn "due in 90 s by `clock`" into the wall-clock instant
    APScheduler waits for, so the service runs on a FrozenClock (tests call `run_due` after
    moving it) as well as on the system clock.
    """

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock,
        policy: Policy,
        reminders: ReminderSettings,
        notifier: Notifier,
        wake_mail: Callable[[], None] | None = None,
        on_fired: Callable[[Sequence[Fired]], None] | None = None,
        lookahead: timedelta | None = None,
        batch_size: int = CLAIM_BATCH,
        real_clock: Clock | None = None,
        no_show_after: timedelta | None = None,
        on_no_show: Callable[[uuid.UUID], Awaitable[object]] | None = None,
        candidate_arrived: Callable[[uuid.UUID, datetime], bool] | None = None,
        metrics: TimerMetrics | None = None,
        before_action: Callable[[AsyncSession, uuid.UUID, str], Awaitable[None]] | None = None,
    ) -> None:
        self._db = db
        self._actions = TimerActions(
            policy=policy,
            notifier=notifier,
            no_show_after=no_show_after,
            candidate_arrived=candidate_arrived,
        )
        self._metrics = metrics
        # Runs in each action's savepoint, with its session, before the action: where a
        # fault is injected (tests run failing SQL in it) to exercise the retries for real.
        self.before_action = before_action
        # Told each booking marked no_show, once committed (the app: its live room).
        self._on_no_show = on_no_show
        self._clock = clock
        self._real_clock = real_clock or SystemClock()
        self._reminders = reminders
        self._policy = policy
        self._no_show_after = no_show_after
        self._wake_mail = wake_mail
        self._on_fired = on_fired
        self.lookahead = lookahead or timedelta(minutes=reminders.lookahead_minutes)
        self._batch_size = batch_size
        self.scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={
                # APScheduler's default grace is 1 s: a job that runs later than that (a
                # blocked loop, a suspended host, a row given its job after its time) would be
                # skipped with a log line. A job here only says "look at the table": running
                # it late is always right, and whether the action still makes sense is
                # decided from the row and the clock. So: no grace limit.
                "misfire_grace_time": None,
                # Missed run times of one job (only the periodic sweep can have several)
                # collapse into one run: each run already handles everything that is due.
                "coalesce": True,
                "max_instances": 1,
            },
        )
        # timer id -> booking id, for the jobs this process holds.
        self._held: dict[uuid.UUID, uuid.UUID] = {}
        self._by_booking: dict[uuid.UUID, set[uuid.UUID]] = {}
        self._wakeup = asyncio.Event()
        self._sweep_wanted = False
        self._stopping = False
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the scheduler holding a job for every pending timer due within the window,
        and act at once on the timers that fell due while Viva was down."""
        self.scheduler.start()
        await self._load_window()
        self.scheduler.add_job(
            self._sweep_job,
            "interval",
            seconds=self._reminders.sweep_seconds,
            id=_SWEEP_JOB,
            replace_existing=True,
        )
        self._runner = asyncio.create_task(self._run(), name="viva-timers")
        self._wake()

    async def stop(self) -> None:
        """Stop waking up; let a pass in progress commit (or roll back) before returning."""
        self._stopping = True
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
            await asyncio.sleep(0)  # AsyncIOScheduler shuts down on the loop's next turn
        self._wakeup.set()
        if self._runner is not None:
            await self._runner
            self._runner = None

    @property
    def held(self) -> frozenset[uuid.UUID]:
        """The timer ids this process holds a job for."""
        return frozenset(self._held)

    # -- keeping the jobs in line with the table --------------------------------------------

    async def sync(self, booking_ids: Iterable[uuid.UUID]) -> None:
        """After a booking change commits: add, move or drop the jobs of these bookings.

        Never raises: the change is committed, and a job missed here is given by the next
        sweep; the failure is logged with its traceback.
        """
        ids = set(booking_ids)
        if not ids:
            return
        try:
            now = self._clock.now()
            # Only jobs held before the read may be dropped for being absent from it: one
            # added meanwhile (by a concurrent sync) comes from a fresher read.
            held_before = set(self._held)
            async with self._db.read() as session:
                rows = (await session.execute(_PENDING_OF, {"booking_ids": list(ids)})).all()
            pending = {row.id for row in rows}
            for booking_id in ids:
                for timer_id in list(self._by_booking.get(booking_id, ())):
                    if timer_id not in pending and timer_id in held_before:
                        self._drop_job(timer_id)
            self._hold([row for row in rows if row.due_at <= now + self.lookahead])
        except Exception:
            logger.exception("could not bring the timer jobs of %s in line", sorted(map(str, ids)))

    async def sync_new(self, booking_id: uuid.UUID, start: datetime) -> None:
        """`sync` for a booking created by the transaction just committed, starting at
        `start`. No process holds a job for it yet, and its timers are among those `plan`
        gives from its start alone: when the first of those is beyond the window there is
        nothing to hold, so nothing is read (the sweep gives the jobs as they enter it).
        Most bookings are days ahead, and this spares each a read after its commit."""
        first = plan(start, self._policy, self._reminders, self._no_show_after)[0][1]
        if first > self._clock.now() + self.lookahead:
            return
        await self.sync([booking_id])

    def refresh(self, booking_ids: Iterable[uuid.UUID]) -> None:
        """`sync` for callers that cannot await: runs it as a task the service waits for
        when it stops."""
        task = asyncio.ensure_future(self.sync(list(booking_ids)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def sweep(self) -> int:
        """What the periodic sweep does: give jobs to the timers entering the window, then
        act on every due row, including those whose job was lost. Returns `run_due`'s count."""
        await self._load_window()
        return await self.run_due()

    async def _load_window(self) -> None:
        """Give a job to every pending timer due within the window; drop jobs whose rows are
        no longer pending (done or cancelled, possibly by another process)."""
        horizon = self._clock.now() + self.lookahead
        held_before = set(self._held)  # see `sync`
        async with self._db.read() as session:
            rows = (
                await session.execute(
                    select(_t.c.id, _t.c.booking_id, next_at.label("due_at"))
                    .where(_t.c.done_at.is_(None), _t.c.due_at <= horizon, next_at <= horizon)
                    .order_by(_t.c.due_at)
                )
            ).all()
        pending = {row.id for row in rows}
        for timer_id in [t for t in held_before if t not in pending]:
            self._drop_job(timer_id)
        self._hold(rows)

    def _hold(self, rows: Sequence[Any]) -> None:
        """Add a job per row not held yet; a row already due needs none, only a pass."""
        now = self._clock.now()
        # Read after `now`, so on one clock `run_at` is never before the due time.
        real_now = self._real_clock.now()
        due_now = False
        new = []
        for row in rows:
            if row.id in self._held:
                continue
            if row.due_at <= now:
                due_now = True
            else:
                new.append(row)
        if new:
            # Paused, APScheduler does not re-plan its wake-up after each added job.
            paused = self.scheduler.state == STATE_RUNNING
            if paused:
                self.scheduler.pause()
            try:
                for row in new:
                    self.scheduler.add_job(
                        self._fire_job,
                        DateTrigger(real_now + (row.due_at - now), timezone=UTC),
                        args=(row.id,),
                        id=str(row.id),
                        replace_existing=True,
                    )
                    self._held[row.id] = row.booking_id
                    self._by_booking.setdefault(row.booking_id, set()).add(row.id)
            finally:
                if paused:
                    self.scheduler.resume()
        if due_now:
            self._wake()

    def _forget(self, timer_id: uuid.UUID) -> None:
        booking_id = self._held.pop(timer_id, None)
        if booking_id is not None:
            ids = self._by_booking.get(booking_id)
            if ids is not None:
                ids.discard(timer_id)
                if not ids:
                    del self._by_booking[booking_id]

    def _drop_job(self, timer_id: uuid.UUID) -> None:
        self._forget(timer_id)
        with contextlib.suppress(JobLookupError):
            self.scheduler.remove_job(str(timer_id))

    # -- waking up ------------------------------------------------------------------------------

    async def _fire_job(self, timer_id: uuid.UUID) -> None:
        """A timer's job: its row may be due; the pass claims it (or finds it done)."""
        self._forget(timer_id)
        self._wake()

    async def _sweep_job(self) -> None:
        self._sweep_wanted = True
        self._wake()

    def _wake(self) -> None:
        self._wakeup.set()

    async def _run(self) -> None:
        """The one task that touches the table on the scheduler's behalf, so that stopping
        waits for it and jobs never pile up concurrent passes."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self._stopping:
                return
            try:
                if self._sweep_wanted:
                    self._sweep_wanted = False
                    await self.sweep()
                else:
                    await self.run_due()
            except Exception:
                logger.exception("timer pass failed; the next sweep retries")

    # -- claiming and acting ------------------------------------------------------------------

    async def run_due(self) -> int:
        """Claim and act on every due timer; return how many were claimed."""
        total = 0
        while not self._stopping:
            if not await self._anything_due():
                break
            fired = await self._pass()
            total += len(fired)
            retrying = [f for f in fired if f.retry_at is not None]
            if retrying:  # a job for each retry time (the row's own job has fired)
                self._hold([Held(f.id, f.booking_id, f.retry_at) for f in retrying if f.retry_at])
            if fired:
                if self._wake_mail is not None and any(f.mails for f in fired):
                    self._wake_mail()
                if self._on_fired is not None:
                    self._on_fired(fired)
                await self._tell_no_shows(fired)
            if len(fired) < self._batch_size:
                break
        if not self._stopping and self._runner is not None and await self._anything_due():
            asyncio.get_running_loop().call_later(_SKIPPED_RETRY_SECONDS, self._wake)
        return total

    async def _anything_due(self) -> bool:
        """A read first, so an idle wake-up never takes SQLite's write lock."""
        now = self._clock.now()
        async with self._db.read() as session:
            return bool(await session.scalar(select(exists().where(due(now)))))

    async def _pass(self) -> list[Fired]:
        """One claim and its actions, in one transaction; each action in a savepoint, so a
        failing one is planned again (or, past its deadline, recorded as "failed") without
        undoing the others."""
        now = self._clock.now()
        fired: list[Fired] = []
        dropped: dict[uuid.UUID, str] = {}
        errors: dict[uuid.UUID, str] = {}
        async with self._db.write() as session:
            result = await session.execute(claim_statement(now, self._batch_size))
            claims = sorted((Claim(*row) for row in result), key=lambda c: (c.due_at, str(c.id)))
            for claim in claims:
                outcome, mails, retry_at = "done", 0, None
                try:
                    async with session.begin_nested():
                        if self.before_action is not None:
                            await self.before_action(session, claim.booking_id, claim.kind)
                        mails = await self._actions.act(session, claim, now)
                except Dropped as why:
                    outcome, dropped[claim.id] = "dropped", str(why)
                except Exception as exc:
                    errors[claim.id] = f"{type(exc).__name__}: {exc}"[:2000]
                    logger.warning(
                        "timer %s raised: %s for booking %s (attempt %d)",
                        claim.id,
                        claim.kind,
                        claim.booking_id,
                        claim.attempts + 1,
                        exc_info=True,
                    )
                    retry_at = await retry_or_fail(session, claim, now, errors[claim.id])
                    outcome = "retrying" if retry_at is not None else "failed"
                if outcome == "dropped":
                    await mark_dropped(session, claim)
                fired.append(
                    Fired(
                        claim.id,
                        claim.booking_id,
                        claim.kind,
                        claim.due_at,
                        now,
                        outcome,
                        mails,
                        retry_at,
                    )
                )
        for f in fired:  # once committed
            self._report(f, now, dropped.get(f.id), errors.get(f.id))
        return fired

    def _report(self, f: Fired, now: datetime, dropped: str | None, error: str | None) -> None:
        """Log and count one committed outcome."""
        if f.outcome == "dropped":
            logger.warning(
                "timer %s dropped: %s for booking %s, due %s: %s",
                f.id,
                f.kind,
                f.booking_id,
                f.due_at.isoformat(),
                dropped,
            )
        elif f.outcome == "done":
            lag = (now - f.due_at).total_seconds()
            logger.info(
                "timer %s done: %s for booking %s, %.3f s after its time",
                f.id,
                f.kind,
                f.booking_id,
                lag,
            )
            if self._metrics is not None:
                self._metrics.timer_lag.labels(kind=f.kind).observe(max(lag, 0.0))
        elif f.outcome == "retrying":
            assert f.retry_at is not None
            logger.warning(
                "timer %s will be tried again at %s: %s for booking %s: %s",
                f.id,
                f.retry_at.isoformat(),
                f.kind,
                f.booking_id,
                error,
            )
            if self._metrics is not None:
                self._metrics.timer_retries.labels(kind=f.kind).inc()
        else:
            logger.error(
                "timer %s failed for good: %s for booking %s, due %s: %s",
                f.id,
                f.kind,
                f.booking_id,
                f.due_at.isoformat(),
                error,
            )
            if self._metrics is not None:
                self._metrics.timer_failures.labels(kind=f.kind).inc()

    async def _tell_no_shows(self, fired: Sequence[Fired]) -> None:
        """After the commit, pass on each no-show mark; a failure there is no timer's."""
        if self._on_no_show is None:
            return
        for f in fired:
            if f.kind == NO_SHOW and f.outcome == "done":
                try:
                    await self._on_no_show(f.booking_id)
                except Exception:
                    logger.exception("could not pass on the no-show of booking %s", f.booking_id)
