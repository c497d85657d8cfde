"""Another organisation's objects are 404 on every API route that names one, and stay as
they were: the routes are read from the app's route table, so a new endpoint cannot miss
this test (a route with a kind of id it does not know fails it until it is taught one).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import select

from mailer.models import outbox_messages
from rooms.models import recording_started
from scheduler import keys
from scheduler.db import Database
from scheduler.migrate import target_metadata
from scheduler.web.api import ENDPOINTS, PREFIX
from tests.conftest import token_of
from tests.scheduler.webhook_support import add_webhook_with_delivery
from tests.support.polling import eventually

_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")

# A valid body for each request model a route with an id takes: a body that failed
# validation would answer 422 before the ownership check is reached.
BODIES: dict[str, dict[str, Any]] = {
    "EvaluatorPatch": {"name": "Mallory"},
    "AvailabilityDoc": {"weekly": []},
    "ForceMajeureIn": {"action": "cancel", "reason": "Mallory says so."},
    "ErasureIn": {"mode": "erase"},
    "BookingPatch": {"recording": False},
    "AssessmentChange": {"overall_level": "C2", "reason": "Mallory says so."},
    "HoldIn": {"reason": "Mallory appeals."},
    "EvaluatorErasureIn": {"mode": "erase"},
    "CalendarsIn": {"calendars": [{"type": "ics", "url": "https://mallory.example/cal.ics"}]},
    "WebhookPatch": {"enabled": False},
    "ResultIn": {"overall_level": "B2", "target_reached": True},
    "RevokeIn": {"reason": "Mallory says so."},
}


async def _everything(db: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, to show that nothing changed."""
    async with db.read() as session:
        return {
            table.name: sorted(
                (tuple(map(repr, row)) for row in (await session.execute(select(table))).all()),
            )
            for metadata in target_metadata()
            for table in metadata.sorted_tables
        }


def _api_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path template) of every /api/v1 route whose path names an object."""
    found = []
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else ""
        if canonical.startswith(PREFIX + "/") and _PARAM.search(canonical):
            found.append((route.method, canonical))
    return found


def _fill(template: str, ids: dict[str, str]) -> str:
    """The path with each `{param}` replaced by organisation A's object of that kind: a
    plain `{id}` is named by the segment before it (`/evaluators/{id}`: an evaluator)."""
    parts = template.split("/")
    for i, part in enumerate(parts):
        match = _PARAM.fullmatch(part)
        if match is None:
            continue
        kind = parts[i - 1] if match[1] == "id" else match[1]
        assert kind in ids, f"{template}: teach this test an object for {{{match[1]}}} ({kind})"
        parts[i] = ids[kind]
    return "/".join(parts)


async def _outbox_settled(db: Database) -> bool:
    async with db.read() as session:
        statuses = set(await session.scalars(select(outbox_messages.c.status)))
    return statuses <= {"sent", "failed"}


async def test_every_route_with_an_id_refuses_another_organisations_objects(
    make_org, clock
) -> None:
    alice = await make_org("Org A", "a@a.example")
    bob = await make_org("Org B", "b@b.example")
    app = alice.client.app
    ev = await alice.make_evaluator()
    cand = await alice.make_candidate()
    token = token_of(cand["link"])
    slots = await (await alice.client.get(f"/c/{token}/slots")).json()
    booked = await alice.client.post(
        f"/c/{token}/booking", json={"start": slots["slots"][0]["start"]}
    )
    booking_id = (await booked.json())["id"]
    detail = await alice.ok("GET", f"/bookings/{booking_id}")
    async with app[keys.DB].write() as session:
        recording_id = await recording_started(
            session, uuid.UUID(booking_id), "alice.mkv", clock.now()
        )
    key_id = (await alice.ok("GET", "/organisation/keys"))["keys"][0]["id"]
    # A webhook with one delivery (the booking above came before it: one more change here).
    async with app[keys.DB].write() as session:
        webhook_id, delivery_id = await add_webhook_with_delivery(session, alice.id, clock.now())
    ids = {
        "keys": key_id,
        "evaluators": ev["id"],
        "candidates": cand["id"],
        "bookings": booking_id,
        "message_id": detail["messages"][0]["id"],
        "recording_id": str(recording_id),
        "webhooks": str(webhook_id),
        "delivery_id": str(delivery_id),
    }
    bodies = {(ep.method, PREFIX + ep.path): ep.body for ep in ENDPOINTS}

    routes = _api_routes(app)
    assert len(routes) >= 14  # the route table was read, not an empty list
    await eventually(lambda: _outbox_settled(app[keys.DB]), "the confirmations delivered")
    before = await _everything(app[keys.DB])  # the mail worker changes nothing after this
    for method, template in routes:
        path = _fill(template, ids).removeprefix(PREFIX)
        model = bodies[(method, template)]
        body = BODIES[model.__name__] if model is not None else None
        resp = await bob.client.request(method, PREFIX + path, headers=bob.headers, json=body)
        assert resp.status == 404, (method, template, resp.status, await resp.text())
        assert resp.content_type == "application/problem+json", (method, template)
        assert (await resp.json())["status"] == 404
        assert await _everything(app[keys.DB]) == before, (method, template)

    # Alice still reaches every one of them: the 404s above were Bob's, not broken routes.
    assert (await alice.ok("GET", f"/bookings/{booking_id}"))["status"] == detail["status"]
