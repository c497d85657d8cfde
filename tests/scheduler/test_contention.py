"""`retry_conflicts` on its own: a conflict that outlasts every retry is a 503 (nothing was
changed; the request may be sent again), never an error that answers 500."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError

from scheduler.contention import DEADLOCK, SERIALIZATION, Contention, retry_conflicts
from scheduler.errors import Busy


class _DriverError(Exception):
    """What asyncpg raises, as far as the retry reads it: the SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize("state", [DEADLOCK, SERIALIZATION])
async def test_a_conflict_refused_on_every_try_answers_busy(state: str) -> None:
    contention = Contention()
    tries = 0

    async def refused() -> None:
        nonlocal tries
        tries += 1
        raise DBAPIError("COMMIT", {}, _DriverError(state))

    with pytest.raises(Busy) as caught:
        await retry_conflicts(contention, refused, what="booking", attempts=3, pause=0)
    assert caught.value.status == 503 and caught.value.retry_after >= 1
    assert tries == 3 and contention.gave_up == 1
    assert contention.deadlock_retries + contention.serialization_retries == 2


async def test_other_database_errors_are_not_retried_nor_disguised() -> None:
    contention = Contention()
    tries = 0

    async def broken() -> None:
        nonlocal tries
        tries += 1
        raise DBAPIError("INSERT", {}, _DriverError("23505"))  # a unique violation

    with pytest.raises(DBAPIError):
        await retry_conflicts(contention, broken, what="booking", pause=0)
    assert tries == 1 and contention.gave_up == 0


async def test_a_conflict_that_clears_is_run_again_and_succeeds() -> None:
    contention = Contention()
    results = iter([DEADLOCK, None])

    async def once_refused() -> str:
        state = next(results)
        if state is not None:
            raise DBAPIError("COMMIT", {}, _DriverError(state))
        return "booked"

    assert await retry_conflicts(contention, once_refused, what="booking", pause=0) == "booked"
    assert contention.deadlock_retries == 1 and contention.gave_up == 0
