"""An evaluator's availability and its projection onto UTC.

Availability is kept in the evaluator's own wall-clock time because that is how people state
their hours ("Mondays 09:00-12:00") and it must keep meaning exactly that on both sides of a
daylight-saving change. Only `utc_intervals` (and the slot search through `LocalClock`) turn it
into instants, one local date at a time, with zoneinfo.

Decisions worth knowing:

* Nonexistent local times (the spring-forward gap, e.g. 02:30 on 2026-03-29 in Paris) map to the
  first instant after the gap (03:00 CEST = 01:00Z). Plain `fold=0` would map 02:30 to 01:30Z,
  i.e. 03:30 CEST, which is *later* than local 03:00 maps to: an interval 02:30-03:00 would come
  out reversed. Clamping to the end of the gap keeps the mapping monotonic, so intervals never
  invert or overlap; an interval entirely inside the gap becomes empty and is dropped.
* Ambiguous local times (the autumn fold) use `fold=0`, the first occurrence: an evaluator who
  says "from 02:30" on that night is available from the first 02:30 on.
* Touching intervals of the same day (09:00-12:00 and 12:00-13:00) stay separate. Each block is
  what the evaluator typed: its slots are aligned on its own start, and an interview never
  straddles two blocks. It also keeps `from_document`/`to_document` an exact round trip.
* "24:00" (minute 1440) is the next local midnight.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

__all__ = [
    "DAY_NAMES",
    "Availability",
    "AvailabilityError",
    "Interval",
    "LocalClock",
    "from_us",
    "local_spans",
    "to_us",
    "utc_intervals",
]

MINUTES_PER_DAY = 1440
DAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = _EPOCH.date().toordinal()
_ONE_US = timedelta(microseconds=1)
_US_PER_MINUTE = 60_000_000
_US_PER_DAY = 86_400_000_000
_ONE_DAY = timedelta(days=1)

# [0-9], not \d: \d also matches non-ASCII digits, which int() would then happily accept.
_TIME_RE = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class AvailabilityError(ValueError):
    """Invalid availability input, naming the offending field so the API can point at it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, order=True)
class Interval:
    """A half-open span [start, end) of local wall-clock minutes since midnight."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end <= MINUTES_PER_DAY:
            raise ValueError(
                f"interval needs 0 <= start < end <= {MINUTES_PER_DAY}, "
                f"got {self.start}..{self.end}"
            )


class _FrozenOverrides(Mapping[date, tuple[Interval, ...]]):
    """A read-only, hashable date -> intervals mapping, so Availability can stay frozen."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[date, Sequence[Interval]] | None = None) -> None:
        items = data.items() if data is not None else ()
        self._data: dict[date, tuple[Interval, ...]] = {
            day: _normalise(intervals, str(day)) for day, intervals in sorted(items)
        }

    def __getitem__(self, key: date) -> tuple[Interval, ...]:
        return self._data[key]

    def get(self, key: date, default: Any = None) -> Any:
        # Mapping.get goes through __getitem__ and KeyError: too slow for the per-day lookup.
        return self._data.get(key, default)

    def __iter__(self) -> Iterator[date]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(tuple(self._data.items()))

    def __eq__(self, other: object) -> bool:
        return Mapping.__eq__(self, other)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"


def _normalise(intervals: Sequence[Interval], where: str) -> tuple[Interval, ...]:
    """Sort and reject overlaps: everything downstream relies on ordered, disjoint blocks."""
    ordered = tuple(sorted(intervals))
    for previous, current in pairwise(ordered):
        if current.start < previous.end:
            raise ValueError(f"{where}: overlapping intervals {previous} and {current}")
    return ordered


@dataclass(frozen=True)
class Availability:
    """Weekly hours (index 0 = Monday) plus per-date overrides, all in local wall-clock time.

    An override replaces the weekly hours of that date entirely; an empty override is a day off.
    """

    weekly: tuple[tuple[Interval, ...], ...] = ((),) * 7
    overrides: Mapping[date, tuple[Interval, ...]] = field(default_factory=_FrozenOverrides)

    def __post_init__(self) -> None:
        if len(self.weekly) != 7:
            raise ValueError(f"weekly needs 7 entries (Monday first), got {len(self.weekly)}")
        weekly = tuple(_normalise(day, DAY_NAMES[index]) for index, day in enumerate(self.weekly))
        object.__setattr__(self, "weekly", weekly)
        if not isinstance(self.overrides, _FrozenOverrides):
            object.__setattr__(self, "overrides", _FrozenOverrides(self.overrides))

    def intervals_on(self, day: date) -> tuple[Interval, ...]:
        """The hours that apply on a local date: the override if any, else the weekly hours."""
        override = self.overrides.get(day)
        return self.weekly[day.weekday()] if override is None else override

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Availability:
        """Parse the API shape, raising AvailabilityError with a path to the first bad field."""
        root = _as_object(doc, "", {"weekly", "overrides"})
        weekly = _parse_weekly(_list_at(root, "weekly", "weekly"))
        overrides = _parse_overrides(_list_at(root, "overrides", "overrides"))
        return cls(weekly=weekly, overrides=overrides)

    def to_document(self) -> dict[str, list[dict[str, Any]]]:
        """The API shape; sorted, so that equal availabilities serialise identically."""
        weekly = [
            {"day": DAY_NAMES[index], **_interval_document(interval)}
            for index, intervals in enumerate(self.weekly)
            for interval in intervals
        ]
        overrides = [
            {"date": day.isoformat(), "intervals": [_interval_document(i) for i in intervals]}
            for day, intervals in self.overrides.items()
        ]
        return {"weekly": weekly, "overrides": overrides}


# --- document parsing -----------------------------------------------------------------------


def _interval_document(interval: Interval) -> dict[str, str]:
    return {"start": _format_minutes(interval.start), "end": _format_minutes(interval.end)}


def _format_minutes(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _as_object(obj: object, path: str, allowed: set[str]) -> Mapping[str, Any]:
    """Reject unknown keys: a typo such as "overide" must not silently mean "no overrides"."""
    if not isinstance(obj, Mapping):
        raise AvailabilityError(path or "$", "must be an object")
    for key in obj:
        if key not in allowed:
            raise AvailabilityError(_join(path, str(key)), "unknown field")
    return obj


def _list_at(obj: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = obj.get(key, [])
    if not isinstance(value, list | tuple):
        raise AvailabilityError(path, "must be a list")
    return list(value)


def _parse_time(value: object, path: str, *, is_end: bool) -> int:
    if not isinstance(value, str) or not _TIME_RE.fullmatch(value):
        raise AvailabilityError(path, "must be a time in HH:MM format")
    if value == "24:00" and not is_end:
        raise AvailabilityError(path, "24:00 is only allowed as an end")
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def _parse_interval(obj: Mapping[str, Any], path: str) -> Interval:
    """Parse start/end of an object whose keys were already checked."""
    start = _parse_time(obj.get("start"), _join(path, "start"), is_end=False)
    end = _parse_time(obj.get("end"), _join(path, "end"), is_end=True)
    if start >= end:
        raise AvailabilityError(_join(path, "end"), "must be after start")
    return Interval(start, end)


def _check_overlaps(entries: list[tuple[Interval, str]]) -> None:
    """Name the entry whose start falls inside an earlier one, in time order."""
    entries.sort(key=lambda entry: entry[0])
    for (previous, previous_path), (current, current_path) in pairwise(entries):
        if current.start < previous.end:
            raise AvailabilityError(_join(current_path, "start"), f"overlaps {previous_path}")


def _parse_weekly(items: list[Any]) -> tuple[tuple[Interval, ...], ...]:
    by_day: list[list[tuple[Interval, str]]] = [[] for _ in DAY_NAMES]
    for index, item in enumerate(items):
        path = f"weekly[{index}]"
        entry = _as_object(item, path, {"day", "start", "end"})
        day = entry.get("day")
        if day not in DAY_NAMES:
            raise AvailabilityError(_join(path, "day"), f"must be one of {', '.join(DAY_NAMES)}")
        interval = _parse_interval(entry, path)
        by_day[DAY_NAMES.index(day)].append((interval, path))
    for entries in by_day:
        _check_overlaps(entries)
    return tuple(tuple(interval for interval, _ in entries) for entries in by_day)


def _parse_date(value: object, path: str) -> date:
    if isinstance(value, str) and _DATE_RE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise AvailabilityError(path, "must be a date in YYYY-MM-DD format")


def _parse_overrides(items: list[Any]) -> dict[date, tuple[Interval, ...]]:
    overrides: dict[date, tuple[Interval, ...]] = {}
    seen: dict[date, str] = {}
    for index, item in enumerate(items):
        path = f"overrides[{index}]"
        entry = _as_object(item, path, {"date", "intervals"})
        day = _parse_date(entry.get("date"), _join(path, "date"))
        if day in seen:
            raise AvailabilityError(_join(path, "date"), f"duplicate of {seen[day]}")
        seen[day] = _join(path, "date")
        intervals_path = _join(path, "intervals")
        entries: list[tuple[Interval, str]] = []
        for position, raw in enumerate(_list_at(entry, "intervals", intervals_path)):
            raw_path = f"{intervals_path}[{position}]"
            fields = _as_object(raw, raw_path, {"start", "end"})
            entries.append((_parse_interval(fields, raw_path), raw_path))
        _check_overlaps(entries)
        overrides[day] = tuple(interval for interval, _ in entries)
    return overrides


# --- UTC projection -------------------------------------------------------------------------


def to_us(instant: datetime) -> int:
    """Microseconds since the epoch: exact integers make the slot search fast and exact."""
    return (instant - _EPOCH) // _ONE_US


def from_us(us: int) -> datetime:
    """The aware UTC datetime for microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=us)


class LocalClock:
    """Local wall time -> UTC for one zone, memoised for the duration of one computation.

    Slot searches convert the same few wall times (09:00, 12:00, midnight ...) for every
    evaluator sharing a zone; memoising them keeps zoneinfo out of the hot path. It is a plain
    per-call object, never a global cache.
    """

    __slots__ = ("_memo", "tz")

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._memo: dict[int, int] = {}

    def instant_us(self, day: date, minute: int) -> int:
        """UTC microseconds of local `minute` on `day` (gap -> end of gap, fold -> first)."""
        key = day.toordinal() * MINUTES_PER_DAY + minute  # 24:00 is the next day's 00:00
        cached = self._memo.get(key)
        if cached is None:
            cached = self._memo[key] = self._convert(*divmod(key, MINUTES_PER_DAY))
        return cached

    def midnight_us(self, day: date) -> int:
        """Where a local date begins in UTC: the boundary used for per-day counting."""
        return self.instant_us(day, 0)

    def local_date(self, us: int) -> date:
        """The evaluator's local date at an instant."""
        return from_us(us).astimezone(self.tz).date()

    def _convert(self, ordinal: int, minute: int) -> int:
        wall = datetime.fromordinal(ordinal).replace(hour=minute // 60, minute=minute % 60)
        before = wall.replace(tzinfo=self.tz).utcoffset()
        after = wall.replace(tzinfo=self.tz, fold=1).utcoffset()
        assert before is not None and after is not None
        wall_us = (ordinal - _EPOCH_ORDINAL) * _US_PER_DAY + minute * _US_PER_MINUTE
        if before >= after:  # an ordinary time, or the first occurrence of a repeated one
            return wall_us - before // _ONE_US
        return self._end_of_gap(wall_us - after // _ONE_US, wall_us - before // _ONE_US)

    def _end_of_gap(self, low: int, high: int) -> int:
        """The transition instant in (low, high]: the first instant after a spring-forward gap.

        zoneinfo has no public list of transitions, so bisect on the offset; this only runs for
        nonexistent wall times, i.e. a handful of times a year.
        """
        offset_before = from_us(low).astimezone(self.tz).utcoffset()
        while high - low > 1:
            middle = (low + high) // 2
            if from_us(middle).astimezone(self.tz).utcoffset() == offset_before:
                low = middle
            else:
                high = middle
        return high


def local_spans(
    availability: Availability, clock: LocalClock, start_us: int, end_us: int
) -> list[tuple[date, int, int]]:
    """(local date, UTC start, UTC end) of every block overlapping [start_us, end_us), in order.

    Walks local dates from the local date of start-1day to that of end+1day. A block of local
    date D lies between D's two local midnights, so only the dates of start..end can overlap;
    the extra day each side is a cheap safety margin. Blocks emptied by gap clamping are dropped.
    The output is sorted and disjoint because the weekly/override blocks are and the local -> UTC
    mapping is monotonic.
    """
    if end_us <= start_us:
        return []
    day = clock.local_date(start_us - _US_PER_DAY)
    last = clock.local_date(end_us + _US_PER_DAY)
    spans: list[tuple[date, int, int]] = []
    while day <= last:
        for interval in availability.intervals_on(day):
            low = clock.instant_us(day, interval.start)
            high = clock.instant_us(day, interval.end)
            if low < high and low < end_us and high > start_us:
                spans.append((day, low, high))
        day += _ONE_DAY
    return spans


def utc_intervals(
    availability: Availability, tz: ZoneInfo, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The concrete UTC intervals overlapping [start, end), unclipped (alignment needs the ends).

    Same-day touching blocks stay separate, see the module docstring.
    """
    spans = local_spans(availability, LocalClock(tz), to_us(start), to_us(end))
    return [(from_us(low), from_us(high)) for _, low, high in spans]
