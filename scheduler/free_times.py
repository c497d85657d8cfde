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
recomputes it (in its own session) and the others asking at the same moment wait for that
one computation rather than each running their own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.calendar_versions import read_version
from scheduler.calendars import load_calendars
from scheduler.policy import Policy
from scheduler.slots import FreeStarts, free_starts, window

__all__ = ["FreeTimes", "Offer"]

# (organisation, language, first UTC day, day after the last)
_Key = tuple[uuid.UUID, str, datetime, datetime]
# A computed entry and the memo its offers share (`Offer.memo`).
_Shared = tuple[FreeStarts, dict[str, Any]]
_ONE_DAY = timedelta(days=1)


def _day_floor(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), time(), UTC)


class Offer:
    """The starts offered to one candidate: a slice of a shared `FreeStarts`, not a copy.

    `memo` is shared by every offer cut from one entry, and dies with it: the web layer keeps
    there what it derives from the whole entry (each start rendered in a time zone), so a
    crowd's answers are slices of text rendered once.
    """

    __slots__ = ("first", "free", "last", "memo")

    def __init__(
        self, free: FreeStarts, first: int, last: int, memo: dict[str, Any] | None = None
    ) -> None:
        self.free, self.first, self.last = free, first, last
        self.memo: dict[str, Any] = {} if memo is None else memo

    def starts(self) -> list[int]:
        return self.free.starts[self.first : self.last]

    def __len__(self) -> int:
        return self.last - self.first


class FreeTimes:
    """The cache; one per app (process), sized in entries (organisation x language x range)."""

    def __init__(self, policy: Policy, size: int = 256) -> None:
        self._policy = policy
        self._size = size
        self._entries: OrderedDict[_Key, tuple[int, FreeStarts, dict[str, Any]]] = OrderedDict()
        self._running: dict[tuple[_Key, int], asyncio.Future[_Shared]] = {}
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
        version: int | None = None,
    ) -> Offer:
        """The free starts in [start, end) this candidate may book, as find_slots would give.

        `version` is the organisation's calendar version if the caller read it already, in
        this session and before anything else the answer covers; else it is read here."""
        low, high = window(self._policy, now, start, end, deadline)
        if low >= high:
            return Offer(FreeStarts([], []), 0, 0)
        first_day = _day_floor(start)
        after_last = _day_floor(end - timedelta(microseconds=1)) + _ONE_DAY
        key = (organisation_id, language, first_day, after_last)
        if version is None:
            version = await read_version(session, organisation_id)  # before any row it covers
        free, memo = await self._free(session, key, version)
        return Offer(free, *free.between(low, high), memo)

    async def _free(self, session: AsyncSession, key: _Key, version: int) -> _Shared:
        while True:
            entry = self._entries.get(key)
            if entry is not None and entry[0] == version:
                self._entries.move_to_end(key)
                return entry[1], entry[2]
            running = self._running.get((key, version))
            if running is None:
                break
            try:
                # Shielded: this asker giving up must not cancel the computation of another.
                return await asyncio.shield(running)
            except _Abandoned:
                continue  # its asker gave up or failed: look again, maybe compute ourselves
        # Computed in the asker's own session, after its version read: a separate session
        # would need a second pooled connection while the crowd holds them all.
        future: asyncio.Future[_Shared] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._running[(key, version)] = future
        try:
            free = await self._compute(session, key, version)
        except BaseException:
            future.set_exception(_Abandoned())
            raise
        finally:
            self._running.pop((key, version), None)
        future.set_result(free)
        return free

    async def _compute(self, session: AsyncSession, key: _Key, version: int) -> _Shared:
        organisation_id, language, start, end = key
        calendars = await load_calendars(session, organisation_id, language, start, end)
        free = free_starts(calendars, self._policy, start, end)
        self.computed += 1
        memo: dict[str, Any] = {}
        current = self._entries.get(key)
        if current is None or current[0] <= version:
            self._entries[key] = (version, free, memo)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return free, memo


class _Abandoned(Exception):
    """The asker computing an entry gave up or failed; those waiting on it look again."""
