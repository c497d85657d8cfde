"""A timer action that raises is tried again with backoff until its own deadline.

The failure is real: failing SQL run in the action's savepoint (the service's
`before_action` hook), on both databases; the clock is a FrozenClock moved by hand.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler import keys
from scheduler.models import Timer
from scheduler.timers import LAST_TRY_BEFORE_DEADLINE, deadline, retry_delay
from tests.conftest import token_of

START = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)  # 09:00 in Paris
LOCK_AT = START - timedelta(hours=24)


async def _booking(make_org) -> tuple[object, str]:
    org = await make_org()
    await org.make_evaluator()
    cand = await org.make_candidate()
    token = token_of(cand["link"])
    resp = await org.client.post(f"/c/{token}/booking", json={"start": START.isoformat()})
    assert resp.status == 201
    return org, (await resp.json())["id"]


def _failing(kind: str, times: int | None) -> Callable[..., object]:
    """A hook whose `kind` action fails `times` times (None: always) with a database error."""
    left = {"n": times}

    async def hook(session: AsyncSession, booking_id: uuid.UUID, which: str) -> None:
        if which != kind or left["n"] == 0:
            return
        if left["n"] is not None:
            left["n"] -= 1
        await session.execute(text("SELECT no_such_column FROM no_such_table"))

    return hook


async def _timer(org, booking_id: str, kind: str) -> Timer:
    async with org.client.app[keys.DB].read() as session:
        row = await session.scalar(
            select(Timer).where(Timer.booking_id == uuid.UUID(booking_id), Timer.kind == kind)
        )
    assert row is not None
    return row


def _sample(org, name: str, **labels: str) -> float:
    value = org.client.app[keys.METRICS].registry.get_sample_value(name, labels)
    return value or 0.0


async def test_a_failing_lock_is_retried_with_backoff_until_it_succeeds(make_org, clock) -> None:
    org, booking_id = await _booking(make_org)
    timers = org.client.app[keys.TIMERS]
    timers.before_action = _failing("lock", 3)
    clock.set(LOCK_AT)
    waits = []
    for attempt in (1, 2, 3):
        await timers.run_due()
        row = await _timer(org, booking_id, "lock")
        assert row.done_at is None and row.attempts == attempt
        assert row.retry_at == clock.now() + retry_delay(attempt)
        assert "no_such_table" in (row.last_error or "")
        assert (await org.ok("GET", f"/bookings/{booking_id}"))["status"] == "confirmed"
        # Not before its retry time.
        clock.set(row.retry_at - timedelta(seconds=1))
        assert await timers.run_due() == 0
        waits.append(row.retry_at)
        clock.set(row.retry_at)
    assert waits[1] - waits[0] < waits[2] - waits[1]  # the wait grows
    await timers.run_due()
    row = await _timer(org, booking_id, "lock")
    assert row.done_at is not None and row.outcome == "done" and row.attempts == 3
    assert (await org.ok("GET", f"/bookings/{booking_id}"))["status"] == "locked"
    assert _sample(org, "viva_timer_retries_total", kind="lock") == 3
    assert _sample(org, "viva_timer_failures_total", kind="lock") == 0
    assert deadline("lock", LOCK_AT) is None  # a lock is never pointless


async def test_a_reminder_that_keeps_failing_gives_up_at_the_interview(
    make_org, clock, caplog
) -> None:
    org, booking_id = await _booking(make_org)
    timers = org.client.app[keys.TIMERS]
    timers.before_action = _failing("reminder_1h", None)
    clock.set(START - timedelta(hours=1))
    assert deadline("reminder_1h", clock.now()) == START
    with caplog.at_level(logging.WARNING, logger="viva.timers"):
        for _ in range(50):
            await timers.run_due()
            row = await _timer(org, booking_id, "reminder_1h")
            if row.done_at is not None:
                break
            assert row.retry_at is not None and row.retry_at < START
            clock.set(row.retry_at)
    assert row.outcome == "failed" and row.attempts > 3
    # The last try came just before the start, though its backoff would have ended after it;
    # given up only then, with no useful try left.
    assert clock.now() == START - LAST_TRY_BEFORE_DEADLINE
    assert "no_such_table" in (row.last_error or "")
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1 and "failed for good" in failures[0].getMessage()
    events = (await org.ok("GET", f"/bookings/{booking_id}/history"))["events"]
    assert events[-1]["action"] == "timer_failed" and events[-1]["actor"] == "system"
    assert "reminder_1h" in events[-1]["reason"] and "no_such_table" in events[-1]["reason"]
    assert _sample(org, "viva_timer_failures_total", kind="reminder_1h") == 1
    # The failure does not spill over: the no-show mark still runs at its time.
    timers.before_action = None
    clock.set(START + timedelta(minutes=10))
    await timers.run_due()
    assert (await org.ok("GET", f"/bookings/{booking_id}"))["status"] == "no_show"


async def _reminder_failed_before(org, booking_id: str, attempts: int) -> None:
    """The 1 h reminder as it is after `attempts` failures: pending, due again now."""
    async with org.client.app[keys.DB].write() as session:
        await session.execute(
            update(Timer)
            .where(Timer.booking_id == uuid.UUID(booking_id), Timer.kind == "reminder_1h")
            .values(done_at=None, outcome=None, attempts=attempts, retry_at=None)
        )


async def test_a_reminder_whose_backoff_passes_the_start_is_tried_once_more_before_it(
    make_org, clock
) -> None:
    """At the backoff's cap (5 min), a reminder failing 2 minutes before the interview is
    not given up: its last try comes just before the start, and only a failure then (or at
    or after the start) fails it for good."""
    org, booking_id = await _booking(make_org)
    timers = org.client.app[keys.TIMERS]
    timers.before_action = _failing("reminder_1h", None)
    capped = 10
    assert retry_delay(capped + 1) == timedelta(minutes=5)
    await _reminder_failed_before(org, booking_id, capped)

    clock.set(START - timedelta(minutes=2))
    await timers.run_due()
    row = await _timer(org, booking_id, "reminder_1h")
    assert (row.done_at, row.attempts) == (None, capped + 1), "planned again, not failed"
    assert row.retry_at == START - LAST_TRY_BEFORE_DEADLINE
    assert clock.now() < row.retry_at < clock.now() + retry_delay(capped + 1)
    assert _sample(org, "viva_timer_failures_total", kind="reminder_1h") == 0

    # The last try fails too: nothing useful is left, the reminder is failed for good.
    clock.set(row.retry_at)
    await timers.run_due()
    row = await _timer(org, booking_id, "reminder_1h")
    assert row.outcome == "failed" and row.done_at is not None and row.attempts == capped + 2
    assert _sample(org, "viva_timer_failures_total", kind="reminder_1h") == 1

    # Failing inside the last margin, at the start, or after it: failed at once.
    for at in (START - LAST_TRY_BEFORE_DEADLINE / 2, START, START + timedelta(minutes=1)):
        await _reminder_failed_before(org, booking_id, 1)
        clock.set(at)
        await timers.run_due()
        row = await _timer(org, booking_id, "reminder_1h")
        assert row.outcome == "failed" and row.retry_at is None, at
    assert _sample(org, "viva_timer_failures_total", kind="reminder_1h") == 4


async def test_a_lock_retried_long_after_its_time_still_waits_its_full_backoff(
    make_org, clock
) -> None:
    """A lock has no deadline: its retry keeps the whole backoff, however late it is."""
    org, booking_id = await _booking(make_org)
    timers = org.client.app[keys.TIMERS]
    timers.before_action = _failing("lock", None)
    clock.set(START + timedelta(hours=1))
    await timers.run_due()
    row = await _timer(org, booking_id, "lock")
    assert row.done_at is None and row.retry_at == clock.now() + retry_delay(1)
