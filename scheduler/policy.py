"""Booking rules shared by slot computation, the booking transaction and the change lock.

Kept as plain integers (minutes, hours, days) so the values read like the configuration they come
from; the timedelta properties exist so callers never redo the unit conversion by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

__all__ = ["Policy", "is_locked", "lock_time"]


@dataclass(frozen=True)
class Policy:
    """The organisation's booking rules; frozen so one request sees one consistent set."""

    interview_minutes: int = 20
    buffer_minutes: int = 10
    slot_step_minutes: int = 20
    min_notice_hours: int = 24
    booking_horizon_days: int = 60
    change_lock_hours: int = 24
    max_interviews_per_evaluator_per_day: int = 8

    def __post_init__(self) -> None:
        # A zero-length interview or step would make slot enumeration loop forever; negative
        # values have no sensible meaning, so fail at construction rather than deep in a query.
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{f.name} must be an int, got {value!r}")
            if value < 0:
                raise ValueError(f"{f.name} must not be negative, got {value}")
        for name in ("interview_minutes", "slot_step_minutes"):
            if getattr(self, name) == 0:
                raise ValueError(f"{name} must be positive")

    @property
    def interview(self) -> timedelta:
        return timedelta(minutes=self.interview_minutes)

    @property
    def buffer(self) -> timedelta:
        return timedelta(minutes=self.buffer_minutes)

    @property
    def step(self) -> timedelta:
        return timedelta(minutes=self.slot_step_minutes)

    @property
    def min_notice(self) -> timedelta:
        return timedelta(hours=self.min_notice_hours)

    @property
    def horizon(self) -> timedelta:
        return timedelta(days=self.booking_horizon_days)

    @property
    def change_lock(self) -> timedelta:
        return timedelta(hours=self.change_lock_hours)


def lock_time(start: datetime, policy: Policy) -> datetime:
    """The instant after which a booking can no longer be moved or cancelled.

    Computed in UTC on purpose: "24 hours before" means 24 hours of real elapsed time. Subtracting
    from a datetime carrying a ZoneInfo would do wall-clock arithmetic and be off by the DST shift
    on the night the clocks change.
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    return start.astimezone(UTC) - policy.change_lock


def is_locked(start: datetime, now: datetime, policy: Policy) -> bool:
    """Whether changes are refused; the lock instant itself already counts as locked."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now >= lock_time(start, policy)
