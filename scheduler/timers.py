"""A booking's timed actions: the change lock and the reminders, kept in the database and
woken by APScheduler.

The `timers` table is the truth: one row per action (booking, kind, due_at; done_at and
outcome once acted on). Every booking change re-plans its rows in its own transaction
(`replan`); after the commit the caller brings this process's jobs in line (`sync`).

APScheduler (AsyncIOScheduler) only decides *when to wake up*. A job holds nothing but a
timer's id; when it fires, the service claims every due row with one atomic
`UPDATE … WHERE done_at IS NULL … RETURNING` and acts on each claimed row in that same
transaction, so an action happens once and only with its claim, whichever process (several
may share one PostgreSQL), job or sweep got there first. A stale job (its row cancelled or
already done) claims nothing. Every decision reads the injected clock, never APScheduler's.

Jobs exist only for timers due within a look-ahead window ([reminders] lookahead_minutes):
APScheduler 3 keeps its jobs in one sorted list, and 300,000 of them (100,000 bookings) take
17 to 21 s to load and 400 MB to hold (bench/timers.py); the window holds a few thousand.
A periodic sweep acts on any due row whose job was lost (a crash, a row written by another
process) and gives jobs to the rows entering the window. A timer whose moment passed while
Viva was down runs when it comes back, unless it no longer makes sense: a reminder for an
interview that has begun, for a booking that was cancelled or moved, is dropped and logged.

An action that raises (a transient database error, a lost connection) is not lost: its row
goes back to pending with `retry_at` (backoff doubling from _RETRY_BASE_SECONDS) and its
`last_error`, and is tried again until its own deadline: a reminder's is the interview's
start (after it, a reminder is pointless); a lock or a no-show mark has none (it is never
pointless). Past the deadline the row is closed as "failed", logged at error level, counted
(viva_timer_failures_total) and written in the booking's history ("timer_failed").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from aiohttp import web
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_RUNNING
from apscheduler.triggers.date import DateTrigger
from prometheus_client import Counter, Histogram
from sqlalchemy import exists, func, select, type_coerce, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailer import compose
from mailer.outbox import enqueue_content
from rooms.models import candidate_joined_before
from scheduler import history, keys
from scheduler.clock import Clock, SystemClock
from scheduler.config import ReminderSettings, Settings
from scheduler.db import Database, UTCDateTime
from scheduler.effects import Replan
from scheduler.models import ACTIVE_STATUSES, Booking, Candidate, Evaluator, Organisation, Timer
from scheduler.notify import Notifier
from scheduler.policy import Policy, is_locked, lock_time

__all__ = [
    "LOCK",
    "NO_SHOW",
    "Fired",
    "TimerMetrics",
    "TimerService",
    "deadline",
    "plan",
    "reminder_kind",
    "replan",
    "replanner",
    "retry_delay",
    "timers_ctx",
]

logger = logging.getLogger("viva.timers")

LOCK = "lock"
NO_SHOW = "no_show"
_REMINDER = re.compile(r"reminder_(\d+)h")
_SWEEP_JOB = "viva-timers-sweep"
# Rows claimed per transaction: large enough for a burst, small enough that one failing
# commit or a slow mail render holds few rows back.
_CLAIM_BATCH = 100
# A due row a pass had to skip (its booking locked by a change, or by another pass) is
# tried again this soon, not at the next sweep.
_SKIPPED_RETRY_SECONDS = 0.5
# A failing action is tried again after this, doubled at each failure, up to the maximum.
_RETRY_BASE_SECONDS = 5.0
_RETRY_MAX_SECONDS = 300.0
_t = Timer.__table__
# When a pending row is next due: its retry time once an action failed, else its due time.
_next_at = type_coerce(func.coalesce(_t.c.retry_at, _t.c.due_at), UTCDateTime())


def _due(now: datetime) -> Any:
    """Pending, due, and past its retry time if it has one (`due_at` first, for the index)."""
    return (
        _t.c.done_at.is_(None)
        & (_t.c.due_at <= now)
        & (_t.c.retry_at.is_(None) | (_t.c.retry_at <= now))
    )


def retry_delay(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failure of an action."""
    return timedelta(
        seconds=min(_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), _RETRY_MAX_SECONDS)
    )


def reminder_kind(hours: int) -> str:
    """The timer kind of the reminder `hours` before the start: "reminder_48h"."""
    return f"reminder_{hours}h"


def _reminder_hours(kind: str) -> int | None:
    match = _REMINDER.fullmatch(kind)
    return int(match.group(1)) if match else None


# --- planning (pure) -------------------------------------------------------------------------


def plan(
    start: datetime,
    policy: Policy,
    reminders: ReminderSettings,
    no_show_after: timedelta | None = None,
) -> list[tuple[str, datetime]]:
    """Every timer of a booking starting at `start`, as (kind, due_at), earliest first.

    The lock at `lock_time` (the booking becomes `locked`), and one reminder per configured
    offset. Whether each still applies to a given booking now is `replan`'s business.
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    start = start.astimezone(UTC)
    planned = [(LOCK, lock_time(start, policy))]
    planned += [(reminder_kind(h), start - timedelta(hours=h)) for h in reminders.hours_before]
    if no_show_after is not None:
        # Marks the booking no_show unless the candidate joined the room by then.
        planned.append((NO_SHOW, start + no_show_after))
    return sorted(planned, key=lambda item: (item[1], item[0]))


def _wanted(
    booking: Booking,
    policy: Policy,
    reminders: ReminderSettings,
    now: datetime,
    no_show_after: timedelta | None = None,
) -> list[tuple[str, datetime]]:
    """The pending rows a booking should have now.

    Nothing for a cancelled booking. The lock for a `confirmed` booking even when its moment
    has passed (it then runs at once, so the state catches up); none for one already
    `locked`. Reminders only ahead of `now`: one whose moment has passed when the booking is
    made or moved would repeat the confirmation the person has just received.
    """
    if booking.status not in ACTIVE_STATUSES:
        return []
    wanted = []
    for kind, due in plan(booking.start_at, policy, reminders, no_show_after):
        if kind == LOCK:
            if booking.status == "confirmed":
                wanted.append((kind, due))
        elif kind == NO_SHOW:
            wanted.append((kind, due))  # even if past: the mark catches up at once
        elif due > now:
            wanted.append((kind, due))
    return wanted


async def replan(
    session: AsyncSession,
    booking: Booking,
    *,
    policy: Policy,
    reminders: ReminderSettings,
    now: datetime,
    no_show_after: timedelta | None = None,
    new: bool = False,
) -> None:
    """Bring the booking's pending timer rows in line with the booking, in the caller's
    transaction.

    A pending row that is still wanted (same kind, same due time) is kept, so calling this
    twice changes nothing and a job already holding the row stays valid. Every other pending
    row is closed with outcome "cancelled" (kept, not deleted: the table is also the record
    of what was planned and what happened). Missing rows are inserted.

    `new` says the booking was inserted in this same transaction, so it has no rows yet and
    there is nothing to read.
    """
    pending = (
        []
        if new
        else list(
            await session.scalars(
                select(Timer).where(Timer.booking_id == booking.id, Timer.done_at.is_(None))
            )
        )
    )
    wanted = set(_wanted(booking, policy, reminders, now, no_show_after))
    kept: set[tuple[str, datetime]] = set()
    for row in pending:
        key = (row.kind, row.due_at)
        if key in wanted and key not in kept:
            kept.add(key)
        else:
            row.done_at = now
            row.outcome = "cancelled"
    for kind, due in sorted(wanted - kept, key=lambda item: item[1]):
        session.add(
            Timer(
                id=uuid.uuid4(),
                booking_id=booking.id,
                organisation_id=booking.organisation_id,
                kind=kind,
                due_at=due,
                done_at=None,
                outcome=None,
                created_at=now,
            )
        )
    await session.flush()


def replanner(
    policy: Policy, reminders: ReminderSettings, no_show_after: timedelta | None = None
) -> Replan:
    """`replan` with the settings bound: the `(session, booking, now, *, new=False)`
    callable that `scheduler.effects.MailAndTimers` takes."""

    async def bound(
        session: AsyncSession, booking: Booking, now: datetime, *, new: bool = False
    ) -> None:
        await replan(
            session,
            booking,
            policy=policy,
            reminders=reminders,
            now=now,
            no_show_after=no_show_after,
            new=new,
        )

    return bound


# --- acting ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fired:
    """One claimed timer and what became of it: "done", "dropped", "retrying" (it raised and
    is tried again at `retry_at`) or "failed" (it kept raising until its deadline)."""

    id: uuid.UUID
    booking_id: uuid.UUID
    kind: str
    due_at: datetime
    claimed_at: datetime
    outcome: str
    mails: int
    retry_at: datetime | None = None


@dataclass(frozen=True)
class _Claim:
    id: uuid.UUID
    booking_id: uuid.UUID
    kind: str
    due_at: datetime
    attempts: int = 0


def deadline(kind: str, due_at: datetime) -> datetime | None:
    """Until when a failing action is worth trying again: a reminder until the interview
    starts; a lock or a no-show mark always (None)."""
    hours = _reminder_hours(kind)
    return due_at + timedelta(hours=hours) if hours is not None else None


@dataclass(frozen=True)
class _Held:
    """What `_hold` needs of a row: its id, its booking and when it is next due."""

    id: uuid.UUID
    booking_id: uuid.UUID
    due_at: datetime


class TimerMetrics(Protocol):
    """The figures the timers move (scheduler.metrics.Metrics has them)."""

    timer_lag: Histogram
    timer_retries: Counter
    timer_failures: Counter


class _Dropped(Exception):
    """The timer no longer makes sense; the message says why."""


def _claim_statement(now: datetime, limit: int) -> Any:
    """Take up to `limit` due rows, atomically, with their bookings.

    The WHERE is repeated outside the subquery: under PostgreSQL's READ COMMITTED a
    concurrent claimer re-evaluates it on the updated row and skips it. SKIP LOCKED makes a
    claimer pass over rows another process holds instead of waiting. The booking rows are
    locked too (FOR NO KEY UPDATE OF both tables), in the order booking changes take them
    (booking, then its timers) never being waited for: a booking in the middle of a change is
    skipped and its timer comes back at the next wake-up, already re-planned. SQLite ignores
    the locking clause; its write transaction is exclusive anyway (scheduler.db).
    """
    due = _due(now)
    chosen = (
        select(_t.c.id)
        .join(Booking.__table__, Booking.__table__.c.id == _t.c.booking_id)
        .where(due)
        .order_by(_t.c.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True, key_share=True, of=[_t, Booking.__table__])
        # Materialised, so it runs once. As a plain `IN (subquery)` PostgreSQL may rescan it
        # for every candidate row, and the LIMIT then no longer bounds the claim.
        .cte("chosen")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    return (
        update(_t)
        .where(_t.c.id.in_(select(chosen.c.id)), due)
        .values(done_at=now, outcome="done")
        .returning(_t.c.id, _t.c.booking_id, _t.c.kind, _t.c.due_at, _t.c.attempts)
    )


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
        batch_size: int = _CLAIM_BATCH,
        real_clock: Clock | None = None,
        no_show_after: timedelta | None = None,
        on_no_show: Callable[[uuid.UUID], Awaitable[object]] | None = None,
        candidate_arrived: Callable[[uuid.UUID, datetime], bool] | None = None,
        metrics: TimerMetrics | None = None,
        before_action: Callable[[AsyncSession, uuid.UUID, str], Awaitable[None]] | None = None,
    ) -> None:
        self._db = db
        # The live rooms' side of the no-show decision (`_no_show`): whether a candidate of
        # this booking is in its room or arriving since before an instant. Synchronous, so
        # nothing can interleave with it on this process's event loop.
        self._candidate_arrived = candidate_arrived
        self._metrics = metrics
        # Runs in each action's savepoint, with its session, before the action: where a
        # fault is injected (tests run failing SQL in it) to exercise the retries for real.
        self.before_action = before_action
        self._no_show_after = no_show_after
        # Told each booking marked no_show, once committed (the app: its live room).
        self._on_no_show = on_no_show
        self._clock = clock
        self._real_clock = real_clock or SystemClock()
        self._policy = policy
        self._reminders = reminders
        self._notifier = notifier
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
                rows = (
                    await session.execute(
                        select(_t.c.id, _t.c.booking_id, _next_at.label("due_at")).where(
                            _t.c.booking_id.in_(ids), _t.c.done_at.is_(None)
                        )
                    )
                ).all()
            pending = {row.id for row in rows}
            for booking_id in ids:
                for timer_id in list(self._by_booking.get(booking_id, ())):
                    if timer_id not in pending and timer_id in held_before:
                        self._drop_job(timer_id)
            self._hold([row for row in rows if row.due_at <= now + self.lookahead])
        except Exception:
            logger.exception("could not bring the timer jobs of %s in line", sorted(map(str, ids)))

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
                    select(_t.c.id, _t.c.booking_id, _next_at.label("due_at"))
                    .where(_t.c.done_at.is_(None), _t.c.due_at <= horizon, _next_at <= horizon)
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
                self._hold([_Held(f.id, f.booking_id, f.retry_at) for f in retrying if f.retry_at])
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
            return bool(await session.scalar(select(exists().where(_due(now)))))

    async def _pass(self) -> list[Fired]:
        """One claim and its actions, in one transaction; each action in a savepoint, so a
        failing one is planned again (or, past its deadline, recorded as "failed") without
        undoing the others."""
        now = self._clock.now()
        fired: list[Fired] = []
        dropped: dict[uuid.UUID, str] = {}
        errors: dict[uuid.UUID, str] = {}
        async with self._db.write() as session:
            result = await session.execute(_claim_statement(now, self._batch_size))
            claims = sorted((_Claim(*row) for row in result), key=lambda c: (c.due_at, str(c.id)))
            for claim in claims:
                outcome, mails, retry_at = "done", 0, None
                try:
                    async with session.begin_nested():
                        if self.before_action is not None:
                            await self.before_action(session, claim.booking_id, claim.kind)
                        mails = await self._act(session, claim, now)
                except _Dropped as why:
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
                    retry_at = await self._failed(session, claim, now, errors[claim.id])
                    outcome = "retrying" if retry_at is not None else "failed"
                if outcome == "dropped":
                    await session.execute(
                        update(_t).where(_t.c.id == claim.id).values(outcome=outcome)
                    )
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

    async def _failed(
        self, session: AsyncSession, claim: _Claim, now: datetime, error: str
    ) -> datetime | None:
        """After an action raised (its savepoint rolled back): plan it again and return
        when, or past its deadline close it as "failed", in the booking's history too."""
        attempts = claim.attempts + 1
        retry_at = now + retry_delay(attempts)
        until = deadline(claim.kind, claim.due_at)
        if until is None or retry_at < until:
            await session.execute(
                update(_t)
                .where(_t.c.id == claim.id)
                .values(
                    done_at=None,
                    outcome=None,
                    attempts=attempts,
                    retry_at=retry_at,
                    last_error=error,
                )
            )
            return retry_at
        await session.execute(
            update(_t)
            .where(_t.c.id == claim.id)
            .values(outcome="failed", attempts=attempts, last_error=error)
        )
        booking = await session.get(Booking, claim.booking_id)
        if booking is not None:
            await history.record(
                session,
                booking,
                actor=history.SYSTEM,
                action="timer_failed",
                now=now,
                before=history.snapshot(booking),
                reason=f"{claim.kind} failed {attempts} times; last error: {error}"[:1000],
            )
        return None

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

    async def _act(self, session: AsyncSession, claim: _Claim, now: datetime) -> int:
        """Do what the timer is for, in the claim's transaction; return the mails enqueued.

        Raises _Dropped when it no longer makes sense.
        """
        booking = await session.get(Booking, claim.booking_id)
        if booking is None:
            raise _Dropped("the booking no longer exists")
        if claim.kind == LOCK:
            return await self._lock(session, booking, now)
        if claim.kind == NO_SHOW:
            return await self._no_show(session, booking, claim, now)
        hours = _reminder_hours(claim.kind)
        if hours is None:
            raise _Dropped(f"unknown timer kind {claim.kind!r}")
        if booking.status not in ACTIVE_STATUSES:
            raise _Dropped(f"the booking is {booking.status}")
        if booking.start_at - timedelta(hours=hours) != claim.due_at:
            raise _Dropped("the booking has moved since this reminder was planned")
        if now >= booking.start_at:
            raise _Dropped("the interview has already begun")
        return await self._remind(session, booking, claim, now)

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

    async def _no_show(
        self, session: AsyncSession, booking: Booking, claim: _Claim, now: datetime
    ) -> int:
        if booking.status not in ACTIVE_STATUSES:
            raise _Dropped(f"the booking is {booking.status}")
        if self._no_show_after is None or (booking.start_at + self._no_show_after != claim.due_at):
            raise _Dropped("the booking has moved since this mark was planned")
        # The live room first, then the attendance rows: an arrival seen by neither came
        # after this check (so after the deadline), and one whose row was committed after it
        # was registered in the room server is seen by the read that follows. Checked the
        # other way round, a join committed between the two would be missed by both.
        if self._candidate_arrived is not None and self._candidate_arrived(
            booking.id, claim.due_at
        ):
            raise _Dropped("the candidate is in the room or joining it")
        if await candidate_joined_before(session, booking.id, claim.due_at):
            raise _Dropped("the candidate joined the room in time")
        before = history.snapshot(booking)
        booking.status = "no_show"
        booking.updated_at = now
        await session.flush()
        await history.record(
            session, booking, actor=history.SYSTEM, action="no_show", now=now, before=before
        )
        return 0

    async def _lock(self, session: AsyncSession, booking: Booking, now: datetime) -> int:
        if booking.status != "confirmed":
            raise _Dropped(f"the booking is already {booking.status}")
        if not is_locked(booking.start_at, now, self._policy):
            raise _Dropped("the booking has moved: its changes do not close yet")
        before = history.snapshot(booking)
        # No new SEQUENCE: the calendar event itself does not change, and no mail goes out.
        booking.status = "locked"
        booking.updated_at = now
        await session.flush()
        await history.record(
            session, booking, actor=history.SYSTEM, action="locked", now=now, before=before
        )
        return 0

    async def _remind(
        self, session: AsyncSession, booking: Booking, claim: _Claim, now: datetime
    ) -> int:
        """The candidate always; the evaluator only for a reminder inside the lock window
        (by default the 1 h one), when the interview can no longer move under them."""
        candidate = await session.get(Candidate, booking.candidate_id)
        evaluator = await session.get(Evaluator, booking.evaluator_id)
        org = await session.get(Organisation, booking.organisation_id)
        assert candidate is not None and evaluator is not None and org is not None  # FKs
        n = self._notifier
        organisation = compose.Organisation(org.name, org.contact_email, org.contact_phone)
        common: dict[str, Any] = dict(
            booking_id=booking.id,
            sequence=booking.sequence,
            start=booking.start_at,
            end=booking.end_at,
            exam_language=candidate.language,
            candidate_name=candidate.name,
            organisation=organisation,
        )
        # The personal link and the last moment to change, while changes are still open.
        can_change = not is_locked(booking.start_at, now, self._policy)
        mails = [
            (
                candidate.locale,
                compose.BookingMail(
                    **common,
                    reader=compose.Reader(candidate.name, candidate.email, candidate.timezone),
                    role="candidate",
                    room_url=n.links.room_url(booking, "candidate"),
                    manage_url=n.links.candidate_url(candidate) if can_change else None,
                    manage_until=lock_time(booking.start_at, self._policy) if can_change else None,
                ),
            )
        ]
        if claim.due_at >= lock_time(booking.start_at, self._policy):
            mails.append(
                (
                    evaluator.locale,
                    compose.BookingMail(
                        **common,
                        reader=compose.Reader(evaluator.name, evaluator.email, evaluator.timezone),
                        role="evaluator",
                        room_url=n.links.room_url(booking, "evaluator"),
                    ),
                )
            )
        for locale, mail in mails:
            content = compose.booking_reminder(n.env, n.catalogs.get(locale), locale, mail, now=now)
            await enqueue_content(
                session,
                content=content,
                settings=n.smtp,
                organisation_id=booking.organisation_id,
                booking_id=booking.id,
                now=now,
            )
        return len(mails)


def no_show_after(settings: Settings) -> timedelta:
    return timedelta(minutes=settings.rooms.no_show_after_minutes)


async def timers_ctx(app: web.Application) -> AsyncIterator[None]:
    """The app's timers: started after the database and the mail worker, stopped before."""
    # Viva logs each timer's outcome; APScheduler's own lines (added, running, executed, for
    # every job) would triple that at INFO. An operator's explicit level is left alone.
    aps_logger = logging.getLogger("apscheduler")
    if aps_logger.level == logging.NOTSET:
        aps_logger.setLevel(logging.WARNING)
    service = TimerService(
        app[keys.DB],
        clock=app[keys.CLOCK],
        policy=app[keys.POLICY],
        reminders=app[keys.SETTINGS].reminders,
        notifier=app[keys.NOTIFIER],
        no_show_after=no_show_after(app[keys.SETTINGS]),
        # An evaluator waiting in the room learns the candidate was marked absent.
        on_no_show=app[keys.ROOMS].marked_no_show,
        candidate_arrived=app[keys.ROOMS].candidate_arrived,
        wake_mail=app[keys.MAIL].wake,
        metrics=app[keys.METRICS],
    )
    app[keys.TIMERS] = service
    await service.start()
    yield
    await service.stop()
