"""Availability model, its JSON document and its UTC projection across DST changes."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from scheduler.availability import (
    Availability,
    AvailabilityError,
    Interval,
    LocalClock,
    utc_intervals,
)

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # half-hour DST shift


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def every_day(*intervals: Interval) -> Availability:
    return Availability(weekly=(tuple(intervals),) * 7)


DOC: dict[str, Any] = {
    "weekly": [
        {"day": "mon", "start": "09:00", "end": "12:00"},
        {"day": "mon", "start": "14:00", "end": "17:30"},
        {"day": "wed", "start": "09:00", "end": "12:00"},
        {"day": "sun", "start": "20:00", "end": "24:00"},
    ],
    "overrides": [
        {"date": "2026-12-24", "intervals": []},
        {"date": "2026-12-31", "intervals": [{"start": "09:00", "end": "11:00"}]},
    ],
}


# --- model ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("start", "end"), [(0, 0), (10, 5), (-1, 10), (0, 1441), (600, 600)])
def test_interval_rejects_empty_or_out_of_day(start: int, end: int) -> None:
    with pytest.raises(ValueError):
        Interval(start, end)


def test_interval_accepts_whole_day() -> None:
    assert Interval(0, 1440) == Interval(0, 1440)


def test_weekly_needs_seven_days() -> None:
    with pytest.raises(ValueError):
        Availability(weekly=((),) * 6)


def test_constructor_sorts_and_rejects_overlaps() -> None:
    availability = Availability(weekly=((Interval(600, 700), Interval(60, 120)),) + ((),) * 6)
    assert availability.weekly[0] == (Interval(60, 120), Interval(600, 700))
    with pytest.raises(ValueError):
        Availability(weekly=((Interval(60, 120), Interval(100, 200)),) + ((),) * 6)
    with pytest.raises(ValueError):
        Availability(overrides={date(2026, 1, 1): (Interval(60, 120), Interval(100, 200))})


def test_intervals_on_uses_weekly_then_overrides() -> None:
    availability = Availability.from_document(DOC)
    monday = date(2026, 12, 21)
    assert availability.intervals_on(monday) == (Interval(540, 720), Interval(840, 1050))
    assert availability.intervals_on(monday + timedelta(days=1)) == ()  # tuesday: nothing
    assert availability.intervals_on(date(2026, 12, 23)) == (Interval(540, 720),)  # wednesday
    assert availability.intervals_on(date(2026, 12, 27)) == (Interval(1200, 1440),)  # sunday
    # 2026-12-24 is a Thursday with an empty override: day off.
    assert availability.intervals_on(date(2026, 12, 24)) == ()
    # 2026-12-31 is a Thursday too: the override gives it hours it normally lacks.
    assert availability.intervals_on(date(2026, 12, 31)) == (Interval(540, 660),)


def test_override_replaces_weekly_hours_entirely() -> None:
    availability = Availability(
        weekly=((Interval(540, 720), Interval(840, 1020)),) * 7,
        overrides={date(2026, 6, 1): (Interval(600, 660),)},
    )
    assert availability.intervals_on(date(2026, 6, 1)) == (Interval(600, 660),)
    assert availability.intervals_on(date(2026, 6, 2)) == (Interval(540, 720), Interval(840, 1020))


def test_availability_is_hashable_equal_and_immutable() -> None:
    first = Availability.from_document(DOC)
    second = Availability.from_document(copy.deepcopy(DOC))
    assert first == second
    assert hash(first) == hash(second)
    assert len({first, second}) == 1
    assert first != Availability.from_document({**DOC, "overrides": []})
    with pytest.raises(TypeError):
        first.overrides[date(2027, 1, 1)] = ()  # type: ignore[index]
    with pytest.raises(AttributeError):
        first.weekly = ()  # type: ignore[misc]


def test_constructor_copies_the_overrides_it_is_given() -> None:
    overrides = {date(2026, 6, 1): (Interval(600, 660),)}
    availability = Availability(overrides=overrides)
    overrides[date(2026, 6, 2)] = ()
    assert date(2026, 6, 2) not in availability.overrides
    assert dict(availability.overrides) == {date(2026, 6, 1): (Interval(600, 660),)}


# --- document -------------------------------------------------------------------------------


def test_document_round_trip_is_exact() -> None:
    availability = Availability.from_document(DOC)
    assert availability.to_document() == DOC
    assert Availability.from_document(availability.to_document()) == availability


def test_from_document_parses_values() -> None:
    availability = Availability.from_document(DOC)
    assert availability.weekly[0] == (Interval(9 * 60, 12 * 60), Interval(14 * 60, 17 * 60 + 30))
    assert availability.weekly[6] == (Interval(20 * 60, 1440),)
    assert availability.weekly[1] == availability.weekly[3] == availability.weekly[5] == ()
    assert dict(availability.overrides) == {
        date(2026, 12, 24): (),
        date(2026, 12, 31): (Interval(540, 660),),
    }


def test_from_document_sorts_intervals_and_dates() -> None:
    doc = {
        "weekly": [
            {"day": "fri", "start": "14:00", "end": "15:00"},
            {"day": "tue", "start": "10:00", "end": "11:00"},
            {"day": "fri", "start": "08:00", "end": "09:00"},
        ],
        "overrides": [
            {"date": "2026-05-02", "intervals": []},
            {
                "date": "2026-05-01",
                "intervals": [
                    {"start": "13:00", "end": "14:00"},
                    {"start": "07:00", "end": "08:00"},
                ],
            },
        ],
    }
    assert Availability.from_document(doc).to_document() == {
        "weekly": [
            {"day": "tue", "start": "10:00", "end": "11:00"},
            {"day": "fri", "start": "08:00", "end": "09:00"},
            {"day": "fri", "start": "14:00", "end": "15:00"},
        ],
        "overrides": [
            {
                "date": "2026-05-01",
                "intervals": [
                    {"start": "07:00", "end": "08:00"},
                    {"start": "13:00", "end": "14:00"},
                ],
            },
            {"date": "2026-05-02", "intervals": []},
        ],
    }


def test_touching_intervals_are_accepted_and_kept_apart() -> None:
    doc = {
        "weekly": [
            {"day": "mon", "start": "09:00", "end": "12:00"},
            {"day": "mon", "start": "12:00", "end": "13:00"},
        ]
    }
    availability = Availability.from_document(doc)
    assert availability.weekly[0] == (Interval(540, 720), Interval(720, 780))
    assert availability.to_document() == {**doc, "overrides": []}


def test_missing_lists_mean_empty() -> None:
    assert Availability.from_document({}) == Availability()
    assert Availability().to_document() == {"weekly": [], "overrides": []}


def test_midnight_bounds() -> None:
    doc = {"weekly": [{"day": "sat", "start": "00:00", "end": "24:00"}]}
    assert Availability.from_document(doc).weekly[5] == (Interval(0, 1440),)


def weekly_entry(day: str = "mon", start: Any = "09:00", end: Any = "12:00") -> dict[str, Any]:
    return {"day": day, "start": start, "end": end}


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ([], "$"),
        ({"weekly": {}}, "weekly"),
        ({"overrides": "none"}, "overrides"),
        ({"weekly": [], "overides": []}, "overides"),
        ({"weekly": ["mon"]}, "weekly[0]"),
        ({"weekly": [weekly_entry(), weekly_entry(day="Monday")]}, "weekly[1].day"),
        ({"weekly": [weekly_entry(day="MON")]}, "weekly[0].day"),
        ({"weekly": [{"start": "09:00", "end": "10:00"}]}, "weekly[0].day"),
        ({"weekly": [weekly_entry(start="9:00")]}, "weekly[0].start"),
        ({"weekly": [weekly_entry(start="09:60")]}, "weekly[0].start"),
        ({"weekly": [weekly_entry(start="09:00:00")]}, "weekly[0].start"),
        ({"weekly": [weekly_entry(start=540)]}, "weekly[0].start"),
        ({"weekly": [weekly_entry(start="\u0660\u0669:00")]}, "weekly[0].start"),
        ({"weekly": [weekly_entry(start="24:00", end="24:00")]}, "weekly[0].start"),
        ({"weekly": [weekly_entry(end="25:00")]}, "weekly[0].end"),
        ({"weekly": [weekly_entry(end="24:01")]}, "weekly[0].end"),
        ({"weekly": [weekly_entry(end=None)]}, "weekly[0].end"),
        ({"weekly": [weekly_entry(start="12:00", end="12:00")]}, "weekly[0].end"),
        ({"weekly": [weekly_entry(start="12:00", end="09:00")]}, "weekly[0].end"),
        ({"weekly": [{**weekly_entry(), "tz": "UTC"}]}, "weekly[0].tz"),
        (
            {
                "weekly": [
                    weekly_entry(day="tue"),
                    weekly_entry(day="wed", start="08:00", end="10:00"),
                    weekly_entry(day="wed", start="09:59", end="11:00"),
                ]
            },
            "weekly[2].start",
        ),
        (
            {  # the later-starting entry is named, whatever the document order
                "weekly": [
                    weekly_entry(start="10:00", end="13:00"),
                    weekly_entry(start="08:00", end="10:30"),
                ]
            },
            "weekly[0].start",
        ),
        ({"overrides": [{"date": "2026-02-30", "intervals": []}]}, "overrides[0].date"),
        ({"overrides": [{"date": "20261224", "intervals": []}]}, "overrides[0].date"),
        ({"overrides": [{"date": "2026-12-24T00:00", "intervals": []}]}, "overrides[0].date"),
        ({"overrides": [{"intervals": []}]}, "overrides[0].date"),
        (
            {
                "overrides": [
                    {"date": "2026-12-24", "intervals": []},
                    {"date": "2026-12-24", "intervals": [{"start": "09:00", "end": "10:00"}]},
                ]
            },
            "overrides[1].date",
        ),
        ({"overrides": [{"date": "2026-12-24", "intervals": {}}]}, "overrides[0].intervals"),
        (
            {
                "overrides": [
                    {
                        "date": "2026-12-24",
                        "intervals": [
                            {"start": "09:00", "end": "10:00"},
                            {"start": "11:00", "end": "10:30"},
                        ],
                    }
                ]
            },
            "overrides[0].intervals[1].end",
        ),
        (
            {
                "overrides": [
                    {
                        "date": "2026-12-24",
                        "intervals": [
                            {"start": "09:00", "end": "10:00"},
                            {"start": "09:30", "end": "10:30"},
                        ],
                    }
                ]
            },
            "overrides[0].intervals[1].start",
        ),
        (
            {"overrides": [{"date": "2026-12-24", "intervals": [{"start": "09:00"}]}]},
            "overrides[0].intervals[0].end",
        ),
        (
            {"overrides": [{"date": "2026-12-24", "intervals": [], "note": "x"}]},
            "overrides[0].note",
        ),
    ],
)
def test_from_document_names_the_offending_field(doc: Any, field: str) -> None:
    with pytest.raises(AvailabilityError) as caught:
        Availability.from_document(doc)
    assert caught.value.field == field
    assert caught.value.message
    assert str(caught.value) == f"{field}: {caught.value.message}"


def test_availability_error_is_a_value_error() -> None:
    error = AvailabilityError("weekly[2].end", "must be after start")
    assert isinstance(error, ValueError)
    assert (error.field, error.message) == ("weekly[2].end", "must be after start")


def test_duplicate_date_message_points_at_the_first_one() -> None:
    doc = {
        "overrides": [
            {"date": "2026-12-24", "intervals": []},
            {"date": "2026-12-25", "intervals": []},
            {"date": "2026-12-24", "intervals": []},
        ]
    }
    with pytest.raises(AvailabilityError) as caught:
        Availability.from_document(doc)
    assert caught.value.field == "overrides[2].date"
    assert "overrides[0].date" in caught.value.message


# --- UTC projection -------------------------------------------------------------------------

NINE_TO_NOON = Interval(9 * 60, 12 * 60)


@pytest.mark.parametrize(
    ("day", "expected_start"),
    [
        (date(2026, 3, 27), utc(2026, 3, 27, 8)),  # winter: UTC+1
        (date(2026, 3, 28), utc(2026, 3, 28, 8)),
        (date(2026, 3, 29), utc(2026, 3, 29, 7)),  # clocks went forward at 02:00
        (date(2026, 3, 30), utc(2026, 3, 30, 7)),  # summer: UTC+2
        (date(2026, 10, 24), utc(2026, 10, 24, 7)),
        (date(2026, 10, 25), utc(2026, 10, 25, 8)),  # clocks went back at 03:00
        (date(2026, 10, 26), utc(2026, 10, 26, 8)),
    ],
)
def test_paris_hours_keep_their_wall_clock_across_dst(day: date, expected_start: datetime) -> None:
    window_start = datetime.combine(day, datetime.min.time(), UTC)
    intervals = utc_intervals(
        every_day(NINE_TO_NOON), PARIS, window_start, window_start + timedelta(days=1)
    )
    assert (expected_start, expected_start + timedelta(hours=3)) in intervals
    # Converted back, every interval is 09:00-12:00 on the wall clock.
    for low, high in intervals:
        assert low.tzinfo is UTC and high.tzinfo is UTC
        assert (low.astimezone(PARIS).hour, high.astimezone(PARIS).hour) == (9, 12)
        assert high - low == timedelta(hours=3)


def test_walks_one_local_day_either_side_and_keeps_overlapping_intervals_whole() -> None:
    # [10:30Z, 10:31Z) on 2026-03-29 lies after that morning's 07:00Z-10:00Z: nothing overlaps.
    # A one-minute window at 09:59Z returns the whole interval, unclipped.
    availability = every_day(NINE_TO_NOON)
    assert (
        utc_intervals(availability, PARIS, utc(2026, 3, 29, 10, 30), utc(2026, 3, 29, 10, 31)) == []
    )
    assert utc_intervals(availability, PARIS, utc(2026, 3, 29, 9, 59), utc(2026, 3, 29, 10)) == [
        (utc(2026, 3, 29, 7), utc(2026, 3, 29, 10))
    ]
    # Half-open: an interval ending exactly at the window start is excluded, one starting
    # exactly at the window end too.
    assert utc_intervals(availability, PARIS, utc(2026, 3, 29, 10), utc(2026, 3, 30, 7)) == []


def test_week_of_intervals_is_sorted_and_complete() -> None:
    availability = every_day(Interval(8 * 60, 10 * 60), Interval(14 * 60, 15 * 60))
    intervals = utc_intervals(availability, NEW_YORK, utc(2026, 3, 5), utc(2026, 3, 11))
    starts = [low for low, _ in intervals]
    assert starts == sorted(starts)
    # NY changes on 2026-03-08: 08:00 EST = 13:00Z before, 08:00 EDT = 12:00Z from then on.
    assert (utc(2026, 3, 7, 13), utc(2026, 3, 7, 15)) in intervals
    assert (utc(2026, 3, 8, 12), utc(2026, 3, 8, 14)) in intervals
    assert (utc(2026, 3, 8, 18), utc(2026, 3, 8, 19)) in intervals
    local_days = {low.astimezone(NEW_YORK).date() for low, _ in intervals}
    # 2026-03-04 14:00 EST = 19:00Z is before the window; 03-10 14:00 EDT = 18:00Z is inside.
    assert local_days == {date(2026, 3, d) for d in range(5, 11)}
    assert len(intervals) == 12


def test_overrides_in_utc() -> None:
    availability = Availability(
        weekly=((NINE_TO_NOON,),) * 7,
        overrides={date(2026, 3, 29): (), date(2026, 3, 30): (Interval(14 * 60, 15 * 60),)},
    )
    assert utc_intervals(availability, PARIS, utc(2026, 3, 28), utc(2026, 3, 31)) == [
        (utc(2026, 3, 28, 8), utc(2026, 3, 28, 11)),
        (utc(2026, 3, 30, 12), utc(2026, 3, 30, 13)),
    ]


def test_nonexistent_start_moves_to_the_end_of_the_gap() -> None:
    # On 2026-03-29 Paris clocks jump from 02:00 to 03:00 (01:00Z). 02:30 does not exist.
    availability = every_day(Interval(2 * 60 + 30, 4 * 60))
    assert utc_intervals(availability, PARIS, utc(2026, 3, 29), utc(2026, 3, 29, 3)) == [
        (utc(2026, 3, 29, 1), utc(2026, 3, 29, 2))  # 03:00-04:00 CEST
    ]


def test_nonexistent_end_moves_to_the_end_of_the_gap() -> None:
    availability = every_day(Interval(60, 2 * 60 + 30))
    assert utc_intervals(availability, PARIS, utc(2026, 3, 29), utc(2026, 3, 29, 3)) == [
        (utc(2026, 3, 29, 0), utc(2026, 3, 29, 1))  # 01:00 CET until the jump
    ]


def test_interval_entirely_inside_the_gap_vanishes() -> None:
    availability = every_day(Interval(2 * 60 + 10, 2 * 60 + 50), Interval(5 * 60, 6 * 60))
    assert utc_intervals(availability, PARIS, utc(2026, 3, 29), utc(2026, 3, 29, 6)) == [
        (utc(2026, 3, 29, 3), utc(2026, 3, 29, 4))
    ]


def test_gap_mapping_is_monotonic_so_touching_blocks_stay_ordered() -> None:
    availability = every_day(Interval(60, 150), Interval(150, 180), Interval(180, 240))
    assert utc_intervals(availability, PARIS, utc(2026, 3, 29), utc(2026, 3, 29, 3)) == [
        (utc(2026, 3, 29, 0), utc(2026, 3, 29, 1)),  # 01:00-02:30 -> 01:00 CET to the jump
        # 02:30-03:00 is entirely in the gap: dropped rather than reversed
        (utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)),  # 03:00-04:00 CEST
    ]


def test_ambiguous_time_uses_the_first_occurrence() -> None:
    # On 2026-10-25 Paris clocks go back from 03:00 CEST to 02:00 CET (01:00Z): 02:30 happens
    # twice; the first one (CEST, 00:30Z) is used.
    availability = every_day(Interval(2 * 60 + 30, 4 * 60))
    assert utc_intervals(availability, PARIS, utc(2026, 10, 25), utc(2026, 10, 25, 5)) == [
        (utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 3))  # 2 h 30 min of real time
    ]


def test_half_hour_dst_shift() -> None:
    # Lord Howe Island moves its clocks by 30 minutes (UTC+11 in summer, +10:30 in winter);
    # 2026-04-05 02:00 local goes back to 01:30.
    availability = every_day(Interval(9 * 60, 10 * 60))
    intervals = utc_intervals(availability, LORD_HOWE, utc(2026, 4, 3), utc(2026, 4, 6))
    assert (utc(2026, 4, 3, 22), utc(2026, 4, 3, 23)) in intervals  # 09:00 on the 4th, +11
    assert (utc(2026, 4, 4, 22, 30), utc(2026, 4, 4, 23, 30)) in intervals  # 5th, +10:30


def test_end_of_day_is_next_local_midnight() -> None:
    availability = every_day(Interval(22 * 60, 1440))
    assert utc_intervals(availability, PARIS, utc(2026, 3, 28, 12), utc(2026, 3, 29, 0)) == [
        (utc(2026, 3, 28, 21), utc(2026, 3, 28, 23))  # midnight of the 29th is still CET
    ]
    assert utc_intervals(availability, PARIS, utc(2026, 10, 24, 12), utc(2026, 10, 25, 0)) == [
        (utc(2026, 10, 24, 20), utc(2026, 10, 24, 22))  # midnight of the 25th is still CEST
    ]


def test_touching_blocks_are_not_merged_in_utc() -> None:
    availability = every_day(Interval(9 * 60, 12 * 60), Interval(12 * 60, 13 * 60))
    assert utc_intervals(availability, PARIS, utc(2026, 6, 1), utc(2026, 6, 2)) == [
        (utc(2026, 6, 1, 7), utc(2026, 6, 1, 10)),
        (utc(2026, 6, 1, 10), utc(2026, 6, 1, 11)),
    ]


def test_accepts_bounds_in_any_zone() -> None:
    availability = every_day(NINE_TO_NOON)
    start = datetime(2026, 6, 1, 0, 0, tzinfo=PARIS)
    assert utc_intervals(availability, PARIS, start, start + timedelta(hours=24)) == [
        (utc(2026, 6, 1, 7), utc(2026, 6, 1, 10))
    ]


def test_local_clock_midnights() -> None:
    clock = LocalClock(PARIS)
    assert clock.midnight_us(date(2026, 3, 29)) == clock.instant_us(date(2026, 3, 28), 1440)
    day_length = clock.midnight_us(date(2026, 3, 30)) - clock.midnight_us(date(2026, 3, 29))
    assert day_length == 23 * 3600 * 10**6
    day_length = clock.midnight_us(date(2026, 10, 26)) - clock.midnight_us(date(2026, 10, 25))
    assert day_length == 25 * 3600 * 10**6
    assert clock.local_date(clock.midnight_us(date(2026, 3, 29))) == date(2026, 3, 29)
    assert clock.local_date(clock.midnight_us(date(2026, 3, 29)) - 1) == date(2026, 3, 28)
