"""When the database turns a transaction away: retried conflicts, and the counts of them.

The booking transaction takes evaluator locks in a way that cannot deadlock
(scheduler.bookings), but PostgreSQL may still refuse a transaction (a deadlock through a path
nobody foresaw, a serialization failure): `retry_conflicts` runs it again a bounded number of
times, after a short random pause so the transactions that collided do not meet again. On
SQLite a writer that cannot take the write lock within the busy timeout gets
`scheduler.errors.Busy` (503 with Retry-After) rather than a failure after a long wait.

The counts live in a `Contention` object the app owns (scheduler.keys.CONTENTION, also held
by its `Database`), not in a module global: two apps in one process (the tests) keep theirs
apart, and a metrics endpoint reads them from the app.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

from scheduler.errors import Busy

log = logging.getLogger("viva.contention")

T = TypeVar("T")

DEADLOCK = "40P01"
SERIALIZATION = "40001"
ATTEMPTS = 5  # the first try and four retries
PAUSE = 0.01  # seconds; the pause before retry n is random in [0, PAUSE * 2**n)


@dataclass
class Contention:
    """Counts since the process started; read by the logs now and by metrics later."""

    deadlock_retries: int = 0
    serialization_retries: int = 0
    gave_up: int = 0  # conflicts still refused after the last attempt (they answer 503)
    busy: int = 0  # SQLite writers turned away after the busy timeout (they answer 503)


def conflict_of(exc: BaseException) -> str | None:
    """The SQLSTATE of a deadlock or serialization failure, else None."""
    if not isinstance(exc, DBAPIError):
        return None
    state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return state if state in (DEADLOCK, SERIALIZATION) else None


async def retry_conflicts(
    contention: Contention,
    attempt: Callable[[], Awaitable[T]],
    *,
    what: str,
    attempts: int = ATTEMPTS,
    pause: float = PAUSE,
) -> T:
    """`attempt()`, run again when the database refused it as a deadlock or a serialization
    failure; each try must be one whole transaction, so a retry starts from scratch."""
    for n in range(attempts):
        try:
            return await attempt()
        except DBAPIError as exc:
            state = conflict_of(exc)
            if state is None:
                raise
            if n + 1 == attempts:
                contention.gave_up += 1
                log.error("%s: %s after %d attempts, giving up", what, _name(state), attempts)
                # Every try was rolled back: nothing changed, and the same request may be
                # sent again (503 with Retry-After), never a 500.
                raise Busy("the server is busy; please try again in a moment") from exc
            if state == DEADLOCK:
                contention.deadlock_retries += 1
            else:
                contention.serialization_retries += 1
            log.warning(
                "%s: %s, retrying (deadlock retries %d, serialization retries %d so far)",
                what,
                _name(state),
                contention.deadlock_retries,
                contention.serialization_retries,
            )
        await asyncio.sleep(random.uniform(0, pause * 2**n))
    raise AssertionError("unreachable")  # the loop returns or raises


def _name(state: str) -> str:
    return "deadlock" if state == DEADLOCK else "serialization failure"
