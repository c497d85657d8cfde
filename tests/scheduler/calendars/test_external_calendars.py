"""Busy times from evaluators' own calendars, read from a real CalDAV server (Radicale) and a
real ICS URL, take the slots they cover and free them when they go; booking never fetches.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from scheduler import keys
from scheduler.migrate import target_metadata
from tests.conftest import Org, token_of
from tests.support.caldav import PASSWORD, USER, Radicale, caldav_evaluator, event

PARIS = ZoneInfo("Europe/Paris")
TUE, WED, THU, FRI = date(2026, 12, 1), date(2026, 12, 2), date(2026, 12, 3), date(2026, 12, 4)
# The evaluator's hours (09:00-12:00, Monday to Friday) give these starts every weekday.
ALL_DAY_STARTS = ["09:00", "09:20", "09:40", "10:00", "10:20", "10:40", "11:00", "11:20", "11:40"]


async def starts_on(org: Org, day: date, tz: str = "Europe/Paris") -> list[str]:
    """The green starts of `day` (local HH:MM in `tz`) the organisation's API shows."""
    body = await org.ok(
        "GET",
        "/slots",
        params={"language": "en", "from": day.isoformat(), "to": day.isoformat(), "timezone": tz},
    )
    return [
        datetime.fromisoformat(s["start"]).astimezone(ZoneInfo(tz)).strftime("%H:%M")
        for s in body["slots"]
    ]


async def refresh(org: Org, ev: dict[str, Any]) -> list[dict[str, Any]]:
    body = await org.ok("POST", f"/evaluators/{ev['id']}/calendars/refresh")
    return body["calendars"]


async def test_a_weekly_teaching_recurrence_takes_its_hours_until_removed(
    make_org, radicale: Radicale
) -> None:
    org = await make_org()
    ev = await caldav_evaluator(org, radicale)
    await radicale.put(
        "teaching",
        event("teaching", "20261202T100000", "20261202T110000", "RRULE:FREQ=WEEKLY;BYDAY=WE"),
    )
    (status,) = await refresh(org, ev)
    assert status["last_error"] is None and status["last_success_at"] is not None
    assert status["busy_count"] >= 8  # one a week over the booking horizon

    teaching_free = ["09:00", "09:20", "09:40", "11:00", "11:20", "11:40"]
    for week in range(4):
        assert await starts_on(org, WED + timedelta(weeks=week)) == teaching_free
    assert await starts_on(org, TUE) == ALL_DAY_STARTS

    # Booking re-checks the evaluator's own calendar, not only the cached green slots.
    candidate = await org.make_candidate()
    resp = await org.client.post(
        f"/c/{token_of(candidate['link'])}/booking", json={"start": "2026-12-09T10:20:00+01:00"}
    )
    assert resp.status == 409, await resp.text()

    await radicale.delete("teaching")
    (status,) = await refresh(org, ev)
    assert status["busy_count"] == 0
    assert await starts_on(org, WED) == ALL_DAY_STARTS
    resp = await org.client.post(
        f"/c/{token_of(candidate['link'])}/booking", json={"start": "2026-12-09T10:20:00+01:00"}
    )
    assert resp.status == 201, await resp.text()


async def test_all_day_events_take_the_day_and_transparent_ones_nothing(
    make_org, radicale: Radicale
) -> None:
    org = await make_org()
    # Far from UTC, so a day taken as a UTC day would spill onto the wrong local hours.
    ev = await caldav_evaluator(org, radicale, timezone="America/Los_Angeles")
    await radicale.put(
        "away",
        "\n".join(
            [
                "BEGIN:VEVENT",
                "UID:away",
                "DTSTAMP:20261101T000000Z",
                "DTSTART;VALUE=DATE:20261203",
                "DTEND;VALUE=DATE:20261204",
                "SUMMARY:Conference",
                "END:VEVENT",
            ]
        ),
    )
    await radicale.put(
        "reminder",
        event(
            "reminder",
            "20261204T100000",
            "20261204T110000",
            "TRANSP:TRANSPARENT",
            tzid="America/Los_Angeles",
        ),
    )
    await refresh(org, ev)
    la = "America/Los_Angeles"
    assert await starts_on(org, THU, la) == []
    assert await starts_on(org, WED, la) == ALL_DAY_STARTS
    assert await starts_on(org, FRI, la) == ALL_DAY_STARTS


async def test_a_zone_bound_recurrence_follows_its_zone_across_a_daylight_saving_change(
    make_org, radicale: Radicale
) -> None:
    org = await make_org()
    # Tokyo keeps no summer time; Paris moves on 2027-03-28. A Monday 10:00 Paris event
    # is 18:00 in Tokyo before the change and 17:00 after it.
    weekly = [{"day": "mon", "start": "16:00", "end": "19:00"}]
    ev = await caldav_evaluator(org, radicale, timezone="Asia/Tokyo", weekly=weekly)
    await radicale.put(
        "lesson",
        event("lesson", "20270301T100000", "20270301T110000", "RRULE:FREQ=WEEKLY;BYDAY=MO"),
    )
    org.client.app[keys.CLOCK].set(datetime(2027, 3, 15, 0, 0, tzinfo=UTC))
    await refresh(org, ev)
    tokyo = "Asia/Tokyo"
    assert await starts_on(org, date(2027, 3, 22), tokyo) == [
        "16:00",
        "16:20",
        "16:40",
        "17:00",
        "17:20",
        "17:40",
    ]
    assert await starts_on(org, date(2027, 3, 29), tokyo) == [
        "16:00",
        "16:20",
        "16:40",
        "18:00",
        "18:20",
        "18:40",
    ]


async def test_an_event_moved_on_the_server_frees_its_old_time_and_takes_the_new(
    make_org, radicale: Radicale
) -> None:
    org = await make_org()
    ev = await caldav_evaluator(org, radicale)
    await radicale.put("meeting", event("meeting", "20261201T090000", "20261201T100000"))
    await refresh(org, ev)
    assert await starts_on(org, TUE) == ALL_DAY_STARTS[3:]
    await radicale.put(
        "meeting", event("meeting", "20261201T110000", "20261201T120000", "SEQUENCE:1")
    )
    await refresh(org, ev)
    assert await starts_on(org, TUE) == ALL_DAY_STARTS[:6]


async def test_a_failed_fetch_keeps_the_last_good_busy_times_and_shows_the_error(
    make_org, radicale: Radicale
) -> None:
    org = await make_org()
    ev = await caldav_evaluator(org, radicale)
    await radicale.put("meeting", event("meeting", "20261201T090000", "20261201T100000"))
    (good,) = await refresh(org, ev)
    radicale.stop()
    org.client.app[keys.CLOCK].advance(timedelta(minutes=1))
    (failed,) = await refresh(org, ev)
    assert failed["last_error"] and "could not reach" in failed["last_error"]
    assert failed["last_success_at"] == good["last_success_at"]
    assert failed["last_attempt_at"] > good["last_attempt_at"]
    assert failed["busy_count"] == good["busy_count"] == 1
    assert await starts_on(org, TUE) == ALL_DAY_STARTS[3:]
    (shown,) = (await org.ok("GET", f"/evaluators/{ev['id']}/calendars"))["calendars"]
    assert shown["last_error"] == failed["last_error"]


async def test_wrong_credentials_are_an_error_not_a_free_calendar(
    make_org, radicale: Radicale
) -> None:
    org = await make_org()
    ev = await org.make_evaluator()
    calendars = [{"type": "caldav", "url": radicale.url, "username": USER, "password": "nope"}]
    await org.ok("PUT", f"/evaluators/{ev['id']}/calendars", json={"calendars": calendars})
    (status,) = await refresh(org, ev)
    assert "refused the credentials" in status["last_error"]
    assert status["last_success_at"] is None


async def test_passwords_are_stored_encrypted_and_never_shown(make_org, radicale: Radicale) -> None:
    org = await make_org()
    ev = await caldav_evaluator(org, radicale)
    (shown,) = (await org.ok("GET", f"/evaluators/{ev['id']}/calendars"))["calendars"]
    assert "password" not in shown and shown["has_password"] is True
    async with org.client.app[keys.DB].read() as session:
        dump = repr(
            [
                (await session.execute(select(table))).all()
                for metadata in target_metadata()
                for table in metadata.sorted_tables
            ]
        )
    assert PASSWORD not in dump
    assert radicale.url in dump  # the rows were read: the calendar is there

    # Put again without the password: the stored one is kept (the fetch still works).
    calendars = [{"type": "caldav", "url": radicale.url, "username": USER}]
    await org.ok("PUT", f"/evaluators/{ev['id']}/calendars", json={"calendars": calendars})
    (status,) = await refresh(org, ev)
    assert status["last_error"] is None and status["has_password"] is True


async def test_an_ics_url_is_read_too(make_org, aiohttp_server: Any) -> None:
    body = "\r\n".join(
        [
            "BEGIN:VCALENDAR",
            "VERSION:2.0",
            "PRODID:-//tests//EN",
            event(
                "office",
                "20261201T090000",
                "20261201T094000",
                "RRULE:FREQ=DAILY;COUNT=3",
                "EXDATE;TZID=Europe/Paris:20261202T090000",
            ).replace("\n", "\r\n"),
            event("called-off", "20261204T090000", "20261204T120000", "STATUS:CANCELLED")
            .split("END:VTIMEZONE\n", 1)[1]
            .replace("\n", "\r\n"),
            "END:VCALENDAR",
            "",
        ]
    )

    async def ics(_: web.Request) -> web.Response:
        return web.Response(text=body, content_type="text/calendar")

    app = web.Application()
    app.router.add_get("/cal.ics", ics)
    server: TestServer = await aiohttp_server(app)
    org = await make_org()
    ev = await org.make_evaluator()
    url = f"http://127.0.0.1:{server.port}/cal.ics"
    await org.ok(
        "PUT",
        f"/evaluators/{ev['id']}/calendars",
        json={"calendars": [{"type": "ics", "url": url}]},
    )
    (status,) = await refresh(org, ev)
    assert status["busy_count"] == 2 and status["last_error"] is None
    assert await starts_on(org, TUE) == ALL_DAY_STARTS[2:]
    assert await starts_on(org, WED) == ALL_DAY_STARTS  # that occurrence was excluded
    assert await starts_on(org, THU) == ALL_DAY_STARTS[2:]
    assert await starts_on(org, FRI) == ALL_DAY_STARTS  # a cancelled event is no busy time

    # Replacing the calendars drops the old one's busy times at once.
    await org.ok("PUT", f"/evaluators/{ev['id']}/calendars", json={"calendars": []})
    assert await starts_on(org, TUE) == ALL_DAY_STARTS


async def test_bad_calendar_lists_are_refused_and_change_nothing(make_org) -> None:
    org = await make_org()
    ev = await org.make_evaluator()
    path = f"/evaluators/{ev['id']}/calendars"
    for bad in (
        [{"type": "caldav", "url": "ftp://example.org/cal"}],
        [{"type": "ics", "url": "https://example.org/a.ics", "password": "x"}],
        [{"type": "ics", "url": "https://example.org/a.ics", "write_back": True}],
        [{"type": "exchange", "url": "https://example.org/"}],
        [{"type": "ics", "url": f"https://example.org/{i}.ics"} for i in range(6)],
    ):
        status, problem = await org.call("PUT", path, json={"calendars": bad})
        assert status == 422, (bad, problem)
    assert (await org.ok("GET", path))["calendars"] == []


async def test_vivas_own_interviews_in_the_evaluators_calendar_are_not_busy_times(
    make_org, radicale: Radicale
) -> None:
    org = await make_org()
    ev = await caldav_evaluator(org, radicale)
    candidate = await org.make_candidate()
    resp = await org.client.post(
        f"/c/{token_of(candidate['link'])}/booking", json={"start": "2026-12-02T09:00:00+01:00"}
    )
    booking = await resp.json()
    # The evaluator accepted the invitation into their calendar, then it was moved by an
    # hour there too late: Viva must not take its own (stale) interview for another duty.
    stale = event(booking["id"], "20261202T110000", "20261202T112000")
    await radicale.put("invitation", stale)
    await radicale.put("other", event("other", "20261201T090000", "20261201T100000"))
    (status,) = await refresh(org, ev)
    assert status["busy_count"] == 1
    assert "11:00" in await starts_on(org, WED)


async def _writing_back(org: Org, radicale: Radicale) -> dict[str, Any]:
    """An evaluator whose CalDAV calendar (on `radicale`) gets their interviews written in."""
    ev = await org.make_evaluator()
    calendars = [
        {
            "type": "caldav",
            "url": radicale.url,
            "username": USER,
            "password": PASSWORD,
            "write_back": True,
        }
    ]
    await org.ok("PUT", f"/evaluators/{ev['id']}/calendars", json={"calendars": calendars})
    return ev


async def test_write_back_puts_moves_and_deletes_the_interviews_with_their_uids(
    make_org, radicale: Radicale
) -> None:
    org = await make_org()
    ev = await _writing_back(org, radicale)
    candidate = await org.make_candidate()
    token = token_of(candidate["link"])
    resp = await org.client.post(f"/c/{token}/booking", json={"start": "2026-12-02T09:00:00+01:00"})
    booking = await resp.json()
    (status,) = await refresh(org, ev)
    assert status["last_error"] is None and status["write_back"] is True
    assert status["busy_count"] == 0  # its own interview is not another duty

    async def on_server() -> icalendar.Event | None:
        code, body = await radicale.get(f"viva-{booking['id']}")
        if code == 404:
            return None
        assert code == 200
        return next(iter(icalendar.Calendar.from_ical(body).walk("VEVENT")))

    written = await on_server()
    assert written is not None and str(written["UID"]) == booking["id"]
    assert int(written["SEQUENCE"]) == 0
    assert written.decoded("DTSTART").astimezone(UTC) == datetime(2026, 12, 2, 8, tzinfo=UTC)

    org.client.app[keys.CLOCK].advance(timedelta(minutes=1))
    resp = await org.client.put(f"/c/{token}/booking", json={"start": "2026-12-03T10:00:00+01:00"})
    assert resp.status == 200
    await refresh(org, ev)
    moved = await on_server()
    assert moved is not None and int(moved["SEQUENCE"]) == 1
    assert moved.decoded("DTSTART").astimezone(UTC) == datetime(2026, 12, 3, 9, tzinfo=UTC)
    assert "10:00" in await starts_on(org, WED)  # the old time is free again

    resp = await org.client.delete(f"/c/{token}/booking")
    assert resp.status in (200, 204)
    (status,) = await refresh(org, ev)
    assert status["last_error"] is None
    assert await on_server() is None


async def test_a_candidates_erasure_rewrites_their_past_interview_without_their_name(
    make_org, radicale: Radicale
) -> None:
    """Write-back leaves the past as written, but not a name the organisation must erase."""
    org = await make_org()
    ev = await _writing_back(org, radicale)
    candidate = await org.make_candidate(name="Zéphyrine Quillard")
    token = token_of(candidate["link"])
    resp = await org.client.post(f"/c/{token}/booking", json={"start": "2026-12-02T09:00:00+01:00"})
    assert resp.status == 201
    booking = await resp.json()
    await refresh(org, ev)
    code, before = await radicale.get(f"viva-{booking['id']}")
    assert code == 200 and "Zéphyrine Quillard" in _unfolded(before)

    clock = org.client.app[keys.CLOCK]
    clock.advance(datetime(2026, 12, 3, tzinfo=UTC) - clock.now())  # the interview is past
    await org.ok("DELETE", f"/candidates/{candidate['id']}", json={"mode": "erase"})
    (status,) = await refresh(org, ev)
    assert status["last_error"] is None
    code, after = await radicale.get(f"viva-{booking['id']}")
    assert code == 200  # the evaluator's past keeps the interview, at its time, with its UID
    (written,) = icalendar.Calendar.from_ical(after).walk("VEVENT")
    assert str(written["UID"]) == booking["id"]
    assert written.decoded("DTSTART").astimezone(UTC) == datetime(2026, 12, 2, 8, tzinfo=UTC)
    text = _unfolded(after)
    assert "Quillard" not in text and "Zéphyrine" not in text
    if candidate["email"] in _unfolded(before):
        assert candidate["email"] not in text

    # Written once: the next pass sends nothing more (the record holds its SEQUENCE again).
    await radicale.delete(f"viva-{booking['id']}")
    await refresh(org, ev)
    assert (await radicale.get(f"viva-{booking['id']}"))[0] == 404


def _unfolded(body: bytes) -> str:
    """The calendar object's text with its folded lines joined (a name may span a fold)."""
    return body.decode().replace("\r\n ", "").replace("\r\n\t", "")
