"""Which timers a booking has: the kinds, their moments, and the re-planning of a booking's
rows in the transaction that changes it (pure but for `replan`'s session)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.config import ReminderSettings
from scheduler.effects import Replan
from scheduler.models import ACTIVE_STATUSES, Booking, Timer
from scheduler.policy import Policy, lock_time

__all__ = [
    "LAST_TRY_BEFORE_DEADLINE",
    "LOCK",
    "NO_SHOW",
    "deadline",
    "plan",
    "reminder_hours",
    "reminder_kind",
    "replan",
    "replanner",
    "retry_delay",
]

LOCK = "lock"
NO_SHOW = "no_show"
_REMINDER = re.compile(r"reminder_(\d+)h")
# A failing action is tried again after this, doubled at each failure, up to the maximum.
_RETRY_BASE_SECONDS = 5.0
_RETRY_MAX_SECONDS = 300.0
# A retry whose backoff would pass its action's deadline comes this long before it instead:
# the last useful try, with room for a pass woken a little late to still run in time.
LAST_TRY_BEFORE_DEADLINE = timedelta(seconds=30)


def retry_delay(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failure of an action."""
    return timedelta(
        seconds=min(_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), _RETRY_MAX_SECONDS)
    )


def reminder_kind(hours: int) -> str:
    """The timer kind of the reminder `hours` before the start: "reminder_48h"."""
    return f"reminder_{hours}h"


def reminder_hours(kind: str) -> int | None:
    """How many hours before the start a reminder kind is sent; None for another kind."""
    match = _REMINDER.fullmatch(kind)
    return int(match.group(1)) if match else None


def deadline(kind: str, due_at: datetime) -> datetime | None:
    """Until when a failing action is worth trying again: a reminder until the interview
    starts; a lock or a no-show mark always (None)."""
    hours = reminder_hours(kind)
    return due_at + timedelta(hours=hours) if hours is not None else None


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
