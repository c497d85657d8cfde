"""Each process's memory of the free times it computed, so a crowd does not recompute them.

What a candidate's calendar needs (the qualified evaluators' free starts over a range) is the
same for every candidate of one organisation and exam language until a booking or an
evaluator changes; only the candidate's own limits (min notice from now, horizon, deadline)
differ, and those are a slice of the shared answer (scheduler.slots.FreeStarts). Entries are
keyed by the organisation's calendar version (scheduler.calendar_versions), read with one
primary-key query per request, so a change committed by any process is seen by the next
request of every process: no slot a committed booking took is offered again.

Ranges are widened to whole UTC days so that "from now to the horizon", asked afresh every
second, keeps hitting one entry all day. When an entry goes stale, the first request
recomputes it and the others asking at the same moment wait for that one computation rather
than each running their own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from datetime import UTC, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.calendar_versions import read_version
from scheduler.calendars import load_calendars
from scheduler.db import Database
from scheduler.policy import Policy
from scheduler.slots import FreeStarts, free_starts, window

__all__ = ["FreeTimes", "Offer"]

# (organisation, language, first UTC day, day after the last)
_Key = tuple[uuid.UUID, str, datetime, datetime]
_ONE_DAY = timedelta(days=1)


def _day_floor(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), time(), UTC)


class Offer:
    """The starts offered to one candidate: a slice of a shared `FreeStarts`, not a copy."""

    __slots__ = ("first", "free", "last")

    def __init__(self, free: FreeStarts, first: int, last: int) -> None:
        self.free, self.first, self.last = free, first, last

    def starts(self) -> list[int]:
        return self.free.starts[self.first : self.last]

    def __len__(self) -> int:
        return self.last - self.first


class FreeTimes:
    """The cache; one per app (process), sized in entries (organisation x language x range)."""

    def __init__(self, db: Database, policy: Policy, size: int = 256) -> None:
        self._db = db
        self._policy = policy
        self._size = size
        self._entries: OrderedDict[_Key, tuple[int, FreeStarts]] = OrderedDict()
        self._running: dict[tuple[_Key, int], asyncio.Task[FreeStarts]] = {}
        # Computations run, for tests and the benchmark's cold/warm split.
        self.computed = 0

    async def offer(
        self,
        session: AsyncSession,
        organisation_id: uuid.UUID,
        language: str,
        now: datetime,
        start: datetime,
        end: datetime,
        deadline: datetime | None,
    ) -> Offer:
        """The free starts in [start, end) this candidate may book, as find_slots would give."""
        low, high = window(self._policy, now, start, end, deadline)
        if low >= high:
            return Offer(FreeStarts([], []), 0, 0)
        first_day = _day_floor(start)
        after_last = _day_floor(end - timedelta(microseconds=1)) + _ONE_DAY
        key = (organisation_id, language, first_day, after_last)
        version = await read_version(session, organisation_id)  # before any row it covers
        free = await self._free(key, version)
        return Offer(free, *free.between(low, high))

    async def _free(self, key: _Key, version: int) -> FreeStarts:
        entry = self._entries.get(key)
        if entry is not None and entry[0] == version:
            self._entries.move_to_end(key)
            return entry[1]
        task = self._running.get((key, version))
        if task is None:
            task = asyncio.create_task(self._compute(key, version))
            self._running[(key, version)] = task
            task.add_done_callback(lambda _: self._running.pop((key, version), None))
        # Shielded: one asker giving up must not cancel the computation the others await.
        return await asyncio.shield(task)

    async def _compute(self, key: _Key, version: int) -> FreeStarts:
        organisation_id, language, start, end = key
        async with self._db.read() as session:
            calendars = await load_calendars(session, organisation_id, language, start, end)
        free = free_starts(calendars, self._policy, start, end)
        self.computed += 1
        current = self._entries.get(key)
        if current is None or current[0] <= version:
            self._entries[key] = (version, free)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return free
