"""An evaluator's calendar feed: their interviews as their invitations describe them."""

from __future__ import annotations

import email
import uuid
from datetime import timedelta
from email.policy import default

import icalendar
from multidict import CIMultiDict

from mailer.outbox import booking_messages
from scheduler import keys
from tests.conftest import Org, token_of

PARIS_DEC_2 = "2026-12-02T09:00:00+01:00"
PARIS_DEC_3 = "2026-12-03T10:00:00+01:00"


async def _booked(org: Org, start: str = PARIS_DEC_2) -> tuple[str, dict]:
    candidate = await org.make_candidate()
    token = token_of(candidate["link"])
    resp = await org.client.post(f"/c/{token}/booking", json={"start": start})
    assert resp.status == 201, await resp.text()
    return token, await resp.json()


def _feed_path(url: str) -> str:
    assert url.startswith("http://viva.test/feeds/") and url.endswith(".ics")
    return url.removeprefix("http://viva.test")


async def _invitation_events(org: Org, booking_id: str, to: str) -> list[icalendar.Event]:
    async with org.client.app[keys.DB].read() as session:
        stored = await booking_messages(session, uuid.UUID(booking_id))
    events = []
    for m in stored:
        if m.recipient != to:
            continue
        msg = email.message_from_bytes(m.raw, policy=default)
        part = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
        cal = icalendar.Calendar.from_ical(part.get_payload(decode=True))
        events.append(next(iter(cal.walk("VEVENT"))))
    return events


async def _feed(org: Org, path: str, **headers: str) -> tuple[int, CIMultiDict[str], bytes]:
    resp = await org.client.get(path, headers=headers)
    return resp.status, CIMultiDict(resp.headers), await resp.read()


async def test_the_feed_holds_the_invitations_events_and_cancellations(make_org) -> None:
    org = await make_org()
    ev = await org.make_evaluator(email="eva@cci.test")
    assert ev["calendar_feed_webcal"] == "webcal://" + ev["calendar_feed"].split("://", 1)[1]
    path = _feed_path(ev["calendar_feed"])
    kept_token, kept = await _booked(org)
    gone_token, gone = await _booked(org, PARIS_DEC_3)
    resp = await org.client.delete(f"/c/{gone_token}/booking")
    assert resp.status in (200, 204), await resp.text()

    status, headers, body = await _feed(org, path)
    assert status == 200
    assert headers["Content-Type"].startswith("text/calendar")
    assert "no-store" not in headers["Cache-Control"]
    cal = icalendar.Calendar.from_ical(body)
    assert "METHOD" not in cal
    events = {str(e["UID"]): e for e in cal.walk("VEVENT")}
    assert set(events) == {kept["id"], gone["id"]}

    (invited,) = await _invitation_events(org, kept["id"], "eva@cci.test")
    mine = events[kept["id"]]
    assert str(mine["UID"]) == str(invited["UID"])
    assert int(mine["SEQUENCE"]) == int(invited["SEQUENCE"])
    assert mine.decoded("DTSTART") == invited.decoded("DTSTART")
    assert str(mine["LOCATION"]) == str(invited["LOCATION"])  # the evaluator's room link
    assert "/r/" in str(mine["LOCATION"])
    assert str(mine["SUMMARY"]) == str(invited["SUMMARY"])
    assert str(mine["STATUS"]) == "CONFIRMED"

    cancelled = events[gone["id"]]
    mails = await _invitation_events(org, gone["id"], "eva@cci.test")
    last_mail = max(mails, key=lambda e: int(e["SEQUENCE"]))
    assert str(last_mail["STATUS"]) == str(cancelled["STATUS"]) == "CANCELLED"
    assert int(cancelled["SEQUENCE"]) == int(last_mail["SEQUENCE"]) > 0
    assert kept_token  # the kept booking's candidate still holds it


async def test_conditional_get_answers_304_until_something_changes(make_org) -> None:
    org = await make_org()
    ev = await org.make_evaluator()
    path = _feed_path(ev["calendar_feed"])
    token, _ = await _booked(org)
    status, headers, _ = await _feed(org, path)
    assert status == 200 and headers["ETag"] and headers["Last-Modified"]

    status, again, rest = await _feed(org, path, **{"If-None-Match": headers["ETag"]})
    assert (status, rest) == (304, b"")
    assert again["ETag"] == headers["ETag"]
    status, _, _ = await _feed(org, path, **{"If-Modified-Since": headers["Last-Modified"]})
    assert status == 304
    # An older copy, or another ETag, gets the body.
    status, _, _ = await _feed(org, path, **{"If-None-Match": '"something-else"'})
    assert status == 200
    status, _, _ = await _feed(org, path, **{"If-Modified-Since": "Mon, 01 Jan 2024 00:00:00 GMT"})
    assert status == 200

    # A change (the interview moves): a new ETag, and the old one no longer answers 304.
    org.client.app[keys.CLOCK].advance(timedelta(minutes=5))
    resp = await org.client.put(f"/c/{token}/booking", json={"start": PARIS_DEC_3})
    assert resp.status == 200
    status, moved, _ = await _feed(org, path, **{"If-None-Match": headers["ETag"]})
    assert status == 200
    assert moved["ETag"] != headers["ETag"]


async def test_interviews_older_than_30_days_leave_the_feed(make_org) -> None:
    org = await make_org()
    ev = await org.make_evaluator()
    path = _feed_path(ev["calendar_feed"])
    _, booked = await _booked(org)
    clock = org.client.app[keys.CLOCK]
    clock.advance(timedelta(days=31))
    _, _, body = await _feed(org, path)
    assert [str(e["UID"]) for e in icalendar.Calendar.from_ical(body).walk("VEVENT")] == [
        booked["id"]
    ]
    clock.advance(timedelta(days=2))
    _, _, body = await _feed(org, path)
    assert list(icalendar.Calendar.from_ical(body).walk("VEVENT")) == []


async def test_a_reissued_link_revokes_the_old_one(make_org) -> None:
    org = await make_org()
    ev = await org.make_evaluator()
    old = _feed_path(ev["calendar_feed"])
    assert (await _feed(org, old))[0] == 200
    fresh = await org.ok("POST", f"/evaluators/{ev['id']}/calendar_feed")
    assert fresh["calendar_feed"] != ev["calendar_feed"]
    assert (await org.ok("GET", f"/evaluators/{ev['id']}"))["calendar_feed"] == fresh[
        "calendar_feed"
    ]
    assert (await _feed(org, old))[0] == 404
    assert (await _feed(org, _feed_path(fresh["calendar_feed"])))[0] == 200


async def test_a_removed_evaluators_feed_is_gone(make_org) -> None:
    org = await make_org()
    ev = await org.make_evaluator()
    path = _feed_path(ev["calendar_feed"])
    await org.ok("DELETE", f"/evaluators/{ev['id']}")
    assert (await _feed(org, path))[0] == 404


async def test_guessed_feed_links_are_throttled(make_org) -> None:
    org = await make_org()
    ev = await org.make_evaluator()
    good = _feed_path(ev["calendar_feed"])
    token = good.removeprefix("/feeds/").removesuffix(".ics")
    # Same length, one MAC character changed: a well-formed guess.
    forged = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    limit = org.client.app[keys.SETTINGS].security.max_failures
    for _ in range(limit):
        assert (await _feed(org, f"/feeds/{forged}.ics"))[0] == 404
    status, headers, _ = await _feed(org, f"/feeds/{forged}.ics")
    assert status == 429 and "Retry-After" in headers
    # Past the limit, even the right link waits: the client is throttled, not the link.
    assert (await _feed(org, good))[0] == 429


async def test_feed_links_are_hidden_in_logs(make_org) -> None:
    from scheduler.logs import redact

    org = await make_org()
    ev = await org.make_evaluator()
    path = _feed_path(ev["calendar_feed"])
    token = path.removeprefix("/feeds/").removesuffix(".ics")
    line = redact(f'127.0.0.1 "GET {path} HTTP/1.1" 200')
    assert token not in line and "/feeds/…#" in line
