"""A candidate who has not joined by start + no_show_after_minutes is marked no_show."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from rooms.models import record_join
from scheduler import keys
from tests.conftest import token_of

START = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)  # 09:00 in Paris


async def _booking(make_org) -> tuple[object, dict]:
    org = await make_org()
    await org.make_evaluator()
    cand = await org.make_candidate()
    token = token_of(cand["link"])
    resp = await org.client.post(f"/c/{token}/booking", json={"start": START.isoformat()})
    assert resp.status == 201
    return org, await resp.json()


async def test_absent_candidate_is_marked_no_show(make_org, clock) -> None:
    org, booking = await _booking(make_org)
    timers = org.client.app[keys.TIMERS]
    clock.set(START + timedelta(minutes=9, seconds=59))
    await timers.run_due()
    assert (await org.ok("GET", f"/bookings/{booking['id']}"))["status"] == "locked"
    clock.set(START + timedelta(minutes=10))
    await timers.run_due()
    detail = await org.ok("GET", f"/bookings/{booking['id']}")
    assert detail["status"] == "no_show"
    history = (await org.ok("GET", f"/bookings/{booking['id']}/history"))["events"]
    assert history[-1]["action"] == "no_show" and history[-1]["actor"] == "system"


async def test_candidate_who_joined_in_time_is_not_marked(make_org, clock) -> None:
    org, booking = await _booking(make_org)
    async with org.client.app[keys.DB].write() as session:
        await record_join(
            session, uuid.UUID(booking["id"]), "candidate", START + timedelta(minutes=3)
        )
    clock.set(START + timedelta(minutes=30))
    await org.client.app[keys.TIMERS].run_due()
    assert (await org.ok("GET", f"/bookings/{booking['id']}"))["status"] == "locked"


async def test_a_moved_booking_moves_its_no_show_mark(make_org, clock) -> None:
    org, booking = await _booking(make_org)
    token_owner = (await org.ok("GET", f"/bookings/{booking['id']}"))["candidate_id"]
    cand = await org.ok("GET", f"/candidates/{token_owner}")
    token = token_of(cand["link"])
    later = START + timedelta(days=1)
    assert (
        await org.client.put(f"/c/{token}/booking", json={"start": later.isoformat()})
    ).status == 200
    clock.set(START + timedelta(minutes=15))
    await org.client.app[keys.TIMERS].run_due()
    # Inside the new time's lock window now, but nobody missed anything yet.
    assert (await org.ok("GET", f"/bookings/{booking['id']}"))["status"] == "locked"
    clock.set(later + timedelta(minutes=10))
    await org.client.app[keys.TIMERS].run_due()
    assert (await org.ok("GET", f"/bookings/{booking['id']}"))["status"] == "no_show"


async def test_after_a_no_show_the_candidate_cannot_book_again_alone(make_org, clock) -> None:
    org, booking = await _booking(make_org)
    clock.set(START + timedelta(minutes=10))
    await org.client.app[keys.TIMERS].run_due()
    detail = await org.ok("GET", f"/bookings/{booking['id']}")
    cand = await org.ok("GET", f"/candidates/{detail['candidate_id']}")
    token = token_of(cand["link"])
    page = await org.client.get(f"/c/{token}?lang=en")
    assert page.status == 200
    text = await page.text()
    assert "Your interview time has passed" in text and 'class="slot' not in text
    again = await org.client.post(
        f"/c/{token}/booking", json={"start": (START + timedelta(days=2)).isoformat()}
    )
    assert again.status == 409
    statuses = [b["status"] for b in (await org.ok("GET", "/bookings"))["bookings"]]
    assert statuses == ["no_show"]
