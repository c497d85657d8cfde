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

Jobs exist only for timers due within a look-ahead window, and a periodic sweep catches
what a lost job missed (`service` says why). A timer whose moment passed while Viva was down
runs when it comes back, unless it no longer makes sense: a reminder for an interview that
has begun, for a booking that was cancelled or moved, is dropped and logged.

An action that raises (a transient database error, a lost connection) is not lost: its row
goes back to pending with `retry_at` (backoff doubling, `plan.retry_delay`) and its
`last_error`, and is tried again until its own deadline: a reminder's is the interview's
start (after it, a reminder is pointless); a lock or a no-show mark has none (it is never
pointless). A retry whose backoff would pass the deadline is brought forward to just before
it (`plan.LAST_TRY_BEFORE_DEADLINE`), so the last useful try is made. When no try is left
before the deadline the row is closed as "failed", logged at error level, counted
(viva_timer_failures_total) and written in the booking's history ("timer_failed").

Modules: `plan` (which rows a booking has, re-planned in its transaction), `claims` (what
is due and the atomic claim), `actions` (what each kind does), `service` (APScheduler, the
sweep and the claim-and-act pass) and `wiring` (the app's service). The names others use are
importable from `scheduler.timers`.
"""

from __future__ import annotations

from scheduler.timers.claims import Fired
from scheduler.timers.plan import (
    LAST_TRY_BEFORE_DEADLINE,
    LOCK,
    NO_SHOW,
    deadline,
    plan,
    reminder_kind,
    replan,
    replanner,
    retry_delay,
)
from scheduler.timers.service import TimerMetrics, TimerService
from scheduler.timers.wiring import no_show_after, timers_ctx

__all__ = [
    "LAST_TRY_BEFORE_DEADLINE",
    "LOCK",
    "NO_SHOW",
    "Fired",
    "TimerMetrics",
    "TimerService",
    "deadline",
    "no_show_after",
    "plan",
    "reminder_kind",
    "replan",
    "replanner",
    "retry_delay",
    "timers_ctx",
]
