"""Bounded polling: the tests' one way to wait for state nobody can signal to them.

aiortc's counters, a row the server's handler writes after a socket closes, a message an
SMTP server receives in its own thread, a line in a child process's log: none of them
offers an event to await, so the test asks again until the answer is yes. The bound only
stops a hung test with a message naming what it waited for; a condition that holds ends
the wait at once, so nothing here measures time or slows a passing test.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

import pytest

T = TypeVar("T")

# Generous: slow CI machines and a loaded laptop must not turn a pass into a failure.
WITHIN = 20.0
INTERVAL = 0.02


@overload
async def eventually(
    check: Callable[[], Awaitable[T]],
    what: str,
    *,
    within: float = WITHIN,
    interval: float = INTERVAL,
) -> T: ...


@overload
async def eventually(
    check: Callable[[], T],
    what: str,
    *,
    within: float = WITHIN,
    interval: float = INTERVAL,
) -> T: ...


async def eventually(
    check: Callable[[], object],
    what: str,
    *,
    within: float = WITHIN,
    interval: float = INTERVAL,
) -> object:
    """The first true value `check()` returns (awaited if it is a coroutine), asked every
    `interval` seconds; the test fails after `within` seconds, naming `what` it awaited.

    Returning the value lets a caller poll for a thing and keep it ("the room report once
    both rows are closed") instead of asking once more after the loop.
    """
    limit = asyncio.timeout(within)
    try:
        async with limit:
            while True:
                value = check()
                if inspect.isawaitable(value):
                    value = await value
                if value:
                    return value
                await asyncio.sleep(interval)
    except TimeoutError:
        if not limit.expired():
            raise  # the check's own timeout, not ours: let it say what it was
        pytest.fail(f"timed out after {within:g} s waiting for {what}")
