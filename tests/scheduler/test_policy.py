"""Policy values and the change lock, including its real-elapsed-time meaning across DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from scheduler.policy import Policy, is_locked, lock_time

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
SECOND = timedelta(seconds=1)


def test_defaults_and_timedelta_properties() -> None:
    policy = Policy()
    assert (
        policy.interview_minutes,
        policy.buffer_minutes,
        policy.slot_step_minutes,
        policy.min_notice_hours,
        policy.booking_horizon_days,
        policy.change_lock_hours,
        policy.max_interviews_per_evaluator_per_day,
    ) == (20, 10, 20, 24, 60, 24, 8)
    assert policy.interview == timedelta(minutes=20)
    assert policy.buffer == timedelta(minutes=10)
    assert policy.step == timedelta(minutes=20)
    assert policy.min_notice == timedelta(hours=24)
    assert policy.horizon == timedelta(days=60)
    assert policy.change_lock == timedelta(hours=24)


def test_custom_values_flow_into_properties() -> None:
    policy = Policy(interview_minutes=45, buffer_minutes=0, change_lock_hours=48)
    assert policy.interview == timedelta(minutes=45)
    assert policy.buffer == timedelta(0)
    assert policy.change_lock == timedelta(hours=48)


def test_policy_is_frozen_and_hashable() -> None:
    policy = Policy()
    with pytest.raises(AttributeError):
        policy.interview_minutes = 30  # type: ignore[misc]
    assert hash(policy) == hash(Policy())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interview_minutes": 0},
        {"slot_step_minutes": 0},
        {"buffer_minutes": -1},
        {"min_notice_hours": -1},
        {"max_interviews_per_evaluator_per_day": -3},
    ],
)
def test_rejects_meaningless_values(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        Policy(**kwargs)


def test_rejects_non_integers() -> None:
    with pytest.raises(TypeError):
        Policy(interview_minutes=20.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Policy(buffer_minutes=True)


def test_lock_time_is_change_lock_before_start_in_utc() -> None:
    start = datetime(2026, 5, 12, 14, 0, tzinfo=UTC)
    assert lock_time(start, Policy()) == datetime(2026, 5, 11, 14, 0, tzinfo=UTC)
    assert lock_time(start, Policy(change_lock_hours=2)) == datetime(2026, 5, 12, 12, tzinfo=UTC)
    assert lock_time(start, Policy()).tzinfo is UTC


def test_lock_boundary_one_second_before_and_exactly_at() -> None:
    start = datetime(2026, 5, 12, 14, 0, tzinfo=UTC)
    lock = lock_time(start, Policy())
    assert not is_locked(start, lock - SECOND, Policy())
    assert is_locked(start, lock, Policy())
    assert is_locked(start, start, Policy())
    assert is_locked(start, start + timedelta(days=1), Policy())


def test_lock_with_zero_hours_locks_at_start() -> None:
    start = datetime(2026, 5, 12, 14, 0, tzinfo=UTC)
    policy = Policy(change_lock_hours=0)
    assert not is_locked(start, start - timedelta(microseconds=1), policy)
    assert is_locked(start, start, policy)


def test_lock_across_spring_forward_is_24_real_hours() -> None:
    # 2026-03-29 09:00 in Paris is already summer time (07:00Z). 24 real hours earlier is
    # 2026-03-28 07:00Z = 08:00 winter time; wall-clock arithmetic would wrongly say 09:00.
    start = datetime(2026, 3, 29, 9, 0, tzinfo=PARIS)
    lock = lock_time(start, Policy())
    assert lock == datetime(2026, 3, 28, 7, 0, tzinfo=UTC)
    assert lock.astimezone(PARIS).replace(tzinfo=None) == datetime(2026, 3, 28, 8, 0)
    assert start - lock == timedelta(hours=24)  # aware subtraction is real elapsed time
    assert not is_locked(start, datetime(2026, 3, 28, 7, 59, 59, tzinfo=PARIS), Policy())
    assert is_locked(start, datetime(2026, 3, 28, 8, 0, tzinfo=PARIS), Policy())


def test_lock_the_day_after_spring_forward() -> None:
    # 2026-03-30 09:00 Paris = 07:00Z; 24 h earlier is 2026-03-29 07:00Z, i.e. 09:00 CEST.
    start = datetime(2026, 3, 30, 9, 0, tzinfo=PARIS)
    lock = lock_time(start, Policy())
    assert lock == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)
    assert not is_locked(start, lock - SECOND, Policy())
    assert is_locked(start, lock, Policy())


def test_lock_across_fall_back_is_24_real_hours() -> None:
    # 2026-10-25 09:00 Paris is winter time (08:00Z); the lock is 2026-10-24 08:00Z, which is
    # 10:00 summer time on the 24th, not 09:00.
    start = datetime(2026, 10, 25, 9, 0, tzinfo=PARIS)
    lock = lock_time(start, Policy())
    assert lock == datetime(2026, 10, 24, 8, 0, tzinfo=UTC)
    assert lock.astimezone(PARIS).hour == 10
    assert not is_locked(start, datetime(2026, 10, 24, 9, 59, 59, tzinfo=PARIS), Policy())
    assert is_locked(start, datetime(2026, 10, 24, 10, 0, tzinfo=PARIS), Policy())


def test_lock_seen_from_another_zone() -> None:
    # The interview is in Paris, the person asking is in New York: instants, not wall clocks.
    start = datetime(2026, 3, 29, 9, 0, tzinfo=PARIS)  # 07:00Z
    now_ny = datetime(2026, 3, 28, 3, 0, tzinfo=NEW_YORK)  # EDT (NY changed on 03-08): 07:00Z
    assert is_locked(start, now_ny, Policy())
    assert not is_locked(start, now_ny - SECOND, Policy())


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError):
        lock_time(datetime(2026, 5, 12, 14, 0), Policy())
    with pytest.raises(ValueError):
        is_locked(datetime(2026, 5, 12, 14, 0, tzinfo=UTC), datetime(2026, 5, 12), Policy())
