"""The per-process cache of free times (scheduler.free_times) never outlives a change.

Each process keeps the free times it computed, keyed by the organisation's calendar version
(scheduler.calendar_versions); these tests prove a change committed anywhere moves that
version, and that another process's next answer no longer offers what the change took.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from scheduler import keys
from scheduler.app import create_app
from scheduler.calendar_versions import read_version, touch
from scheduler.clock import FrozenClock
from scheduler.config import Settings
from tests.conftest import Org, token_of


async def _version(client: TestClient, organisation_id: uuid.UUID) -> int:
    async with client.app[keys.DB].read() as session:
        return await read_version(session, organisation_id)


async def _starts(client: TestClient, token: str) -> list[str]:
    resp = await client.get(f"/c/{token}/slots")
    body: dict[str, Any] = await resp.json()
    assert resp.status == 200, body
    return [slot["start"] for slot in body["slots"]]


async def test_a_booking_in_one_process_leaves_the_next_answer_of_another(
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    make_org: Callable[..., Awaitable[Org]],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    """Two apps on one database, as two `viva serve` processes (PostgreSQL in CI)."""
    org = await make_org()
    await org.make_evaluator(email="hugo@cci.test")
    first = token_of((await org.make_candidate())["link"])
    second = token_of((await org.make_candidate())["link"])
    other_process = await aiohttp_client(create_app(settings, clock=clock))
    free_times = other_process.app[keys.FREE_TIMES]

    before = await _starts(other_process, second)
    assert before and await _starts(other_process, second) == before
    computed = free_times.computed  # the second answer came from the cache

    taken = before[-1]  # far enough ahead to be cancelled again
    resp = await org.client.post(f"/c/{first}/booking", json={"start": taken})
    assert resp.status == 201, await resp.text()

    after = await _starts(other_process, second)
    assert taken not in after
    assert free_times.computed == computed + 1  # the version moved: computed again, once
    assert await _starts(other_process, second) == after
    assert free_times.computed == computed + 1

    # And back: the cancellation (in the first process) offers the time again in the other.
    assert (await org.client.delete(f"/c/{first}/booking")).status in (200, 204)
    assert taken in await _starts(other_process, second)


async def test_every_change_of_slots_raises_the_calendar_version(make_org) -> None:
    """If a write path stopped raising the version, caches would serve its old slots."""
    org = await make_org()
    rival = await make_org(name="Rival", email="rival@example.test")
    client = org.client

    async def raised(change: Callable[[], Awaitable[object]]) -> None:
        version, rival_version = await _version(client, org.id), await _version(client, rival.id)
        await change()
        assert await _version(client, org.id) > version
        assert await _version(client, rival.id) == rival_version  # only its own organisation

    ev: dict[str, Any] = {}

    async def add_evaluator() -> None:
        ev.update(await org.make_evaluator(email="hugo@cci.test"))

    await raised(add_evaluator)
    hours = {"weekly": [{"day": "tue", "start": "09:00", "end": "17:00"}], "overrides": []}
    await raised(lambda: org.ok("PUT", f"/evaluators/{ev['id']}/availability", json=hours))
    token = token_of((await org.make_candidate())["link"])
    starts = await _starts(client, token)

    async def book() -> None:
        resp = await client.post(f"/c/{token}/booking", json={"start": starts[-1]})
        assert resp.status == 201, await resp.text()

    async def move() -> None:
        resp = await client.put(f"/c/{token}/booking", json={"start": starts[-2]})
        assert resp.status == 200, await resp.text()

    async def cancel() -> None:
        assert (await client.delete(f"/c/{token}/booking")).status in (200, 204)

    await raised(book)
    await raised(move)
    await raised(cancel)
    await raised(lambda: org.call("DELETE", f"/evaluators/{ev['id']}"))


async def test_a_read_changes_no_version(make_org) -> None:
    org = await make_org()
    await org.make_evaluator()
    token = token_of((await org.make_candidate())["link"])
    version = await _version(org.client, org.id)
    await _starts(org.client, token)
    assert (await org.client.get(f"/c/{token}")).status == 200
    assert await _version(org.client, org.id) == version


async def test_a_write_the_hook_cannot_see_raises_the_version_when_touched(make_org) -> None:
    """A Core statement bypasses the session hook; `touch` is how such a write says so."""
    org = await make_org()
    version = await _version(org.client, org.id)
    async with org.client.app[keys.DB].write() as session:
        touch(session, org.id)
    assert await _version(org.client, org.id) == version + 1
