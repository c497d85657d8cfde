"""No double booking, whatever the concurrency: the database decides, on both backends."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlalchemy import func, select

from scheduler import keys
from scheduler.models import Booking
from tests.conftest import token_of

RACERS = 200


@pytest.mark.slow
async def test_200_candidates_race_for_one_slot(make_org) -> None:
    org = await make_org()
    await org.make_evaluator(weekly=[{"day": "tue", "start": "09:00", "end": "09:20"}])
    candidates = [
        await org.make_candidate(name=f"Racer {i}", email=f"racer{i}@example.org")
        for i in range(RACERS)
    ]
    tokens = [token_of(c["link"]) for c in candidates]
    slots = await (
        await org.client.get(
            f"/c/{tokens[0]}/slots", params={"from": "2026-12-01", "to": "2026-12-01"}
        )
    ).json()
    assert [s["start"] for s in slots["slots"]] == ["2026-12-01T09:00:00+01:00"]
    start = slots["slots"][0]["start"]

    async def confirm(token: str) -> tuple[int, dict]:
        resp = await org.client.post(f"/c/{token}/booking", json={"start": start})
        return resp.status, await resp.json(content_type=None)

    results = await asyncio.gather(*(confirm(t) for t in tokens))
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 1, 409: RACERS - 1}
    for status, body in results:
        if status == 409:
            assert body["status"] == 409
            assert body["timezone"] == "Europe/Paris"
            assert body["slots"] == []  # the only slot is gone, and the answer says so

    async with org.client.app[keys.DB].read() as session:
        count = await session.scalar(select(func.count()).select_from(Booking))
    assert count == 1


async def test_one_candidate_two_tabs_books_once(make_org) -> None:
    org = await make_org()
    await org.make_evaluator(name="A")
    await org.make_evaluator(name="B")
    cand = await org.make_candidate()
    token = token_of(cand["link"])
    slots = (await (await org.client.get(f"/c/{token}/slots")).json())["slots"]

    async def confirm(start: str) -> int:
        resp = await org.client.post(f"/c/{token}/booking", json={"start": start})
        return resp.status

    statuses = await asyncio.gather(*(confirm(s["start"]) for s in slots[:10]))
    assert sorted(statuses) == [201] + [409] * 9


async def test_two_evaluators_fill_before_the_slot_disappears(make_org) -> None:
    """Viva picks the evaluator: a slot stays green while one qualified evaluator is free."""
    org = await make_org()
    one = await org.make_evaluator(
        name="One", weekly=[{"day": "tue", "start": "09:00", "end": "09:20"}]
    )
    two = await org.make_evaluator(
        name="Two", weekly=[{"day": "tue", "start": "09:00", "end": "09:20"}]
    )
    tokens = [
        token_of((await org.make_candidate(email=f"p{i}@example.org"))["link"]) for i in range(3)
    ]
    start = "2026-12-01T09:00:00+01:00"
    statuses = [
        (await org.client.post(f"/c/{t}/booking", json={"start": start})).status for t in tokens
    ]
    assert statuses == [201, 201, 409]
    booked = (await org.ok("GET", "/bookings"))["bookings"]
    assert {b["evaluator_id"] for b in booked} == {one["id"], two["id"]}


async def test_the_schema_itself_refuses_overlapping_bookings(make_org) -> None:
    """Even code that skipped the booking transaction could not double-book an evaluator."""
    import uuid
    from datetime import timedelta

    import pytest
    from sqlalchemy.exc import IntegrityError

    org = await make_org()
    await org.make_evaluator()
    cand_a = await org.make_candidate()
    cand_b = await org.make_candidate()
    token = token_of(cand_a["link"])
    slots = (await (await org.client.get(f"/c/{token}/slots")).json())["slots"]
    await org.client.post(f"/c/{token}/booking", json={"start": slots[0]["start"]})
    db = org.client.app[keys.DB]
    async with db.read() as session:
        first = await session.scalar(select(Booking))
    overlap_start = first.start_at + timedelta(minutes=25)  # inside end + 10 min buffer
    with pytest.raises(IntegrityError):
        async with db.write() as session:
            session.add(
                Booking(
                    id=uuid.uuid4(),
                    organisation_id=first.organisation_id,
                    candidate_id=uuid.UUID(cand_b["id"]),
                    evaluator_id=first.evaluator_id,
                    start_at=overlap_start,
                    end_at=overlap_start + timedelta(minutes=20),
                    block_end=overlap_start + timedelta(minutes=30),
                    status="confirmed",
                    sequence=0,
                    candidate_room_nonce="x",
                    evaluator_room_nonce="x",
                    created_at=first.created_at,
                    updated_at=first.created_at,
                )
            )
    async with db.read() as session:
        assert await session.scalar(select(func.count()).select_from(Booking)) == 1
