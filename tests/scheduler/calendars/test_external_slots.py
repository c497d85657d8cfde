"""How the slot engine treats busy times from evaluators' own calendars (pure, no database):
an interview may not overlap one, but they are not interviews."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from scheduler.availability import Availability
from scheduler.policy import Policy
from scheduler.slots import EvaluatorCalendar, find_slots, is_free

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 1, 1, tzinfo=UTC)
DAY = datetime(2026, 12, 1, tzinfo=PARIS)  # a Tuesday
HOURS = Availability.from_document(
    {"weekly": [{"day": "tue", "start": "09:00", "end": "12:00"}], "overrides": []}
)
POLICY = Policy(min_notice_hours=0, booking_horizon_days=3650, buffer_minutes=10)


def at(hour: int, minute: int = 0) -> datetime:
    return DAY.replace(hour=hour, minute=minute).astimezone(UTC)


def starts(cal: EvaluatorCalendar, policy: Policy = POLICY) -> list[str]:
    found = find_slots([cal], policy, NOW, at(0), at(23))
    return [s.start.astimezone(PARIS).strftime("%H:%M") for s in found]


def test_an_external_busy_time_blocks_overlapping_starts_without_a_buffer() -> None:
    cal = EvaluatorCalendar.build(uuid.uuid4(), PARIS, HOURS, external=[(at(10), at(11))])
    assert starts(cal) == ["09:00", "09:20", "09:40", "11:00", "11:20", "11:40"]
    assert not is_free(cal, POLICY, NOW, at(10, 40))
    # The same hour as a booking takes its buffer either side.
    booked = EvaluatorCalendar.build(uuid.uuid4(), PARIS, HOURS, busy=[(at(10), at(11))])
    assert starts(booked) == ["09:00", "09:20", "11:20", "11:40"]


def test_external_busy_times_do_not_count_towards_the_daily_maximum() -> None:
    one_a_day = Policy(
        min_notice_hours=0, booking_horizon_days=3650, max_interviews_per_evaluator_per_day=1
    )
    cal = EvaluatorCalendar.build(
        uuid.uuid4(), PARIS, HOURS, external=[(at(9), at(9, 20)), (at(11, 40), at(12))]
    )
    assert starts(cal, one_a_day) == ["09:20", "09:40", "10:00", "10:20", "10:40", "11:00", "11:20"]


def test_external_busy_times_and_bookings_together() -> None:
    cal = EvaluatorCalendar.build(
        uuid.uuid4(),
        PARIS,
        HOURS,
        busy=[(at(9), at(9, 20))],
        external=[(at(10, 30), at(10, 45)), (at(10, 40), at(11, 10))],
    )
    assert starts(cal) == ["09:40", "10:00", "11:20", "11:40"]


def test_unsorted_external_busy_times_are_refused() -> None:
    with pytest.raises(ValueError, match="sorted"):
        EvaluatorCalendar(uuid.uuid4(), PARIS, HOURS, external=((at(11), at(12)), (at(9), at(10))))
