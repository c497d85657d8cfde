"""Changes until the lock, then only force majeure through the API; history is complete."""

from __future__ import annotations

import asyncio
import email
from datetime import UTC, datetime, timedelta
from email.policy import default

import icalendar
import pytest

from mailer.outbox import booking_messages
from scheduler import keys
from tests.conftest import Org, token_of

PARIS_DEC_2 = "2026-12-02T09:00:00+01:00"  # 08:00Z, well outside the lock on 2026-11-30
PARIS_DEC_3 = "2026-12-03T10:00:00+01:00"


async def _booked(org: Org, start: str = PARIS_DEC_2, **cand: object) -> tuple[str, dict, dict]:
    candidate = await org.make_candidate(**cand)
    token = token_of(candidate["link"])
    resp = await org.client.post(f"/c/{token}/booking", json={"start": start})
    assert resp.status == 201, await resp.text()
    return token, candidate, await resp.json()


async def _calendars(org: Org, booking_id: str) -> list[tuple[str, icalendar.Event, str]]:
    """(recipient, VEVENT, METHOD) of every message about the booking, oldest first."""
    import uuid

    async with org.client.app[keys.DB].read() as session:
        stored = await booking_messages(session, uuid.UUID(booking_id))
    out = []
    for m in stored:
        msg = email.message_from_bytes(m.raw, policy=default)
        part = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
        cal = icalendar.Calendar.from_ical(part.get_payload(decode=True))
        out.append((m.recipient, next(iter(cal.walk("VEVENT"))), str(cal["METHOD"])))
    return out


async def test_reschedule_keeps_uid_room_and_raises_sequence(make_org) -> None:
    org = await make_org()
    await org.make_evaluator(email="eva@cci.test")
    token, _, booking = await _booked(org, email="cam@example.test")
    before = await org.ok("GET", f"/bookings/{booking['id']}")

    resp = await org.client.put(f"/c/{token}/booking", json={"start": PARIS_DEC_3})
    assert resp.status == 200
    moved = await resp.json()
    assert moved["id"] == booking["id"]
    assert moved["start"] == PARIS_DEC_3
    # The room and its links survive a reschedule that keeps the evaluator.
    assert moved["room"] == booking["room"]
    after = await org.ok("GET", f"/bookings/{booking['id']}")
    assert after["sequence"] == before["sequence"] + 1
    assert after["rooms"] == before["rooms"]

    calendars = await _calendars(org, booking["id"])
    assert sorted((int(e["SEQUENCE"]), r, method) for r, e, method in calendars) == [
        (0, "cam@example.test", "REQUEST"),
        (0, "eva@cci.test", "REQUEST"),
        (1, "cam@example.test", "REQUEST"),
        (1, "eva@cci.test", "REQUEST"),
    ]
    assert len({str(e["UID"]) for _, e, _ in calendars}) == 1
    latest = [e for _, e, _ in calendars if int(e["SEQUENCE"]) == 1]
    assert {e.decoded("DTSTART") for e in latest} == {datetime(2026, 12, 3, 9, 0, tzinfo=UTC)}


async def test_cancel_then_book_again(make_org) -> None:
    org = await make_org()
    await org.make_evaluator()
    token, _, booking = await _booked(org)
    resp = await org.client.delete(f"/c/{token}/booking")
    assert resp.status == 200
    assert (await resp.json())["status"] == "cancelled"
    detail = await org.ok("GET", f"/bookings/{booking['id']}")
    assert detail["status"] == "cancelled" and detail["rooms"] is None
    methods = sorted(
        (int(e["SEQUENCE"]), m, str(e["STATUS"]))
        for _, e, m in await _calendars(org, booking["id"])
    )
    assert methods[-2:] == [(1, "CANCEL", "CANCELLED"), (1, "CANCEL", "CANCELLED")]
    again = await org.client.post(f"/c/{token}/booking", json={"start": PARIS_DEC_3})
    assert again.status == 201
    assert (await org.client.delete(f"/c/{token}/booking")).status == 200
    nothing = await org.client.delete(f"/c/{token}/booking")
    assert nothing.status == 409 and nothing.content_type == "application/problem+json"


@pytest.mark.parametrize(
    ("start", "boundary"),
    [
        # Spring forward in Paris (2026-03-29 02:00 -> 03:00): a Sunday 10:00 CEST interview
        # locks 24 real hours earlier, which is 09:00 CET on the Saturday.
        ("2026-03-29T10:00:00+02:00", datetime(2026, 3, 28, 8, 0, tzinfo=UTC)),
        # Fall back (2026-10-25 03:00 -> 02:00): 24 real hours before Sunday 10:00 CET is
        # Saturday 11:00 CEST.
        ("2026-10-25T10:00:00+01:00", datetime(2026, 10, 24, 9, 0, tzinfo=UTC)),
        ("2026-12-02T09:00:00+01:00", datetime(2026, 12, 1, 8, 0, tzinfo=UTC)),
    ],
)
async def test_lock_boundary_is_exact_in_real_time(make_org, clock, start, boundary) -> None:
    clock.set(datetime.fromisoformat(start) - timedelta(days=5))
    org = await make_org()
    every_day = [
        {"day": d, "start": "08:00", "end": "18:00"}
        for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    ]
    await org.make_evaluator(weekly=every_day)
    token, _, booking = await _booked(org, start=start)
    other = (datetime.fromisoformat(start) + timedelta(hours=2)).isoformat()

    clock.set(boundary - timedelta(seconds=1))
    moved = await org.client.put(f"/c/{token}/booking", json={"start": other})
    assert moved.status == 200
    back = await org.client.put(f"/c/{token}/booking", json={"start": start})
    assert back.status == 200

    clock.set(boundary)
    refused = await org.client.put(f"/c/{token}/booking", json={"start": other})
    assert refused.status == 403
    problem = await refused.json()
    assert problem["title"] == "Changes are closed"
    assert (await org.client.delete(f"/c/{token}/booking")).status == 403
    detail = await org.ok("GET", f"/bookings/{booking['id']}")
    assert detail["start"] == datetime.fromisoformat(start).astimezone(UTC).isoformat().replace(
        "+00:00", "Z"
    )
    assert detail["status"] in ("confirmed", "locked")


async def test_force_majeure_inside_the_lock_moves_and_keeps_the_reason(make_org, clock) -> None:
    org = await make_org()
    first = await org.make_evaluator(name="First", email="first@cci.test")
    second = await org.make_evaluator(name="Second", email="second@cci.test")
    token, cand, booking = await _booked(org, email="cam@example.test")
    clock.set(datetime(2026, 12, 2, 7, 0, tzinfo=UTC))  # one hour before: locked
    assert (await org.client.put(f"/c/{token}/booking", json={"start": PARIS_DEC_3})).status == 403

    status, problem = await org.call(
        "POST",
        f"/bookings/{booking['id']}/force-majeure",
        json={"action": "move", "start": PARIS_DEC_3},
    )
    assert status == 422 and problem["errors"][0]["field"] == "reason"
    status, problem = await org.call(
        "POST",
        f"/bookings/{booking['id']}/force-majeure",
        json={"action": "move", "start": PARIS_DEC_3, "reason": "   "},
    )
    assert status == 422

    current = booking_evaluator = await org.ok("GET", f"/bookings/{booking['id']}")
    target = second if current["evaluator_id"] == first["id"] else first
    moved = await org.ok(
        "POST",
        f"/bookings/{booking['id']}/force-majeure",
        json={
            "action": "move",
            "start": PARIS_DEC_3,
            "evaluator_id": target["id"],
            "reason": "Evaluator ill",
        },
    )
    assert moved["start"] == "2026-12-03T09:00:00Z" and moved["evaluator_id"] == target["id"]
    assert moved["sequence"] == 1
    # Another evaluator: a new evaluator link (the replaced one is revoked, see
    # tests/rooms/test_link_revocation.py); the candidate's is kept.
    assert moved["rooms"]["candidate"] == booking_evaluator["rooms"]["candidate"]
    assert moved["rooms"]["evaluator"] != booking_evaluator["rooms"]["evaluator"]
    old_link = token_of(booking_evaluator["rooms"]["evaluator"])
    assert (await org.client.get(f"/r/{old_link}/info")).status == 404

    history = (await org.ok("GET", f"/bookings/{booking['id']}/history"))["events"]
    assert [e["action"] for e in history] == ["booked", "force_majeure_move"]
    assert history[1]["reason"] == "Evaluator ill"
    assert history[1]["actor"] == "organisation" and history[1]["actor_name"] == "default"
    assert history[1]["before"]["start"].startswith("2026-12-02T08:00")
    assert history[1]["after"]["evaluator_id"] == target["id"]
    assert history[0]["actor"] == "candidate" and history[0]["actor_name"] == cand["name"]

    # The previous evaluator is told the old time is cancelled; the new one is invited.
    last = [(r, m) for r, e, m in await _calendars(org, booking["id"]) if int(e["SEQUENCE"]) == 1]
    previous = first if target is second else second
    assert sorted(last) == sorted(
        [
            ("cam@example.test", "REQUEST"),
            (target["email"], "REQUEST"),
            (previous["email"], "CANCEL"),
        ]
    )


async def test_force_majeure_never_double_books(make_org) -> None:
    org = await make_org()
    await org.make_evaluator(weekly=[{"day": "wed", "start": "09:00", "end": "10:00"}])
    _, _, a = await _booked(org, start="2026-12-02T09:00:00+01:00")
    _, _, b = await _booked(org, start="2026-12-02T09:40:00+01:00")
    status, problem = await org.call(
        "POST",
        f"/bookings/{b['id']}/force-majeure",
        json={"action": "move", "start": "2026-12-02T09:10:00+01:00", "reason": "Room"},
    )
    assert status == 409 and problem["status"] == 409
    assert (await org.ok("GET", f"/bookings/{b['id']}"))["start"] == "2026-12-02T08:40:00Z"
    cancelled = await org.ok(
        "POST",
        f"/bookings/{a['id']}/force-majeure",
        json={"action": "cancel", "reason": "Candidate ill"},
    )
    assert cancelled["status"] == "cancelled"
    history = (await org.ok("GET", f"/bookings/{a['id']}/history"))["events"]
    assert history[-1]["action"] == "force_majeure_cancel"
    assert history[-1]["reason"] == "Candidate ill"


async def test_a_candidate_link_cannot_call_the_organisation_api(make_org) -> None:
    org = await make_org()
    await org.make_evaluator()
    token, _, booking = await _booked(org)
    for credential in (token, f"viva_{token}"):
        resp = await org.client.post(
            f"/api/v1/bookings/{booking['id']}/force-majeure",
            json={"action": "cancel", "reason": "x"},
            headers={"Authorization": f"Bearer {credential}"},
        )
        assert resp.status == 401
    assert (await org.ok("GET", f"/bookings/{booking['id']}"))["status"] == "confirmed"


async def test_two_tabs_rescheduling_at_once(make_org) -> None:
    org = await make_org()
    await org.make_evaluator()
    token, _, booking = await _booked(org)
    targets = ["2026-12-03T09:00:00+01:00", "2026-12-04T09:00:00+01:00"]
    statuses = await asyncio.gather(
        *(org.client.put(f"/c/{token}/booking", json={"start": t}) for t in targets)
    )
    assert sorted(r.status for r in statuses) == [200, 200]  # serialised, both valid moves
    final = await org.ok("GET", f"/bookings/{booking['id']}")
    assert final["sequence"] == 2
    history = (await org.ok("GET", f"/bookings/{booking['id']}/history"))["events"]
    assert [e["action"] for e in history] == ["booked", "rescheduled", "rescheduled"]
    assert history[2]["before"]["start"] == history[1]["after"]["start"]
    assert history[2]["after"]["start"] == final["start"].replace("Z", "+00:00")


async def test_reschedule_racing_another_candidates_booking(make_org) -> None:
    org = await make_org()
    await org.make_evaluator()
    token, _, mine = await _booked(org, start="2026-12-02T09:00:00+01:00")
    rival = await org.make_candidate()
    rival_token = token_of(rival["link"])
    wanted = "2026-12-03T09:00:00+01:00"
    move, take = await asyncio.gather(
        org.client.put(f"/c/{token}/booking", json={"start": wanted}),
        org.client.post(f"/c/{rival_token}/booking", json={"start": wanted}),
    )
    assert sorted([move.status, take.status]) == [200, 409] or sorted(
        [move.status, take.status]
    ) == [201, 409]
    bookings = [
        b for b in (await org.ok("GET", "/bookings"))["bookings"] if b["status"] != "cancelled"
    ]
    assert [b["start"] for b in bookings].count("2026-12-03T08:00:00Z") == 1
    if move.status == 409:  # the failed reschedule kept the old booking intact
        kept = await org.ok("GET", f"/bookings/{mine['id']}")
        assert kept["start"] == "2026-12-02T08:00:00Z" and kept["sequence"] == 0
