"""The evaluator's assessment form behind the room link: /r/{token}/assessment.

Only the evaluator's link opens it; the draft is saved as typed, submitted once, and an
interview ended as a no-show, interrupted or with the identity refused has none. The clock
is inside the room's window (the `booked` fixture) unless a test moves it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from rooms.models import load_state, save_state
from rooms.tokens import new_nonce
from scheduler import keys
from scheduler.clock import FrozenClock
from scheduler.models import Assessment, Booking
from scheduler.room_wiring import interview_ended
from scheduler.scheme import DEFAULT
from tests.rooms.room_support import Booked

FULL = {
    "levels": {c: "B2" for c in DEFAULT.criterion_codes} | {"accuracy": "B1"},
    "overall_level": "B2",
    "comment": "Précise, à l'aise ; quelques erreurs d'accord.",
}
OWN = {"Origin": "http://viva.test", "Sec-Fetch-Site": "same-origin"}


async def _rows(client: TestClient) -> list[Assessment]:
    async with client.app[keys.DB].read() as session:
        return list(await session.scalars(select(Assessment)))


async def _end(client: TestClient, booked: Booked, outcome: str, clock: FrozenClock) -> None:
    """What the room server does when the evaluator ends the interview: the room's state
    and, for a no-show or a completed one, the booking's status, in one transaction."""
    async with client.app[keys.DB].write() as session:
        state = await load_state(session, booked.booking_id)
        now = clock.now()
        await save_state(session, state.but(ended_at=now, outcome=outcome), now=now)
        await interview_ended(session, booked.booking_id, outcome, now)


async def test_the_evaluator_saves_a_draft_then_submits_it_once(
    client: TestClient, booked: Booked, clock: FrozenClock
) -> None:
    url = f"/r/{booked.evaluator_token}/assessment"
    first = await (await client.get(url)).json()
    assert first["state"] == "none" and first["reason"] is None and first["assessment"] is None
    assert first["scheme"]["levels"][0]["code"] == "below_A1"

    resp = await client.put(url, json={"levels": {"range": "B1", "fluency": ""}}, headers=OWN)
    assert resp.status == 200, await resp.text()
    draft = await (await client.get(url)).json()
    assert draft["state"] == "draft"
    assert draft["assessment"]["levels"] == {"range": "B1"}
    assert draft["assessment"]["submitted_at"] is None

    # Incomplete: refused, naming what is missing; still a draft.
    resp = await client.post(f"{url}/submit", json={"levels": {"range": "B1"}}, headers=OWN)
    assert resp.status == 422
    assert {e["field"] for e in (await resp.json())["errors"]} == {"levels", "overall_level"}
    assert (await (await client.get(url)).json())["state"] == "draft"

    clock.advance(timedelta(minutes=1))
    resp = await client.post(f"{url}/submit", json=FULL, headers=OWN)
    assert resp.status == 200, await resp.text()
    done = await resp.json()
    assert done["state"] == "submitted"
    assert done["assessment"]["levels"] == FULL["levels"]
    assert done["assessment"]["submitted_at"] == clock.now().isoformat().replace("+00:00", "Z")

    # Once: neither a new draft nor a second submission changes it.
    for method, path in (("PUT", url), ("POST", f"{url}/submit")):
        resp = await client.request(method, path, json={"comment": "changed"}, headers=OWN)
        assert resp.status == 409, (method, await resp.text())
        assert resp.content_type == "application/problem+json"
    [row] = await _rows(client)
    assert row.comment == FULL["comment"] and row.submitted_at == clock.now()

    # In the booking's history: who submitted, when, and what.
    events = (await booked.org.ok("GET", f"/bookings/{booked.booking_id}/history"))["events"]
    submitted = [e for e in events if e["action"] == "assessment_submitted"]
    assert len(submitted) == 1
    assert submitted[0]["actor"] == "evaluator"
    assert submitted[0]["after"]["overall_level"] == "B2"
    assert submitted[0]["after"]["levels"]["accuracy"] == "B1"


async def test_submitting_without_a_body_submits_the_saved_draft(
    client: TestClient, booked: Booked
) -> None:
    url = f"/r/{booked.evaluator_token}/assessment"
    assert (await client.put(url, json=FULL, headers=OWN)).status == 200
    resp = await client.post(f"{url}/submit", headers=OWN)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["assessment"]["overall_level"] == "B2"


async def test_the_candidate_s_link_is_refused_and_saves_nothing(
    client: TestClient, booked: Booked
) -> None:
    url = f"/r/{booked.candidate_token}/assessment"
    resp = await client.get(url)
    assert resp.status == 403
    assert resp.content_type == "application/problem+json"
    for method, path in (("PUT", url), ("POST", f"{url}/submit")):
        resp = await client.request(method, path, json=FULL, headers=OWN)
        assert resp.status == 403, (method, await resp.text())
    assert await _rows(client) == []


async def test_a_bad_or_replaced_evaluator_link_is_not_found(
    client: TestClient, booked: Booked
) -> None:
    token = booked.evaluator_token
    resp = await client.put(f"/r/{token[:-2]}xx/assessment", json=FULL, headers=OWN)
    assert resp.status == 404
    # The booking went to another evaluator: the replaced one's link is revoked.
    async with client.app[keys.DB].write() as session:
        booking = await session.get(Booking, booked.booking_id)
        assert booking is not None
        booking.evaluator_room_nonce = new_nonce()
    for method, path in (
        ("GET", f"/r/{token}/assessment"),
        ("PUT", f"/r/{token}/assessment"),
        ("POST", f"/r/{token}/assessment/submit"),
    ):
        resp = await client.request(method, path, json=FULL, headers=OWN)
        assert resp.status == 404, method
        assert resp.content_type == "application/problem+json"
    assert await _rows(client) == []


async def test_a_cross_site_save_is_refused(client: TestClient, booked: Booked) -> None:
    url = f"/r/{booked.evaluator_token}/assessment"
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        assert (await client.put(url, json=FULL, headers=headers)).status == 403
        assert (await client.post(f"{url}/submit", json=FULL, headers=headers)).status == 403
    assert await _rows(client) == []


async def test_bad_input_is_refused_and_changes_nothing(client: TestClient, booked: Booked) -> None:
    url = f"/r/{booked.evaluator_token}/assessment"
    assert (await client.put(url, json={"levels": {"range": "A2"}}, headers=OWN)).status == 200
    for body in (
        {"levels": {"range": "Z9"}},
        {"levels": {"grammar": "B1"}},
        {"overall_level": "B3"},
        {"comment": "x" * 5001},
        {"levels": "B1"},
        {"colour": "red"},
    ):
        resp = await client.put(url, json=body, headers=OWN)
        assert resp.status == 422, body
        assert resp.content_type == "application/problem+json"
    resp = await client.put(url, data=b"{", headers={**OWN, "Content-Type": "application/json"})
    assert resp.status == 422
    [row] = await _rows(client)
    assert row.levels == {"range": "A2"}


async def test_the_form_works_after_the_end_until_the_room_closes(
    client: TestClient, booked: Booked, clock: FrozenClock
) -> None:
    url = f"/r/{booked.evaluator_token}/assessment"
    clock.set(booked.end + timedelta(minutes=1))
    await _end(client, booked, "completed", clock)
    assert (await client.put(url, json=FULL, headers=OWN)).status == 200
    closes = booked.end + timedelta(minutes=client.app[keys.SETTINGS].rooms.close_after_minutes)
    clock.set(closes)
    resp = await client.post(f"{url}/submit", headers=OWN)
    assert resp.status == 409
    assert (await resp.json())["window"] == "too_late"
    # Still readable, and still a draft: the organisation takes it from here.
    assert (await (await client.get(url)).json())["state"] == "draft"


@pytest.mark.parametrize("outcome", ["no_show", "interrupted", "id_refused"])
async def test_an_interview_ended_without_an_oral_has_no_assessment(
    client: TestClient, booked: Booked, clock: FrozenClock, outcome: str
) -> None:
    url = f"/r/{booked.evaluator_token}/assessment"
    assert (await client.put(url, json={"levels": {"range": "A2"}}, headers=OWN)).status == 200
    clock.set(booked.start + timedelta(minutes=10))
    await _end(client, booked, outcome, clock)
    for method, path in (("PUT", url), ("POST", f"{url}/submit")):
        resp = await client.request(method, path, json=FULL, headers=OWN)
        assert resp.status == 409, (method, await resp.text())
        body = await resp.json()
        assert body["reason"] == outcome
        assert outcome in body["detail"]
    shown = await (await client.get(url)).json()
    assert shown["assessment"] is None and shown["reason"] == outcome
    api = await booked.org.ok("GET", f"/bookings/{booked.booking_id}/assessment")
    assert api["assessment"] is None and api["reason"] == outcome and api["state"] == "none"
    [row] = await _rows(client)
    assert row.submitted_at is None and row.levels == {"range": "A2"}


async def test_the_result_side_reads_only_a_submitted_assessment(
    client: TestClient, booked: Booked
) -> None:
    from scheduler.assessments import submitted

    url = f"/r/{booked.evaluator_token}/assessment"
    assert (await client.put(url, json=FULL, headers=OWN)).status == 200
    async with client.app[keys.DB].read() as session:
        assert await submitted(session, booked.booking_id) is None
    assert (await client.post(f"{url}/submit", headers=OWN)).status == 200
    async with client.app[keys.DB].read() as session:
        found: Any = await submitted(session, booked.booking_id)
    assert found is not None
    assert found.levels == FULL["levels"] and found.overall_level == "B2"
    assert found.scheme == DEFAULT and found.comment == FULL["comment"]


async def test_simultaneous_saves_and_submissions_end_in_one_row_and_one_submission(
    client: TestClient, booked: Booked
) -> None:
    """Two tabs of the evaluator's: the first saves of a new assessment race to insert its
    row, and two submissions race each other; the booking's row lock makes them take turns,
    on PostgreSQL as on SQLite, so none fails with a server error."""
    url = f"/r/{booked.evaluator_token}/assessment"
    saves = await asyncio.gather(
        *(
            client.put(url, json={"levels": {"range": level}}, headers=OWN)
            for level in ("A1", "A2", "B1", "B2", "C1", "C2")
        )
    )
    assert [r.status for r in saves] == [200] * 6
    submits = await asyncio.gather(
        *(client.post(f"{url}/submit", json=FULL, headers=OWN) for _ in range(3))
    )
    assert sorted(r.status for r in submits) == [200, 409, 409]
    [row] = await _rows(client)
    assert row.submitted_at is not None
    events = (await booked.org.ok("GET", f"/bookings/{booked.booking_id}/history"))["events"]
    assert [e["action"] for e in events].count("assessment_submitted") == 1
