"""Which interview start times can be offered, and to whom a chosen time goes.

The candidate picks a time, not a person: a `Slot` is a start time together with every qualified
evaluator free then, and `choose_evaluator` decides afterwards who gets it.

`find_slots` and `is_free` share one per-evaluator routine (`_free_starts`), so a time offered on
the page is exactly a time the booking transaction will accept. Internally instants are integer
microseconds since the epoch: it is exact, and it keeps the hot loop free of datetime objects,
which matters because a page shows a month for dozens of evaluators.
"""

from __future__ import annotations

import uuid
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from hashlib import blake2b
from itertools import accumulate
from operator import le
from zoneinfo import ZoneInfo

from scheduler.availability import Availability, LocalClock, from_us, local_spans, to_us
from scheduler.policy import Policy

__all__ = [
    "EvaluatorCalendar",
    "FreeStarts",
    "Slot",
    "choose_evaluator",
    "find_slots",
    "free_starts",
    "is_free",
    "week_bounds",
    "window",
]

_US_PER_MINUTE = 60_000_000
_US_PER_HOUR = 60 * _US_PER_MINUTE
_US_PER_DAY = 24 * _US_PER_HOUR
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_ONE_DAY = timedelta(days=1)

Busy = tuple[tuple[datetime, datetime], ...]


@dataclass(frozen=True)
class EvaluatorCalendar:
    """What the slot search needs to know about one evaluator.

    `busy` holds the evaluator's active bookings as aware (start, end) pairs and MUST be sorted
    by start: the search bisects it. The constructor checks the order (one linear pass) rather
    than let an unsorted list silently produce wrong slots; `EvaluatorCalendar.build` sorts.
    The bookings are also turned into integer microseconds once here, so that every search over
    this calendar (a month view, then the re-check at booking time) reuses them.

    `external` holds the evaluator's busy times read from their own calendars
    (scheduler.external_calendars), sorted likewise: an interview may not overlap one, but
    they are not interviews, so they take no buffer and do not count towards the daily cap.
    """

    id: uuid.UUID
    tz: ZoneInfo
    availability: Availability
    busy: Busy = ()
    external: Busy = ()
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _ends: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        starts = tuple([(start - _EPOCH) // _ONE_US for start, _ in self.busy])
        if not all(map(le, starts, starts[1:])):
            raise ValueError("busy must be sorted by start; use EvaluatorCalendar.build")
        object.__setattr__(self, "_starts", starts)
        object.__setattr__(
            self, "_ends", tuple([(end - _EPOCH) // _ONE_US for _, end in self.busy])
        )
        if any(a[0] > b[0] for a, b in zip(self.external, self.external[1:], strict=False)):
            raise ValueError("external must be sorted by start; use EvaluatorCalendar.build")

    @classmethod
    def build(
        cls,
        id: uuid.UUID,
        tz: ZoneInfo,
        availability: Availability,
        busy: Iterable[tuple[datetime, datetime]] = (),
        external: Iterable[tuple[datetime, datetime]] = (),
    ) -> EvaluatorCalendar:
        """Normalise bookings to UTC and sort them, for callers holding them in any order."""
        ordered = sorted((start.astimezone(UTC), end.astimezone(UTC)) for start, end in busy)
        others = sorted((start.astimezone(UTC), end.astimezone(UTC)) for start, end in external)
        return cls(
            id=id, tz=tz, availability=availability, busy=tuple(ordered), external=tuple(others)
        )


@dataclass(frozen=True)
class Slot:
    """An offerable start time and the free evaluators then, ordered by str(id)."""

    start: datetime
    end: datetime
    evaluator_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True, slots=True)
class _Rules:
    """The policy in microseconds plus the search window, computed once per call."""

    interview: int
    buffer: int
    step: int
    daily_cap: int
    low: int  # first admissible start (inclusive)
    high: int  # admissible starts are < high

    @classmethod
    def of(
        cls,
        policy: Policy,
        now: datetime,
        start: datetime,
        end: datetime,
        deadline: datetime | None,
    ) -> _Rules:
        """Fold notice, horizon and deadline into one window so each start is tested once."""
        for name, value in (("now", now), ("start", start), ("end", end), ("deadline", deadline)):
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware")
        now_us = to_us(now)
        interview = policy.interview_minutes * _US_PER_MINUTE
        high = min(to_us(end), now_us + policy.booking_horizon_days * _US_PER_DAY)
        if deadline is not None:  # s + interview <= deadline  <=>  s < deadline - interview + 1
            high = min(high, to_us(deadline) - interview + 1)
        return cls(
            interview=interview,
            buffer=policy.buffer_minutes * _US_PER_MINUTE,
            step=policy.slot_step_minutes * _US_PER_MINUTE,
            daily_cap=policy.max_interviews_per_evaluator_per_day,
            low=max(to_us(start), now_us + policy.min_notice_hours * _US_PER_HOUR),
            high=high,
        )


def _align_up(value: int, origin: int, step: int) -> int:
    """The first point origin + k*step (k >= 0) at or after value."""
    if value <= origin:
        return origin
    return origin - (origin - value) // step * step


def _blocked_zones(calendar: EvaluatorCalendar, rules: _Rules) -> tuple[list[int], list[int]]:
    """Open ranges (low, high) of starts that collide with a booking, and their running max.

    A start s is blocked by booking (bs, be) iff s < be + buffer and bs < s + interview + buffer,
    the same condition the database constraint uses, i.e. s in (bs - interview - buffer,
    be + buffer). Lows are sorted because bookings are; the running maximum of highs makes
    "is s blocked" one bisect even when bookings overlap or nest.
    """
    before = rules.interview + rules.buffer
    lows = [start - before for start in calendar._starts]
    ends = [end + rules.buffer for end in calendar._ends]
    if calendar.external:
        # An external busy time (es, ee) blocks s iff s < ee and es < s + interview.
        zones = sorted(
            [
                *zip(lows, ends, strict=True),
                *((to_us(start) - rules.interview, to_us(end)) for start, end in calendar.external),
            ]
        )
        lows = [low for low, _ in zones]
        ends = [high for _, high in zones]
    highs = list(accumulate(ends, max))
    return lows, highs


def _full_days(
    calendar: EvaluatorCalendar, rules: _Rules, clock: LocalClock, days: Iterable[date]
) -> set[date]:
    """The local dates among `days` already holding the daily maximum of bookings.

    A day is the evaluator's local date: the bookings starting between its two local midnights.
    """
    starts = calendar._starts
    if len(starts) < rules.daily_cap:
        return set()
    full: set[date] = set()
    for day in days:
        begin = bisect_left(starts, clock.midnight_us(day))
        end = bisect_left(starts, clock.midnight_us(day + _ONE_DAY), begin)
        if end - begin >= rules.daily_cap:
            full.add(day)
    return full


def _free_starts(calendar: EvaluatorCalendar, rules: _Rules, clock: LocalClock) -> list[int]:
    """Every admissible start in the window at which this evaluator is free, ascending.

    The single implementation of the "free" rules, used by both find_slots and is_free. It walks
    each availability block's step grid, jumping over blocked zones instead of testing every
    grid point against every booking.
    """
    if rules.low >= rules.high:
        return []
    spans = local_spans(calendar.availability, clock, rules.low, rules.high)
    if not spans:
        return []
    full_days = _full_days(calendar, rules, clock, {day for day, _, _ in spans})
    lows, highs = _blocked_zones(calendar, rules)
    free: list[int] = []
    for day, origin, span_end in spans:
        if day not in full_days:
            first = _align_up(rules.low, origin, rules.step)
            last = min(span_end - rules.interview, rules.high - 1)
            _sweep_grid(free, first, last, origin, rules.step, lows, highs)
    return free


def _sweep_grid(
    free: list[int],
    s: int,
    last: int,
    origin: int,
    step: int,
    lows: list[int],
    highs: list[int],
) -> None:
    """Append the unblocked points origin + k*step in [s, last] to `free`.

    Runs of free points are emitted with range(), and every blocked zone is crossed in one jump,
    so the cost grows with the number of bookings, not with the number of grid points.
    """
    zones = len(lows)
    while s <= last:
        zone = bisect_left(lows, s)  # zones [0, zone) open before s; highs[zone-1] is their max
        if zone and highs[zone - 1] > s:  # s is blocked: jump past the zones covering it
            s = origin - (origin - highs[zone - 1]) // step * step
            continue
        if zone == zones or lows[zone] >= last:
            free.extend(range(s, last + 1, step))
            return
        free.extend(range(s, lows[zone] + 1, step))  # a zone's own low is still free
        # Everything in (lows[zone], highs[zone]) is blocked: highs is a running maximum.
        s = origin - (origin - highs[zone]) // step * step


@dataclass(frozen=True, slots=True)
class FreeStarts:
    """Every start in a window at which some evaluator is free, before anyone's own limits.

    Parallel lists, `starts` ascending (integer microseconds since the epoch) and for each the
    free evaluators ordered by str(id): no per-slot object, so one computation can be kept and
    sliced for every candidate who asks (scheduler.free_times). Freedom of a start does not
    depend on the window it was searched in (the grid is aligned on availability blocks, the
    buffers and daily caps on bookings), so a slice equals a search of the smaller window.
    """

    starts: list[int]
    evaluators: list[tuple[uuid.UUID, ...]]

    def between(self, low: int, high: int) -> tuple[int, int]:
        """The index range of the starts in [low, high)."""
        first = bisect_left(self.starts, low)
        return first, max(first, bisect_left(self.starts, high, first))


def _merge(calendars: Iterable[EvaluatorCalendar], rules: _Rules) -> FreeStarts:
    ordered = sorted(calendars, key=lambda calendar: str(calendar.id))
    if len({calendar.id for calendar in ordered}) != len(ordered):
        raise ValueError("each evaluator may appear only once")
    clocks: dict[ZoneInfo, LocalClock] = {}
    evaluators_at: dict[int, list[uuid.UUID]] = {}
    for calendar in ordered:
        clock = clocks.get(calendar.tz)
        if clock is None:
            clock = clocks[calendar.tz] = LocalClock(calendar.tz)
        for s in _free_starts(calendar, rules, clock):
            ids = evaluators_at.get(s)
            if ids is None:
                evaluators_at[s] = [calendar.id]
            else:
                ids.append(calendar.id)
    starts = sorted(evaluators_at)
    return FreeStarts(starts, [tuple(evaluators_at[s]) for s in starts])


def free_starts(
    calendars: Iterable[EvaluatorCalendar], policy: Policy, start: datetime, end: datetime
) -> FreeStarts:
    """The starts in [start, end) where some evaluator is free, ignoring notice, horizon and
    deadlines: those belong to who asks and when (`window`)."""
    for name, value in (("start", start), ("end", end)):
        if value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware")
    rules = _Rules(
        interview=policy.interview_minutes * _US_PER_MINUTE,
        buffer=policy.buffer_minutes * _US_PER_MINUTE,
        step=policy.slot_step_minutes * _US_PER_MINUTE,
        daily_cap=policy.max_interviews_per_evaluator_per_day,
        low=to_us(start),
        high=to_us(end),
    )
    return _merge(calendars, rules)


def window(
    policy: Policy,
    now: datetime,
    start: datetime,
    end: datetime,
    deadline: datetime | None = None,
) -> tuple[int, int]:
    """[low, high) in microseconds: the starts find_slots would admit for this request."""
    rules = _Rules.of(policy, now, start, end, deadline)
    return rules.low, rules.high


def find_slots(
    calendars: Iterable[EvaluatorCalendar],
    policy: Policy,
    now: datetime,
    start: datetime,
    end: datetime,
    deadline: datetime | None = None,
) -> list[Slot]:
    """All starts in [start, end) where at least one evaluator is free, sorted by time.

    Rules, per evaluator: the interview fits in one availability block and starts on that
    block's step grid; min notice, horizon and the optional deadline (the interview must be
    over by then); the buffer around every active booking; and fewer than the daily maximum of
    bookings on the evaluator's local date.
    """
    found = _merge(calendars, _Rules.of(policy, now, start, end, deadline))
    interview = policy.interview
    slots: list[Slot] = []
    for s, ids in zip(found.starts, found.evaluators, strict=True):
        slot_start = from_us(s)
        slots.append(Slot(slot_start, slot_start + interview, ids))
    return slots


def is_free(
    calendar: EvaluatorCalendar,
    policy: Policy,
    now: datetime,
    s: datetime,
    deadline: datetime | None = None,
    clock: LocalClock | None = None,
) -> bool:
    """Re-check one start with exactly the rules find_slots applies (e.g. inside the booking).

    `clock`: a LocalClock of the calendar's zone to reuse, when the caller checks several
    evaluators of one zone (its conversions are then made once, not once per evaluator)."""
    if clock is None or clock.tz != calendar.tz:
        clock = LocalClock(calendar.tz)
    rules = _Rules.of(policy, now, s, s + timedelta(microseconds=1), deadline)
    return to_us(s) in _free_starts(calendar, rules, clock)


def choose_evaluator(
    evaluator_ids: Sequence[uuid.UUID], week_counts: Mapping[uuid.UUID, int], start: datetime
) -> list[uuid.UUID]:
    """Candidates in order of preference: fewest bookings that week, then a draw.

    Spreading the load evenly is the point. Among equals the order is a hash of the
    evaluator and the booking's `start`: the same for every look at one start (a retry, two
    processes, the re-check under the lock), different from one start to the next, so that
    no evaluator is first among equals every time (with a fixed tie-break the one with the
    smallest id took every booking that did not divide evenly, week after week). Concurrent
    bookings of one start still spread: the first takes the preferred evaluator's lock and
    the others go on to the next (scheduler.evaluator_choice). Missing counts mean no
    booking yet.
    """
    salt = to_us(start).to_bytes(8, "big", signed=True)
    return sorted(
        evaluator_ids,
        key=lambda evaluator: (
            week_counts.get(evaluator, 0),
            blake2b(evaluator.bytes + salt, digest_size=8).digest(),
        ),
    )


def week_bounds(s: datetime) -> tuple[datetime, datetime]:
    """[Monday 00:00, next Monday 00:00) in UTC around s: the ISO week in UTC.

    Load balancing only needs a stable bucket shared by all evaluators, whatever their zones;
    UTC gives one without involving anybody's local calendar.
    """
    if s.tzinfo is None:
        raise ValueError("s must be timezone-aware")
    moment = s.astimezone(UTC)
    monday = datetime.combine(
        moment.date() - timedelta(days=moment.weekday()), datetime.min.time(), UTC
    )
    return monday, monday + timedelta(days=7)
