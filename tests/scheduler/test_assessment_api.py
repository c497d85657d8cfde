"""The assessment through the organisation API: the scheme (GET/PUT
/organisation/assessment) and a booking's assessment (GET/PUT /bookings/{id}/assessment)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from scheduler import keys
from scheduler.clock import FrozenClock
from scheduler.models import Assessment, Organisation
from scheduler.scheme import DEFAULT
from tests.rooms.room_support import book_interview, inside_window

OWN = {"Origin": "http://viva.test", "Sec-Fetch-Site": "same-origin"}
FULL = {
    "levels": {c: "B2" for c in DEFAULT.criterion_codes},
    "overall_level": "B2",
    "comment": "Aisée.",
}


def _items(*codes: str) -> list[dict[str, Any]]:
    return [{"code": c, "labels": {"fr": f"{c} (fr)", "en": f"{c} (en)"}} for c in codes]


SMALL = {"levels": _items("pass_low", "pass", "merit"), "criteria": _items("speaking")}


async def _stored_scheme(client: TestClient, org_id: Any) -> Any:
    async with client.app[keys.DB].read() as session:
        org = await session.get(Organisation, org_id)
        assert org is not None
        return org.assessment_scheme


async def test_the_scheme_is_the_default_until_replaced(make_org: Any, client: TestClient) -> None:
    org = await make_org()
    scheme = await org.ok("GET", "/organisation/assessment")
    assert scheme == DEFAULT.to_json()
    assert await _stored_scheme(client, org.id) is None
    assert await org.ok("PUT", "/organisation/assessment", json=SMALL) == SMALL
    assert await org.ok("GET", "/organisation/assessment") == SMALL


async def test_a_bad_scheme_is_refused_and_changes_nothing(
    make_org: Any, client: TestClient
) -> None:
    org = await make_org()
    await org.ok("PUT", "/organisation/assessment", json=SMALL)
    bad_bodies = [
        {"levels": [], "criteria": _items("speaking")},
        {"levels": _items("A1"), "criteria": []},
        {"levels": _items("A1", "A1"), "criteria": _items("speaking")},
        {"levels": _items("A1"), "criteria": _items("speaking", "speaking")},
        {"levels": _items("A 1"), "criteria": _items("speaking")},
        {"levels": [{"code": "A1", "labels": {"fr": "A1"}}], "criteria": _items("speaking")},
        {"levels": [{"code": "A1", "labels": {"fr": "", "en": "A1"}}], "criteria": _items("s")},
        {"levels": [{"code": "A1", "labels": {"fr": "x" * 101, "en": "A"}}], "criteria": []},
        {"levels": _items(*(f"L{n}" for n in range(21))), "criteria": _items("s")},
        {"levels": _items("A1")},
        {"levels": _items("A1"), "criteria": _items("s"), "extra": 1},
    ]
    for body in bad_bodies:
        status, problem = await org.call("PUT", "/organisation/assessment", json=body)
        assert status == 422, (body, problem)
        assert problem["errors"], body
    status, problem = await org.call(
        "PUT",
        "/organisation/assessment",
        json={"levels": _items("A1", "A1"), "criteria": _items("s")},
    )
    assert [e["field"] for e in problem["errors"]] == ["levels.1.code"]
    assert await org.ok("GET", "/organisation/assessment") == SMALL


async def test_the_form_follows_the_scheme_and_a_submission_keeps_its_own(
    make_org: Any, client: TestClient, clock: FrozenClock
) -> None:
    org = await make_org()
    booked = await book_interview(org)
    clock.set(inside_window(booked))
    url = f"/r/{booked.evaluator_token}/assessment"
    await org.ok("PUT", "/organisation/assessment", json=SMALL)
    shown = await (await client.get(url)).json()
    assert shown["scheme"] == SMALL
    body = {"levels": {"speaking": "merit"}, "overall_level": "merit"}
    resp = await client.post(f"{url}/submit", json=body, headers=OWN)
    assert resp.status == 200, await resp.text()
    # A later scheme leaves the submitted assessment as it was given.
    await org.ok("PUT", "/organisation/assessment", json=DEFAULT.to_json())
    api = await org.ok("GET", f"/bookings/{booked.booking_id}/assessment")
    assert api["state"] == "submitted" and api["scheme"] == SMALL
    assert api["assessment"]["levels"] == {"speaking": "merit"}


async def test_the_organisation_changes_a_submitted_assessment_with_a_reason(
    make_org: Any, client: TestClient, clock: FrozenClock
) -> None:
    org = await make_org()
    booked = await book_interview(org)
    clock.set(inside_window(booked))
    path = f"/bookings/{booked.booking_id}/assessment"
    change = {"levels": {**FULL["levels"], "accuracy": "B1"}, "reason": "Second marking."}

    # Not before the evaluator submits.
    status, problem = await org.call("PUT", path, json=change)
    assert status == 409 and "not submitted" in problem["detail"]
    url = f"/r/{booked.evaluator_token}/assessment"
    assert (await client.post(f"{url}/submit", json=FULL, headers=OWN)).status == 200

    # A reason is required; a level off the scale is refused; neither changes anything.
    for body in (
        {k: v for k, v in change.items() if k != "reason"},
        {**change, "reason": "  "},
        {**change, "overall_level": "B3"},
        {"levels": {"range": "B2"}, "reason": "Missing criteria."},
    ):
        status, problem = await org.call("PUT", path, json=body)
        assert status == 422, (body, problem)
    assert (await org.ok("GET", path))["assessment"]["levels"] == FULL["levels"]

    clock.advance(timedelta(hours=2))
    changed = await org.ok("PUT", path, json=change)
    assert changed["state"] == "submitted"
    assert changed["assessment"]["levels"]["accuracy"] == "B1"
    assert changed["assessment"]["comment"] == FULL["comment"]  # not sent: kept
    events = (await org.ok("GET", f"/bookings/{booked.booking_id}/history"))["events"]
    [event] = [e for e in events if e["action"] == "assessment_changed"]
    assert event["actor"] == "organisation"
    assert event["reason"] == "Second marking."
    assert event["before"]["levels"]["accuracy"] == "B2"
    assert event["after"]["levels"]["accuracy"] == "B1"
    # The same again changes nothing and records nothing.
    await org.ok("PUT", path, json=change)
    events = (await org.ok("GET", f"/bookings/{booked.booking_id}/history"))["events"]
    assert len([e for e in events if e["action"] == "assessment_changed"]) == 1
    async with client.app[keys.DB].read() as session:
        [row] = list(await session.scalars(select(Assessment)))
    assert row.updated_at == clock.now()


async def test_a_cancelled_booking_has_no_assessment(make_org: Any, client: TestClient) -> None:
    org = await make_org()
    booked = await book_interview(org)
    await org.ok(
        "POST",
        f"/bookings/{booked.booking_id}/force-majeure",
        json={"action": "cancel", "reason": "Strike."},
    )
    api = await org.ok("GET", f"/bookings/{booked.booking_id}/assessment")
    assert api == {
        "booking_id": str(booked.booking_id),
        "state": "none",
        "reason": "cancelled",
        "scheme": DEFAULT.to_json(),
        "assessment": None,
    }


async def test_a_moved_interview_starts_its_assessment_over(
    make_org: Any, client: TestClient, clock: FrozenClock
) -> None:
    """Force majeure during the interview: the new interview is assessed afresh; the former
    marks stay in the history only."""
    org = await make_org()
    booked = await book_interview(org)
    clock.set(inside_window(booked))
    url = f"/r/{booked.evaluator_token}/assessment"
    assert (await client.post(f"{url}/submit", json=FULL, headers=OWN)).status == 200
    await org.ok(
        "POST",
        f"/bookings/{booked.booking_id}/force-majeure",
        json={
            "action": "move",
            "start": (booked.start + timedelta(days=1)).isoformat(),
            "reason": "The connection failed for good.",
        },
    )
    api = await org.ok("GET", f"/bookings/{booked.booking_id}/assessment")
    assert api["state"] == "none" and api["assessment"] is None and api["reason"] is None
    events = (await org.ok("GET", f"/bookings/{booked.booking_id}/history"))["events"]
    [submitted] = [e for e in events if e["action"] == "assessment_submitted"]
    assert submitted["after"]["overall_level"] == "B2"
    # The same evaluator's link assesses the new interview, in its own window.
    clock.set(inside_window(booked) + timedelta(days=1))
    resp = await client.put(url, json={"levels": {"range": "C1"}}, headers=OWN)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["state"] == "draft"
