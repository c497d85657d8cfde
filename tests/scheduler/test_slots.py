"""Slot search: DST, zones, every booking rule, evaluator choice, and property tests."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.availability import Availability, Interval, utc_intervals
from scheduler.policy import Policy
from scheduler.slots import (
    EvaluatorCalendar,
    Slot,
    choose_evaluator,
    find_slots,
    is_free,
    week_bounds,
)

PARIS = ZoneInfo("Europe/Paris")
LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
MINUTE = timedelta(minutes=1)
# Rules that stay out of the way unless a test is about them.
OPEN = Policy(min_notice_hours=0, booking_horizon_days=3650)
LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)
NINE_TO_NOON = Interval(9 * 60, 12 * 60)
NINE_SLOTS = [f"{h:02d}:{m:02d}" for h in (9, 10, 11) for m in (0, 20, 40)]


def open_policy(**changes: int) -> Policy:
    return replace(OPEN, **changes)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def at(tz: ZoneInfo, *args: int) -> datetime:
    """A local wall time as a UTC instant, converted by zoneinfo itself."""
    return datetime(*args, tzinfo=tz).astimezone(UTC)


def uid(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


def every_day(*intervals: Interval) -> Availability:
    return Availability(weekly=(tuple(intervals),) * 7)


def calendar(
    *,
    tz: ZoneInfo = PARIS,
    availability: Availability | None = None,
    busy: Iterable[tuple[datetime, datetime]] = (),
    id: uuid.UUID | None = None,
) -> EvaluatorCalendar:
    return EvaluatorCalendar.build(id or uid(1), tz, availability or every_day(NINE_TO_NOON), busy)


def local_day(tz: ZoneInfo, day: date) -> tuple[datetime, datetime]:
    """[local midnight, next local midnight) of a date, as UTC instants."""
    following = day + timedelta(days=1)
    return at(tz, day.year, day.month, day.day), at(
        tz, following.year, following.month, following.day
    )


def slots_on(
    tz: ZoneInfo,
    day: date,
    calendars: Sequence[EvaluatorCalendar],
    policy: Policy = OPEN,
    now: datetime = LONG_AGO,
    deadline: datetime | None = None,
) -> list[Slot]:
    start, end = local_day(tz, day)
    return find_slots(calendars, policy, now, start, end, deadline)


def hhmm(slots: Iterable[Slot], tz: ZoneInfo) -> list[str]:
    return [slot.start.astimezone(tz).strftime("%H:%M") for slot in slots]


def booking(tz: ZoneInfo, *args: int, minutes: int = 20) -> tuple[datetime, datetime]:
    start = at(tz, *args)
    return start, start + timedelta(minutes=minutes)


# --- daylight saving ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "first_utc"),
    [
        (date(2026, 3, 27), utc(2026, 3, 27, 8)),
        (date(2026, 3, 28), utc(2026, 3, 28, 8)),
        (date(2026, 3, 29), utc(2026, 3, 29, 7)),  # spring forward at 02:00
        (date(2026, 3, 30), utc(2026, 3, 30, 7)),
        (date(2026, 3, 31), utc(2026, 3, 31, 7)),
        (date(2026, 10, 24), utc(2026, 10, 24, 7)),
        (date(2026, 10, 25), utc(2026, 10, 25, 8)),  # fall back at 03:00
        (date(2026, 10, 26), utc(2026, 10, 26, 8)),
    ],
)
def test_paris_evaluator_keeps_nine_to_noon_around_dst(day: date, first_utc: datetime) -> None:
    slots = slots_on(PARIS, day, [calendar()])
    assert hhmm(slots, PARIS) == NINE_SLOTS
    assert [slot.start for slot in slots] == [first_utc + 20 * k * MINUTE for k in range(9)]
    assert all(slot.end - slot.start == timedelta(minutes=20) for slot in slots)
    assert all(slot.start.tzinfo is UTC and slot.end.tzinfo is UTC for slot in slots)
    assert all(slot.evaluator_ids == (uid(1),) for slot in slots)


def test_a_week_across_spring_forward_in_one_search() -> None:
    slots = find_slots([calendar()], OPEN, LONG_AGO, utc(2026, 3, 26), utc(2026, 4, 2))
    by_day: dict[date, list[str]] = defaultdict(list)
    for slot in slots:
        by_day[slot.start.astimezone(PARIS).date()].append(slot.start.strftime("%H:%M"))
    assert sorted(by_day) == [date(2026, 3, d) for d in range(26, 32)] + [date(2026, 4, 1)]
    winter = [f"{h:02d}:{m:02d}" for h in (8, 9, 10) for m in (0, 20, 40)]
    summer = [f"{h:02d}:{m:02d}" for h in (7, 8, 9) for m in (0, 20, 40)]
    assert by_day[date(2026, 3, 28)] == winter  # UTC clock times
    assert by_day[date(2026, 3, 29)] == summer


@pytest.mark.parametrize(
    ("day", "new_york_times"),
    [
        (date(2026, 3, 5), "03:00"),  # both on winter time: 6 hours apart
        (date(2026, 3, 10), "04:00"),  # New York moved on 03-08, Paris not yet: 5 hours
        (date(2026, 3, 27), "04:00"),
        (date(2026, 3, 30), "03:00"),  # both on summer time
        (date(2026, 10, 20), "03:00"),
        (date(2026, 10, 26), "04:00"),  # Paris moved back on 10-25, New York on 11-01
        (date(2026, 10, 30), "04:00"),
        (date(2026, 11, 2), "03:00"),
    ],
)
def test_new_york_candidate_sees_paris_slots_shifted(day: date, new_york_times: str) -> None:
    slots = slots_on(PARIS, day, [calendar()])
    first = datetime.strptime(new_york_times, "%H:%M")
    expected = [(first + 20 * k * MINUTE).strftime("%H:%M") for k in range(9)]
    assert hhmm(slots, NEW_YORK) == expected
    assert {slot.start.astimezone(NEW_YORK).date() for slot in slots} == {day}


def test_new_york_evaluator_on_its_own_dst_day() -> None:
    ny = calendar(tz=NEW_YORK)
    assert slots_on(NEW_YORK, date(2026, 3, 7), [ny])[0].start == utc(2026, 3, 7, 14)  # EST
    assert slots_on(NEW_YORK, date(2026, 3, 8), [ny])[0].start == utc(2026, 3, 8, 13)  # EDT
    assert hhmm(slots_on(NEW_YORK, date(2026, 3, 8), [ny]), NEW_YORK) == NINE_SLOTS
    assert slots_on(NEW_YORK, date(2026, 11, 1), [ny])[0].start == utc(2026, 11, 1, 14)  # EST


@pytest.mark.parametrize(
    ("day", "shared_utc_hours"),
    [
        (date(2026, 3, 4), (14, 15, 16)),  # Paris 14-18 = 13-17Z, New York 9-12 = 14-17Z
        (date(2026, 3, 11), (13, 14, 15)),  # New York already on EDT: 9-12 = 13-16Z
        (date(2026, 4, 1), (13, 14, 15)),  # both on summer time: Paris 12-16Z, NY 13-16Z
    ],
)
def test_evaluators_in_two_zones_share_slots(day: date, shared_utc_hours: tuple[int, ...]) -> None:
    paris = calendar(availability=every_day(Interval(14 * 60, 18 * 60)), id=uid(2))
    new_york = calendar(tz=NEW_YORK, id=uid(1))
    start = datetime.combine(day, datetime.min.time(), UTC)
    slots = find_slots([paris, new_york], OPEN, LONG_AGO, start, start + timedelta(days=1))
    shared = [slot.start for slot in slots if len(slot.evaluator_ids) == 2]
    assert shared == [
        start + timedelta(hours=h, minutes=m) for h in shared_utc_hours for m in (0, 20, 40)
    ]
    assert all(slot.evaluator_ids == (uid(1), uid(2)) for slot in slots if slot.start in shared)


def test_spring_forward_gap_start_clamps_to_three_oclock() -> None:
    cal = calendar(availability=every_day(Interval(2 * 60, 4 * 60)))
    slots = slots_on(PARIS, date(2026, 3, 29), [cal])
    assert hhmm(slots, PARIS) == ["03:00", "03:20", "03:40"]
    assert slots[0].start == utc(2026, 3, 29, 1)
    assert len(slots_on(PARIS, date(2026, 3, 28), [cal])) == 6


def test_fall_back_block_spans_the_repeated_hour() -> None:
    # 02:00-04:00 on 2026-10-25 is three real hours: 02:00 CEST (00:00Z) to 04:00 CET (03:00Z).
    cal = calendar(availability=every_day(Interval(2 * 60, 4 * 60)))
    slots = slots_on(PARIS, date(2026, 10, 25), [cal])
    assert [slot.start for slot in slots] == [utc(2026, 10, 25) + 20 * k * MINUTE for k in range(9)]


# --- the rules ------------------------------------------------------------------------------

JUNE_2 = date(2026, 6, 2)  # a Tuesday in summer time, far from any DST change


def test_overrides_day_off_and_other_hours() -> None:
    availability = Availability(
        weekly=((NINE_TO_NOON,),) * 7,
        overrides={date(2026, 6, 3): (), date(2026, 6, 4): (Interval(14 * 60 + 10, 15 * 60),)},
    )
    cal = calendar(availability=availability)
    assert hhmm(slots_on(PARIS, date(2026, 6, 2), [cal]), PARIS) == NINE_SLOTS
    assert slots_on(PARIS, date(2026, 6, 3), [cal]) == []
    assert hhmm(slots_on(PARIS, date(2026, 6, 4), [cal]), PARIS) == ["14:10", "14:30"]
    assert hhmm(slots_on(PARIS, date(2026, 6, 5), [cal]), PARIS) == NINE_SLOTS


def test_deadline_means_the_interview_is_over_by_then() -> None:
    cal = calendar()
    deadline = at(PARIS, 2026, 6, 2, 10, 0)
    assert hhmm(slots_on(PARIS, JUNE_2, [cal], deadline=deadline), PARIS) == [
        "09:00",
        "09:20",
        "09:40",  # ends exactly at the deadline
    ]
    early = deadline - MINUTE
    assert hhmm(slots_on(PARIS, JUNE_2, [cal], deadline=early), PARIS) == ["09:00", "09:20"]
    assert slots_on(PARIS, date(2026, 6, 3), [cal], deadline=deadline) == []


def test_min_notice() -> None:
    policy = Policy(booking_horizon_days=3650)  # 24 h notice
    cal = calendar()
    now = at(PARIS, 2026, 6, 1, 9, 10)
    assert hhmm(slots_on(PARIS, JUNE_2, [cal], policy, now), PARIS) == NINE_SLOTS[1:]
    exactly = at(PARIS, 2026, 6, 1, 9, 20)  # now + notice == 09:20 the next day: allowed
    assert hhmm(slots_on(PARIS, JUNE_2, [cal], policy, exactly), PARIS) == NINE_SLOTS[1:]
    later = exactly + timedelta(microseconds=1)
    assert hhmm(slots_on(PARIS, JUNE_2, [cal], policy, later), PARIS) == NINE_SLOTS[2:]
    assert hhmm(slots_on(PARIS, date(2026, 6, 1), [cal], Policy(), now), PARIS) == []


def test_horizon_is_exclusive() -> None:
    policy = Policy()  # 60 days
    cal = calendar()
    now = at(PARIS, 2026, 5, 4, 9, 20)  # horizon: 2026-07-03 09:20 CEST
    assert hhmm(slots_on(PARIS, date(2026, 7, 2), [cal], policy, now), PARIS) == NINE_SLOTS
    assert hhmm(slots_on(PARIS, date(2026, 7, 3), [cal], policy, now), PARIS) == ["09:00"]
    assert slots_on(PARIS, date(2026, 7, 4), [cal], policy, now) == []


def test_daily_cap_counts_the_evaluators_local_day() -> None:
    # A New York evening (18:00-23:00 EDT = 22:00Z-03:00Z) straddles the UTC date line.
    # Both bookings fall on local 2026-05-05 but on UTC 2026-05-06.
    availability = every_day(Interval(18 * 60, 23 * 60))
    busy = [booking(NEW_YORK, 2026, 5, 5, 20, 0), booking(NEW_YORK, 2026, 5, 5, 22, 0)]
    assert busy[0][0] == utc(2026, 5, 6, 0) and busy[1][0] == utc(2026, 5, 6, 2)
    evening = [f"{h}:{m:02d}" for h in range(18, 23) for m in (0, 20, 40)]

    capped = [calendar(tz=NEW_YORK, availability=availability, busy=busy)]
    policy = open_policy(max_interviews_per_evaluator_per_day=2)
    assert hhmm(slots_on(NEW_YORK, date(2026, 5, 4), capped, policy), NEW_YORK) == evening
    assert slots_on(NEW_YORK, date(2026, 5, 5), capped, policy) == []
    assert hhmm(slots_on(NEW_YORK, date(2026, 5, 6), capped, policy), NEW_YORK) == evening

    roomy = open_policy(max_interviews_per_evaluator_per_day=3)
    free = hhmm(slots_on(NEW_YORK, date(2026, 5, 5), capped, roomy), NEW_YORK)
    assert free == ["18:00", "18:20", "18:40", "19:00", "19:20", "20:40", "21:00", "21:20", "22:40"]


def test_daily_cap_counts_bookings_outside_the_hours_too() -> None:
    busy = [booking(PARIS, 2026, 6, 2, 7, 0), booking(PARIS, 2026, 6, 2, 23, 30)]
    cal = calendar(busy=busy)
    policy = open_policy(max_interviews_per_evaluator_per_day=2)
    assert slots_on(PARIS, JUNE_2, [cal], policy) == []
    assert len(slots_on(PARIS, date(2026, 6, 3), [cal], policy)) == 9


def test_daily_cap_zero_closes_everything() -> None:
    policy = open_policy(max_interviews_per_evaluator_per_day=0)
    assert slots_on(PARIS, JUNE_2, [calendar()], policy) == []


def test_buffer_keeps_interviews_apart() -> None:
    cal = calendar(busy=[booking(PARIS, 2026, 6, 2, 10, 0)])
    step10 = open_policy(slot_step_minutes=10)
    free = hhmm(slots_on(PARIS, JUNE_2, [cal], step10), PARIS)
    # Blocked: s < 10:20 + 10 min and 10:00 < s + 20 + 10 min, i.e. 09:30 < s < 10:30.
    assert "09:30" in free and "10:30" in free
    assert not {"09:40", "09:50", "10:00", "10:10", "10:20"} & set(free)
    assert len(free) == 17 - 5

    no_buffer = open_policy(slot_step_minutes=10, buffer_minutes=0)
    free = hhmm(slots_on(PARIS, JUNE_2, [cal], no_buffer), PARIS)
    assert "09:40" in free and "10:20" in free  # back to back is fine without a buffer
    assert not {"09:50", "10:00", "10:10"} & set(free)


def test_booking_just_before_the_hours_blocks_through_the_buffer() -> None:
    cal = calendar(busy=[booking(PARIS, 2026, 6, 2, 8, 40)])  # ends 09:00, +10 min buffer
    assert hhmm(slots_on(PARIS, JUNE_2, [cal]), PARIS) == NINE_SLOTS[1:]


def test_overlapping_and_nested_bookings() -> None:
    busy = [booking(PARIS, 2026, 6, 2, 9, 0, minutes=120), booking(PARIS, 2026, 6, 2, 9, 20)]
    cal = calendar(busy=busy)
    # The long booking ends at 11:00 (+10 min buffer), the nested one does not shorten it.
    assert hhmm(slots_on(PARIS, JUNE_2, [cal]), PARIS) == ["11:20", "11:40"]


def test_slots_are_aligned_on_each_blocks_start() -> None:
    cal = calendar(availability=every_day(Interval(9 * 60 + 10, 10 * 60 + 30)))
    assert hhmm(slots_on(PARIS, JUNE_2, [cal]), PARIS) == ["09:10", "09:30", "09:50", "10:10"]
    step30 = open_policy(slot_step_minutes=30)
    assert hhmm(slots_on(PARIS, JUNE_2, [cal], step30), PARIS) == ["09:10", "09:40", "10:10"]


def test_longer_interview_must_fit_in_the_block() -> None:
    policy = open_policy(interview_minutes=45)
    slots = slots_on(PARIS, JUNE_2, [calendar()], policy)
    assert hhmm(slots, PARIS) == NINE_SLOTS[:7]  # 11:00 + 45 min <= 12:00 < 11:20 + 45 min
    assert slots[0].end - slots[0].start == timedelta(minutes=45)


def test_alignment_survives_a_misaligned_booking() -> None:
    cal = calendar(busy=[(at(PARIS, 2026, 6, 2, 9, 35), at(PARIS, 2026, 6, 2, 9, 55))])
    # Blocked for 09:05 < s < 10:05; the next start is on the grid (10:20), not at 10:05.
    free = ["09:00", "10:20", "10:40", "11:00", "11:20", "11:40"]
    assert hhmm(slots_on(PARIS, JUNE_2, [cal]), PARIS) == free


def test_touching_blocks_are_separate_grids() -> None:
    availability = every_day(Interval(9 * 60, 9 * 60 + 50), Interval(9 * 60 + 50, 11 * 60))
    cal = calendar(availability=availability)
    # No 09:40: it would straddle both blocks. The second block starts its own grid at 09:50.
    assert hhmm(slots_on(PARIS, JUNE_2, [cal]), PARIS) == [
        "09:00",
        "09:20",
        "09:50",
        "10:10",
        "10:30",
    ]


def test_range_is_half_open() -> None:
    start, end = at(PARIS, 2026, 6, 2, 9, 20), at(PARIS, 2026, 6, 2, 10, 20)
    slots = find_slots([calendar()], OPEN, LONG_AGO, start, end)
    assert hhmm(slots, PARIS) == ["09:20", "09:40", "10:00"]
    assert find_slots([calendar()], OPEN, LONG_AGO, end, start) == []
    assert find_slots([], OPEN, LONG_AGO, start, end) == []


def test_several_evaluators_merge_into_one_slot() -> None:
    first, second = uid(0xA), uid(0xB)
    busy_first = calendar(id=first, busy=[booking(PARIS, 2026, 6, 2, 10, 0)])
    london = calendar(id=second, tz=LONDON, availability=every_day(Interval(8 * 60, 11 * 60)))
    slots = slots_on(PARIS, JUNE_2, [london, busy_first])  # input order does not matter
    assert hhmm(slots, PARIS) == NINE_SLOTS
    ids = {slot.start.astimezone(PARIS).strftime("%H:%M"): slot.evaluator_ids for slot in slots}
    assert ids["09:00"] == (first, second)
    assert ids["09:40"] == ids["10:00"] == ids["10:20"] == (second,)
    assert ids["10:40"] == (first, second)


def test_evaluator_ids_are_sorted_by_string() -> None:
    ids = [uuid.uuid4() for _ in range(6)]
    slots = slots_on(PARIS, JUNE_2, [calendar(id=i) for i in ids])
    assert all(slot.evaluator_ids == tuple(sorted(ids, key=str)) for slot in slots)


def test_duplicate_evaluators_and_naive_times_are_rejected() -> None:
    with pytest.raises(ValueError):
        find_slots([calendar(), calendar()], OPEN, LONG_AGO, utc(2026, 6, 1), utc(2026, 6, 2))
    with pytest.raises(ValueError):
        find_slots([calendar()], OPEN, datetime(2026, 1, 1), utc(2026, 6, 1), utc(2026, 6, 2))
    with pytest.raises(ValueError):
        is_free(calendar(), OPEN, LONG_AGO, utc(2026, 6, 2, 7), datetime(2026, 7, 1))
    with pytest.raises(ValueError):
        is_free(calendar(), OPEN, LONG_AGO, datetime(2026, 6, 2, 7))


# --- is_free ---------------------------------------------------------------------------------


def test_is_free_applies_the_same_rules() -> None:
    cal = calendar(busy=[booking(PARIS, 2026, 6, 2, 10, 0)])
    assert is_free(cal, OPEN, LONG_AGO, at(PARIS, 2026, 6, 2, 9, 0))
    assert not is_free(cal, OPEN, LONG_AGO, at(PARIS, 2026, 6, 2, 9, 10))  # off the grid
    assert not is_free(cal, OPEN, LONG_AGO, at(PARIS, 2026, 6, 2, 10, 0))  # booked
    assert not is_free(cal, OPEN, LONG_AGO, at(PARIS, 2026, 6, 2, 9, 40))  # buffer
    assert is_free(cal, OPEN, LONG_AGO, at(PARIS, 2026, 6, 2, 11, 40))
    assert not is_free(cal, OPEN, LONG_AGO, at(PARIS, 2026, 6, 2, 12, 0))  # outside the hours
    eleven_forty = at(PARIS, 2026, 6, 2, 11, 40)
    assert is_free(cal, OPEN, LONG_AGO, eleven_forty, deadline=at(PARIS, 2026, 6, 2, 12, 0))
    assert not is_free(cal, OPEN, LONG_AGO, eleven_forty, deadline=at(PARIS, 2026, 6, 2, 11, 59))
    now = at(PARIS, 2026, 6, 1, 11, 0)
    assert not is_free(cal, Policy(), now, at(PARIS, 2026, 6, 2, 9, 0))  # min notice
    assert is_free(cal, Policy(), now, at(PARIS, 2026, 6, 2, 11, 0))
    assert not is_free(cal, Policy(), LONG_AGO, at(PARIS, 2026, 6, 2, 11, 0))  # horizon
    capped = open_policy(max_interviews_per_evaluator_per_day=1)
    assert not is_free(cal, capped, LONG_AGO, at(PARIS, 2026, 6, 2, 11, 0))
    assert is_free(cal, capped, LONG_AGO, at(PARIS, 2026, 6, 3, 11, 0))


def test_is_free_on_dst_days_matches_local_hours() -> None:
    cal = calendar()
    assert is_free(cal, OPEN, LONG_AGO, utc(2026, 3, 29, 7))  # 09:00 CEST
    assert not is_free(cal, OPEN, LONG_AGO, utc(2026, 3, 29, 10))  # 12:00 CEST
    assert is_free(cal, OPEN, LONG_AGO, utc(2026, 10, 25, 10, 40))  # 11:40 CET
    assert not is_free(cal, OPEN, LONG_AGO, utc(2026, 10, 25, 7))  # 08:00 CET


# --- calendars, choice of evaluator, weeks ---------------------------------------------------


def test_calendar_requires_sorted_busy_and_build_sorts() -> None:
    late, early = booking(PARIS, 2026, 6, 2, 11, 0), booking(PARIS, 2026, 6, 2, 9, 0)
    with pytest.raises(ValueError):
        EvaluatorCalendar(uid(1), PARIS, every_day(NINE_TO_NOON), (late, early))
    built = EvaluatorCalendar.build(uid(1), PARIS, every_day(NINE_TO_NOON), [late, early])
    assert built.busy == (early, late)
    local = (datetime(2026, 6, 2, 9, tzinfo=PARIS), datetime(2026, 6, 2, 9, 20, tzinfo=PARIS))
    converted = EvaluatorCalendar.build(uid(1), PARIS, every_day(NINE_TO_NOON), [local])
    assert converted.busy == ((utc(2026, 6, 2, 7), utc(2026, 6, 2, 7, 20)),)
    assert converted.busy[0][0].tzinfo is UTC
    assert converted == EvaluatorCalendar(uid(1), PARIS, every_day(NINE_TO_NOON), (early,))
    assert hash(converted) == hash(
        EvaluatorCalendar.build(uid(1), PARIS, every_day(NINE_TO_NOON), [early])
    )


def test_choose_evaluator_prefers_the_least_loaded() -> None:
    a, b, c, d, e = (uuid.UUID(f"{n}" * 32) for n in "abcde")
    counts = {a: 2, b: 0, c: 2, d: 1}  # e has no booking that week
    start = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    order = choose_evaluator([c, a, e, d, b], counts, start)
    assert set(order[:2]) == {b, e} and order[2] == d and set(order[3:]) == {a, c}
    assert choose_evaluator([], counts, start) == []
    assert sorted(choose_evaluator([e, b], {}, start)) == [b, e]


def test_choose_evaluator_draws_among_equals_per_start() -> None:
    """Among equally loaded evaluators: one order for one start, whoever asks and however
    they are listed; across starts, each is first about as often as the others, where a
    fixed tie-break made the same one first every time."""
    ids = [uuid.UUID(int=n * 7919 + 1) for n in range(4)]
    counts = dict.fromkeys(ids, 3)
    starts = [
        datetime(2026, 12, 1, 8, 0, tzinfo=UTC) + timedelta(minutes=20 * n) for n in range(400)
    ]
    for start in starts[:20]:
        assert choose_evaluator(ids, counts, start) == choose_evaluator(ids[::-1], counts, start)
    firsts = Counter(choose_evaluator(ids, counts, start)[0] for start in starts)
    assert set(firsts) == set(ids)
    assert min(firsts.values()) >= 60, firsts  # 100 each on average
    # The load still comes first: one booking fewer puts an evaluator first at every start.
    lighter = {**counts, ids[2]: 2}
    assert all(choose_evaluator(ids, lighter, start)[0] == ids[2] for start in starts)


@pytest.mark.parametrize(
    ("instant", "monday"),
    [
        (utc(2026, 3, 11, 15, 0), utc(2026, 3, 9)),
        (utc(2026, 3, 9, 0, 0), utc(2026, 3, 9)),
        (utc(2026, 3, 15, 23, 59, 59), utc(2026, 3, 9)),
        (utc(2026, 3, 16, 0, 0), utc(2026, 3, 16)),
        (datetime(2026, 3, 16, 0, 30, tzinfo=PARIS), utc(2026, 3, 9)),  # Sunday 23:30Z
        (datetime(2026, 3, 15, 21, 0, tzinfo=NEW_YORK), utc(2026, 3, 16)),  # Monday 01:00Z
        (utc(2026, 12, 31, 12), utc(2026, 12, 28)),
    ],
)
def test_week_bounds_is_the_utc_iso_week(instant: datetime, monday: datetime) -> None:
    start, end = week_bounds(instant)
    assert (start, end) == (monday, monday + timedelta(days=7))
    assert start.tzinfo is UTC and start.weekday() == 0
    assert start <= instant < end


def test_week_bounds_rejects_naive() -> None:
    with pytest.raises(ValueError):
        week_bounds(datetime(2026, 3, 11))


# --- properties ------------------------------------------------------------------------------

ZONES = [
    ZoneInfo(name)
    for name in (
        "UTC",
        "Europe/Paris",
        "America/New_York",
        "Asia/Kolkata",
        "Australia/Lord_Howe",  # 30-minute DST shift
        "America/Havana",  # DST changes at midnight
    )
]
# Dates with clock changes in those zones, plus an ordinary one.
ANCHORS = [
    date(2026, 3, 8),
    date(2026, 3, 29),
    date(2026, 4, 5),
    date(2026, 6, 15),
    date(2026, 10, 4),
    date(2026, 10, 25),
    date(2026, 11, 1),
]


@dataclass(frozen=True)
class Scenario:
    calendars: tuple[EvaluatorCalendar, ...]
    policy: Policy
    now: datetime
    start: datetime
    end: datetime
    deadline: datetime | None


@st.composite
def day_hours(draw: st.DrawFn) -> tuple[Interval, ...]:
    # Whole hours half of the time, so that evaluators often share a grid and merge.
    minute = st.integers(0, 24).map(lambda hour: hour * 60) | st.integers(0, 1440)
    points = sorted(set(draw(st.lists(minute, max_size=6))))
    pairs = list(pairwise(points))  # touching pairs are possible, overlapping ones are not
    return tuple(
        Interval(*pair) for index, pair in enumerate(pairs) if index % 2 == 0 or draw(st.booleans())
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    anchor = draw(st.sampled_from(ANCHORS))
    origin = datetime.combine(anchor, datetime.min.time(), UTC)

    def instant(low_minutes: int, high_minutes: int) -> datetime:
        minutes = draw(st.integers(low_minutes, high_minutes))
        return origin + timedelta(minutes=minutes, seconds=draw(st.sampled_from([0, 0, 0, 17])))

    calendars = []
    for number in range(draw(st.integers(1, 3))):
        weekly = tuple(draw(day_hours() | st.just((Interval(8 * 60, 18 * 60),))) for _ in range(7))
        override_days = draw(st.lists(st.integers(-3, 4), max_size=3, unique=True))
        overrides = {anchor + timedelta(days=d): draw(day_hours()) for d in override_days}
        busy = [
            (start, start + timedelta(minutes=draw(st.integers(1, 120))))
            for start in (instant(-2 * 1440, 5 * 1440) for _ in range(draw(st.integers(0, 12))))
        ]
        calendars.append(
            EvaluatorCalendar.build(
                uuid.UUID(int=draw(st.integers(0, 2**128 - 1)) if number else 7),
                draw(st.sampled_from(ZONES)),
                Availability(weekly=weekly, overrides=overrides),
                busy,
            )
        )
    policy = Policy(
        interview_minutes=draw(st.sampled_from([10, 15, 20, 30, 45])),
        buffer_minutes=draw(st.sampled_from([0, 5, 10, 15])),
        slot_step_minutes=draw(st.sampled_from([5, 10, 15, 20, 30])),
        min_notice_hours=draw(st.sampled_from([0, 1, 24])),
        booking_horizon_days=draw(st.sampled_from([1, 2, 60, 60])),
        max_interviews_per_evaluator_per_day=draw(st.sampled_from([0, 1, 2, 3, 8, 8])),
    )
    start = instant(-1440, 1440)
    length = st.sampled_from([1440, 2 * 1440, 3 * 1440]) | st.integers(0, 3 * 1440)
    end = start + timedelta(minutes=draw(length))
    deadline = instant(0, 4 * 1440) if draw(st.integers(0, 2)) == 0 else None
    # Mostly before the range (the usual case), sometimes inside or after it.
    now = start - timedelta(
        minutes=draw(st.integers(-1440, 3 * 1440)), seconds=draw(st.sampled_from([0, 0, 29]))
    )
    return Scenario(
        tuple({c.id: c for c in calendars}.values()),
        policy,
        now,
        start,
        end,
        deadline,
    )


def run(scenario: Scenario) -> list[Slot]:
    s = scenario
    return find_slots(s.calendars, s.policy, s.now, s.start, s.end, s.deadline)


def grid_points(scenario: Scenario, cal: EvaluatorCalendar) -> list[datetime]:
    """Every aligned start inside the evaluator's blocks and the range, free or not."""
    interview, step = scenario.policy.interview, scenario.policy.step
    points = []
    for low, high in utc_intervals(cal.availability, cal.tz, scenario.start, scenario.end):
        s = low
        while s + interview <= high:
            if scenario.start <= s < scenario.end:
                points.append(s)
            s += step
    return points


def reference_free(scenario: Scenario, cal: EvaluatorCalendar) -> set[datetime]:
    """A deliberately naive restatement of the rules, to check the optimised search against."""
    policy, now, deadline = scenario.policy, scenario.now, scenario.deadline
    per_day = Counter(booking_start.astimezone(cal.tz).date() for booking_start, _ in cal.busy)
    return {
        s
        for s in grid_points(scenario, cal)
        if now + policy.min_notice <= s < now + policy.horizon
        and (deadline is None or s + policy.interview <= deadline)
        and per_day[s.astimezone(cal.tz).date()] < policy.max_interviews_per_evaluator_per_day
        and not any(
            s < booking_end + policy.buffer and booking_start < s + policy.interview + policy.buffer
            for booking_start, booking_end in cal.busy
        )
    }


def wall_minutes(local: datetime) -> float:
    return local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60


def inside_local_hours(cal: EvaluatorCalendar, start: datetime, end: datetime) -> bool:
    """Check on the evaluator's wall clock that [start, end) lies in one block of its day.

    The start is compared on a clock that does not go back: during a repeated hour (fold=1)
    the wall time is shifted by the fold length, since those instants come after the first
    pass. The end is compared via the last instant, whose plain wall time is monotonic.
    """
    first = start.astimezone(cal.tz)
    last = (end - timedelta(microseconds=1)).astimezone(cal.tz)
    if first.date() != last.date():
        return False
    start_wall = wall_minutes(first)
    if first.fold:
        folded = first.replace(fold=0).utcoffset() - first.utcoffset()  # type: ignore[operator]
        start_wall += folded / MINUTE
    end_wall = wall_minutes(last)
    return any(
        block.start <= start_wall and end_wall < block.end
        for block in cal.availability.intervals_on(first.date())
    )


PROPERTY = settings(max_examples=200, deadline=None, database=None)


@pytest.mark.slow
@PROPERTY
@given(scenarios())
def test_property_slots_never_collide_with_bookings(scenario: Scenario) -> None:
    by_id = {cal.id: cal for cal in scenario.calendars}
    interview, buffer = scenario.policy.interview, scenario.policy.buffer
    for slot in run(scenario):
        assert slot.end == slot.start + interview
        for evaluator in slot.evaluator_ids:
            for booking_start, booking_end in by_id[evaluator].busy:
                assert not (slot.start < booking_end + buffer and booking_start < slot.end + buffer)


@pytest.mark.slow
@PROPERTY
@given(scenarios())
def test_property_slots_lie_in_local_availability(scenario: Scenario) -> None:
    by_id = {cal.id: cal for cal in scenario.calendars}
    slots = run(scenario)
    assert [slot.start for slot in slots] == sorted({slot.start for slot in slots})
    for slot in slots:
        assert scenario.start <= slot.start < scenario.end
        assert slot.evaluator_ids == tuple(sorted(slot.evaluator_ids, key=str))
        for evaluator in slot.evaluator_ids:
            assert inside_local_hours(by_id[evaluator], slot.start, slot.end)


@pytest.mark.slow
@PROPERTY
@given(scenarios(), st.lists(st.floats(0, 1, exclude_max=True), max_size=5))
def test_property_is_free_agrees_with_find_slots(scenario: Scenario, where: list[float]) -> None:
    offered = {
        (slot.start, evaluator) for slot in run(scenario) for evaluator in slot.evaluator_ids
    }
    s = scenario
    # find_slots only looks inside [start, end); so do the probes.
    anywhere = [s.start + (s.end - s.start) * fraction for fraction in where]
    for cal in s.calendars:
        probes = grid_points(s, cal) + [probe for probe in anywhere if probe < s.end]
        for probe in probes:
            expected = (probe, cal.id) in offered
            assert is_free(cal, s.policy, s.now, probe, s.deadline) == expected, probe
        for start, evaluator in offered:
            if evaluator == cal.id:
                assert is_free(cal, s.policy, s.now, start, s.deadline)


@pytest.mark.slow
@PROPERTY
@given(scenarios())
def test_property_matches_a_naive_reference(scenario: Scenario) -> None:
    expected: dict[datetime, list[uuid.UUID]] = defaultdict(list)
    for cal in sorted(scenario.calendars, key=lambda c: str(c.id)):
        for s in reference_free(scenario, cal):
            expected[s].append(cal.id)
    got = {slot.start: list(slot.evaluator_ids) for slot in run(scenario)}
    assert got == dict(expected)
