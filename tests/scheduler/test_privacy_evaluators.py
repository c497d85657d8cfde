"""An evaluator's erasure: after it, nothing in the database (every table, every column) or
the data folder names them, their past interviews keep an anonymous evaluator and their
links are dead; refused while they have an interview ahead. SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from scheduler import history, keys
from scheduler.models import Booking
from tests.conftest import token_of
from tests.rooms.room_support import consent
from tests.scheduler.test_privacy import _database_hits, _folder_hits

NAME = "Wilhelmina Vexcombe"
EMAIL = "w.vexcombe@example.org"


async def test_after_erasure_nothing_names_the_evaluator(make_org: Any, clock: Any) -> None:
    org = await make_org()
    app = org.client.app
    ev = await org.make_evaluator(name=NAME, email=EMAIL)
    cand = await org.make_candidate(name="Camille Candidate")
    token = token_of(cand["link"])
    slots = await (await org.client.get(f"/c/{token}/slots")).json()
    booked = await org.client.post(
        f"/c/{token}/booking", json={"start": slots["slots"][0]["start"]}
    )
    assert booked.status == 201, await booked.text()
    booking_id = (await booked.json())["id"]
    detail = await org.ok("GET", f"/bookings/{booking_id}")
    room_token = token_of(detail["rooms"]["evaluator"])
    await consent(org.client, room_token)
    async with app[keys.DB].write() as session:
        booking = await session.get(Booking, uuid.UUID(booking_id))
        assert booking is not None
        # What the room writes when the evaluator ends the interview, and a reason that
        # names them (force majeure reasons are free text).
        await history.record(
            session,
            booking,
            actor=history.Actor("evaluator", NAME),
            action="note",
            now=clock.now(),
            reason=f"{NAME.upper()} asked for a quieter room",
        )
    # Their own calendar (its user name is their address) and their feed.
    await org.ok(
        "PUT",
        f"/evaluators/{ev['id']}/calendars",
        json={
            "calendars": [
                {
                    "type": "caldav",
                    "url": "https://dav.example.org/calendars/evelyne/",
                    "username": EMAIL,
                    "password": "s3cret-of-the-evaluator",
                }
            ]
        },
    )
    feed = urlsplit((await org.ok("GET", f"/evaluators/{ev['id']}"))["calendar_feed"]).path
    assert (await org.client.get(feed)).status == 200
    needles = [NAME, *NAME.split(), EMAIL, room_token, "dav.example.org/calendars/evelyne"]
    data = app[keys.SETTINGS].data_path
    before = {n for _, _, n in await _database_hits(app, needles)}
    assert {NAME, EMAIL, room_token} <= before, before

    # An interview ahead: it would lose its evaluator.
    status, problem = await org.call("DELETE", f"/evaluators/{ev['id']}", json={"mode": "erase"})
    assert status == 409 and "ahead" in problem["detail"]
    status, _ = await org.call("DELETE", f"/evaluators/{ev['id']}", json={"mode": "forget"})
    assert status == 422
    assert {n for _, _, n in await _database_hits(app, needles)} == before

    clock.set(datetime.fromisoformat(detail["end"]) + timedelta(days=1))
    assert (await org.client.get(f"/r/{room_token}/info")).status == 200, "the link works"
    status, _ = await org.call("DELETE", f"/evaluators/{ev['id']}", json={"mode": "erase"})
    assert status == 204

    assert await _database_hits(app, needles) == set()
    assert _folder_hits(data, needles) == set()
    # The interview stays, with its (anonymous) evaluator, and the erasure in its history.
    after = await org.ok("GET", f"/bookings/{booking_id}")
    assert after["evaluator_id"] == ev["id"] and after["status"] == detail["status"]
    events = (await org.ok("GET", f"/bookings/{booking_id}/history"))["events"]
    assert events[-1]["action"] == "evaluator_erased" and events[-1]["reason"] is None
    assert any(e["actor_name"] == "(erased evaluator)" for e in events)
    # The candidate is untouched.
    assert (await org.ok("GET", f"/candidates/{cand['id']}"))["name"] == "Camille Candidate"
    # The evaluator is gone from the API and their room link is dead.
    status, _ = await org.call("GET", f"/evaluators/{ev['id']}")
    assert status == 404
    assert (await org.client.get(f"/r/{room_token}/info")).status == 404
    assert (await org.client.get(feed)).status == 404, "their calendar feed is dead"


async def test_removal_without_a_body_keeps_the_name(make_org: Any) -> None:
    org = await make_org()
    ev = await org.make_evaluator(name=NAME, email=EMAIL)
    status, _ = await org.call("DELETE", f"/evaluators/{ev['id']}")
    assert status == 204
    hits = await _database_hits(org.client.app, [NAME])
    assert ("evaluators", "name", NAME) in hits
