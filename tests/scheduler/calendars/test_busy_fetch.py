"""The fetch of busy times (scheduler.busy_fetch) on its own: both CalDAV reports against a
real Radicale, and the bounds that keep a fetch from being used against Viva's own network
or from hanging on a hostile server; the scheduled refresh's claim across processes.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from scheduler import keys
from scheduler.busy_fetch import FetchError, Limits, Source, fetch_busy
from scheduler.calendar_versions import read_version
from scheduler.config import CalendarsSettings
from scheduler.credentials import CredentialBox, InvalidToken
from scheduler.external_calendars import CalendarSync
from tests.support.caldav import PASSWORD, USER, Radicale, caldav_evaluator, event

PARIS = ZoneInfo("Europe/Paris")
START = datetime(2026, 11, 30, tzinfo=UTC)
END = datetime(2026, 12, 31, tzinfo=UTC)
LOOPBACK = Limits(allow_private=True)


@pytest.mark.parametrize("method", ["calendar-query", "free-busy-query", "auto"])
async def test_both_reports_read_a_weekly_recurrence(radicale: Radicale, method: Any) -> None:
    await radicale.put(
        "teaching",
        event("teaching", "20261202T100000", "20261202T110000", "RRULE:FREQ=WEEKLY;BYDAY=WE"),
    )
    await radicale.put(
        "aside",
        event("aside", "20261203T100000", "20261203T110000", "TRANSP:TRANSPARENT"),
    )
    source = Source("caldav", radicale.url, USER, PASSWORD)
    busy = await fetch_busy(source, START, END, PARIS, LOOPBACK, method=method)
    wednesdays = [datetime(2026, 12, d, 9, tzinfo=UTC) for d in (2, 9, 16, 23, 30)]
    assert busy == [(w, w + timedelta(hours=1)) for w in wednesdays]


async def test_loopback_and_private_addresses_are_refused_unless_allowed(
    radicale: Radicale,
) -> None:
    source = Source("caldav", radicale.url, USER, PASSWORD)
    with pytest.raises(FetchError, match="private address"):
        await fetch_busy(source, START, END, PARIS, Limits())
    by_name = Source("caldav", radicale.url.replace("127.0.0.1", "localhost"), USER, PASSWORD)
    with pytest.raises(FetchError, match="private address"):
        await fetch_busy(by_name, START, END, PARIS, Limits())
    assert await fetch_busy(source, START, END, PARIS, LOOPBACK) == []


async def _serve(aiohttp_server: Any, handler: Any) -> str:
    app = web.Application()
    app.router.add_get("/cal.ics", handler)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}/cal.ics"


async def test_an_answer_too_large_is_a_failed_fetch(aiohttp_server: Any) -> None:
    async def big(_: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/calendar"})
        await response.prepare(_)
        for _i in range(100):  # no Content-Length: the cap must hold while reading
            await response.write(b"X" * 1000)
        return response

    url = await _serve(aiohttp_server, big)
    limits = Limits(allow_private=True, max_bytes=10_000)
    with pytest.raises(FetchError, match="larger than 10000 bytes"):
        await fetch_busy(Source("ics", url), START, END, PARIS, limits)


async def test_redirects_are_not_followed(aiohttp_server: Any) -> None:
    async def moved(_: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")

    url = await _serve(aiohttp_server, moved)
    with pytest.raises(FetchError, match="redirects"):
        await fetch_busy(Source("ics", url), START, END, PARIS, LOOPBACK)


async def test_a_server_that_does_not_answer_in_time_is_a_failed_fetch(
    aiohttp_server: Any,
) -> None:
    never = asyncio.Event()

    async def hangs(_: web.Request) -> web.Response:
        await never.wait()
        return web.Response()

    url = await _serve(aiohttp_server, hangs)
    limits = Limits(allow_private=True, timeout=0.2)
    with pytest.raises(FetchError, match=r"no answer within 0\.2 s"):
        await fetch_busy(Source("ics", url), START, END, PARIS, limits)
    never.set()


def test_a_password_sealed_under_another_secret_does_not_open() -> None:
    sealed = CredentialBox(b"one-secret-of-enough-length").seal("hunter2")
    assert "hunter2" not in sealed
    assert CredentialBox(b"one-secret-of-enough-length").open(sealed) == "hunter2"
    with pytest.raises(InvalidToken):
        CredentialBox(b"another-secret-of-enough-len").open(sealed)


async def test_the_schedule_claims_each_calendar_once_per_period_across_processes(
    make_org, radicale: Radicale
) -> None:
    org = await make_org()
    await caldav_evaluator(org, radicale)
    app = org.client.app
    clock = app[keys.CLOCK]
    await radicale.put("meeting", event("meeting", "20261201T090000", "20261201T100000"))

    def process() -> CalendarSync:
        return CalendarSync(
            app[keys.DB],
            clock,
            app[keys.CREDENTIALS],
            CalendarsSettings(refresh_minutes=15, allow_private_networks=True),
            horizon_days=60,
        )

    one, two = process(), process()
    async with app[keys.DB].read() as session:
        before = await read_version(session, org.id)
    assert sorted(await asyncio.gather(one.refresh_due(), two.refresh_due())) == [0, 1]
    async with app[keys.DB].read() as session:
        fetched = await read_version(session, org.id)
    assert fetched > before  # the busy set changed: every process's free times are stale

    assert await one.refresh_due() == await two.refresh_due() == 0  # not due yet
    clock.advance(timedelta(minutes=15))
    assert sorted(await asyncio.gather(one.refresh_due(), two.refresh_due())) == [0, 1]
    async with app[keys.DB].read() as session:
        # Nothing changed on the server: the version stays, and the cache with it.
        assert await read_version(session, org.id) == fetched
