"""Webhooks end to end: the real flows write events, the real worker signs and posts them
to a real receiver (aiohttp on a free loopback port) that verifies each one with the
Standard Webhooks reference library. Both databases.

The receiver is on loopback, so these tests allow private targets explicitly
(`[webhooks] allow_private_targets`); tests/scheduler/test_webhook_guard.py proves the guard
with it off.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from scheduler import keys
from scheduler.app import create_app
from scheduler.config import Settings, load_settings
from scheduler.models import WebhookDelivery, WebhookEndpoint
from scheduler.webhooks.events import EVENT_MODELS, EVENT_TYPES
from tests.conftest import app_environ, token_of
from tests.scheduler.test_resend import _org
from tests.scheduler.test_results import _interviewed
from tests.scheduler.webhook_support import Receiver
from tests.support.polling import eventually

START = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)  # Wednesday 09:00 in Paris
FAST = {
    "VIVA_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true",
    "VIVA_WEBHOOKS_POLL_INTERVAL_SECONDS": "0.05",
    "VIVA_WEBHOOKS_BACKOFF_MAX_SECONDS": "14400",  # fewer attempts in a day, for the test
}


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return load_settings(environ=app_environ(db_url, tmp_path / "data", **FAST))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    await found.start()
    yield found
    await found.stop()


async def subscribe(org: Any, receiver: Receiver, events: list[str] | None = None) -> dict:
    created = await org.ok(
        "POST", "/webhooks", json={"url": receiver.url, "events": events or list(EVENT_TYPES)}
    )
    receiver.secrets.append(created["secret"])
    return created


async def received(receiver: Receiver, count: int) -> list[dict]:
    await eventually(lambda: len(receiver.received) >= count, f"{count} webhook deliveries")
    return [r.event for r in receiver.received]


async def all_delivered(org: Any, hook_id: str) -> list[dict]:
    """The deliveries once all are recorded delivered (the receiver answers first)."""

    async def done() -> list[dict] | None:
        found = (await org.ok("GET", f"/webhooks/{hook_id}/deliveries"))["deliveries"]
        return found if {d["status"] for d in found} == {"delivered"} else None

    result: list[dict] = await eventually(done, "every delivery recorded delivered")
    return result


def checked(event: dict) -> dict:
    """The body is exactly what its documented model says (extra fields forbidden)."""
    EVENT_MODELS[event["type"]].model_validate(event)
    data: dict = event["data"]
    return data


async def test_booking_events_reach_the_receiver_signed_and_in_order(
    make_org, clock, receiver: Receiver
) -> None:
    org = await make_org()
    hook = await subscribe(org, receiver)
    assert hook["secret"].startswith("whsec_") and hook["enabled"] is True
    ev = await org.make_evaluator()
    cand = await org.make_candidate()
    token = token_of(cand["link"])

    booked = await org.client.post(f"/c/{token}/booking", json={"start": START.isoformat()})
    assert booked.status == 201
    booking_id = (await booked.json())["id"]
    later = START + timedelta(days=1)
    moved = await org.client.put(f"/c/{token}/booking", json={"start": later.isoformat()})
    assert moved.status == 200
    assert (await org.client.delete(f"/c/{token}/booking")).status == 200

    events = await received(receiver, 3)
    assert [e["type"] for e in events] == [
        "booking.created",
        "booking.rescheduled",
        "booking.cancelled",
    ]
    created, rescheduled, cancelled = map(checked, events)
    assert created["booking_id"] == booking_id and created["evaluator_id"] == ev["id"]
    assert created["candidate_id"] == cand["id"] and created["status"] == "confirmed"
    assert datetime.fromisoformat(created["start"]) == START
    assert datetime.fromisoformat(rescheduled["start"]) == later
    assert datetime.fromisoformat(rescheduled["previous_start"]) == START
    assert cancelled["status"] == "cancelled" and cancelled["reason"] is None
    assert cancelled["sequence"] == 2
    # Standard Webhooks headers; the id is the delivery's, unique per delivery.
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(set(ids)) == 3 and all(i.startswith("msg_") for i in ids)

    # Locked by its timer, then moved by the organisation (force majeure), then missed.
    other = await org.make_candidate()
    again = await org.client.post(
        f"/c/{token_of(other['link'])}/booking", json={"start": START.isoformat()}
    )
    second = (await again.json())["id"]
    clock.set(START - timedelta(hours=24))
    await org.client.app[keys.TIMERS].run_due()
    new_start = START + timedelta(hours=2)  # 11:00 in Paris, same evaluator
    await org.ok(
        "POST",
        f"/bookings/{second}/force-majeure",
        json={"action": "move", "start": new_start.isoformat(), "reason": "Room flooded."},
    )
    clock.set(new_start + timedelta(minutes=10))
    await org.client.app[keys.TIMERS].run_due()

    events = await received(receiver, 8)
    assert [e["type"] for e in events[3:]] == [
        "booking.created",
        "booking.locked",
        "booking.force_majeure",
        "booking.locked",  # moved out of the lock window, then locked again by its timer
        "booking.no_show",
    ]
    _created, locked, majeure, _locked, no_show = map(checked, events[3:])
    assert locked["booking_id"] == second and locked["status"] == "locked"
    assert majeure["action"] == "move" and majeure["reason"] == "Room flooded."
    assert datetime.fromisoformat(majeure["previous_start"]) == START
    assert datetime.fromisoformat(majeure["start"]) == new_start
    assert no_show["status"] == "no_show" and no_show["marked_by"] == "system"

    deliveries = await all_delivered(org, hook["id"])
    assert len(deliveries) == 8
    assert all(d["attempts"] == 1 and d["last_status_code"] == 200 for d in deliveries)
    assert deliveries[0]["last_response"] == "ok"
    registry = org.client.app[keys.METRICS].registry
    assert registry.get_sample_value("viva_webhook_deliveries_total", {"outcome": "delivered"}) == 8


async def test_only_the_wanted_events_of_enabled_webhooks_of_the_organisation(
    make_org, clock, receiver: Receiver
) -> None:
    org = await make_org()
    elsewhere = await make_org("Elsewhere", "e@e.example")
    await subscribe(org, receiver, ["booking.cancelled"])
    off = await subscribe(org, receiver, ["booking.created"])
    await org.ok("PATCH", f"/webhooks/{off['id']}", json={"enabled": False})
    await subscribe(elsewhere, receiver, ["booking.created"])
    await org.make_evaluator()
    token = token_of((await org.make_candidate())["link"])
    assert (
        await org.client.post(f"/c/{token}/booking", json={"start": START.isoformat()})
    ).status == 201
    assert (await org.client.delete(f"/c/{token}/booking")).status == 200
    events = await received(receiver, 1)
    async with org.client.app[keys.DB].read() as session:
        from sqlalchemy import func, select

        from scheduler.models import WebhookDelivery

        total = await session.scalar(select(func.count()).select_from(WebhookDelivery))
    assert total == 1
    assert [e["type"] for e in events] == ["booking.cancelled"]


async def test_secrets_are_sealed_shown_once_and_rotated_with_a_grace_period(
    make_org, clock, receiver: Receiver
) -> None:
    org = await make_org()
    hook = await subscribe(org, receiver, ["booking.created"])
    old = hook["secret"]
    shown = await org.ok("GET", f"/webhooks/{hook['id']}")
    assert "secret" not in shown
    async with org.client.app[keys.DB].read() as session:
        row = await session.get(WebhookEndpoint, uuid.UUID(hook["id"]))
    assert (
        row is not None and old not in row.secret and old.removeprefix("whsec_") not in (row.secret)
    )

    rotated = await org.ok("POST", f"/webhooks/{hook['id']}/secret")
    new = rotated["secret"]
    assert new != old and new.startswith("whsec_")
    assert datetime.fromisoformat(rotated["previous_secret_until"]) == clock.now() + timedelta(
        hours=24
    )
    receiver.secrets.append(new)
    await org.make_evaluator()
    book = org.client.post
    token = token_of((await org.make_candidate())["link"])
    assert (await book(f"/c/{token}/booking", json={"start": START.isoformat()})).status == 201
    await received(receiver, 1)
    # During the grace period both secrets sign: two signatures, each verifies alone.
    assert len(receiver.received[0].headers["webhook-signature"].split(" ")) == 2
    assert receiver.verified_by == {old: 1, new: 1}

    clock.set(clock.now() + timedelta(hours=24, seconds=1))
    token = token_of((await org.make_candidate())["link"])
    later = START + timedelta(days=1)
    assert (await book(f"/c/{token}/booking", json={"start": later.isoformat()})).status == 201
    await received(receiver, 2)
    assert len(receiver.received[1].headers["webhook-signature"].split(" ")) == 1
    assert receiver.verified_by == {old: 1, new: 2}


async def test_a_receiver_down_for_a_while_gets_every_event_once_in_order_per_booking(
    make_org, clock, receiver: Receiver
) -> None:
    org = await make_org()
    hook = await subscribe(
        org, receiver, ["booking.created", "booking.rescheduled", "booking.cancelled"]
    )
    await org.make_evaluator()
    receiver.status = 503
    tokens = [token_of((await org.make_candidate())["link"]) for _ in range(2)]
    for i, token in enumerate(tokens):
        start = START + timedelta(hours=i)
        assert (
            await org.client.post(f"/c/{token}/booking", json={"start": start.isoformat()})
        ).status == 201
    await eventually(lambda: receiver.refused >= 2, "the first attempts, refused")
    # More changes while the receiver answers 503: they wait behind their booking's first.
    for i, token in enumerate(tokens):
        moved = START + timedelta(days=1, hours=i)
        assert (
            await org.client.put(f"/c/{token}/booking", json={"start": moved.isoformat()})
        ).status == 200
    assert (await org.client.delete(f"/c/{tokens[0]}/booking")).status == 200

    async def refused_once() -> list[dict] | None:
        found = (await org.ok("GET", f"/webhooks/{hook['id']}/deliveries"))["deliveries"]
        tried = [d for d in found if d["attempts"]]
        recorded = all(d["status"] == "pending" for d in found)
        return tried if recorded and len(tried) == 2 else None

    tried = await eventually(refused_once, "the first attempts recorded")
    assert all(d["last_status_code"] == 503 for d in tried)
    assert all(d["last_response"] == "down for maintenance" for d in tried)
    assert all(d["event_type"] == "booking.created" for d in tried)
    assert receiver.refused == 2

    # Now not even listening: the retries fail to connect.
    port = receiver.port
    await receiver.stop()
    refused = receiver.refused
    clock.set(clock.now() + timedelta(seconds=10))

    async def connection_refused() -> bool:
        found = (await org.ok("GET", f"/webhooks/{hook['id']}/deliveries"))["deliveries"]
        return sum(1 for d in found if d["attempts"] == 2 and d["last_status_code"] is None) == 2

    await eventually(connection_refused, "the second attempts, not connected")
    assert receiver.refused == refused

    # Back up: everything arrives once, each booking's events in order.
    receiver.status = 200
    await receiver.start(port)
    clock.set(clock.now() + timedelta(seconds=20))
    events = await received(receiver, 5)
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 5
    by_booking: dict[str, list[str]] = {}
    for event in events:
        by_booking.setdefault(event["data"]["booking_id"], []).append(event["type"])
    assert sorted(by_booking.values()) == [
        ["booking.created", "booking.rescheduled"],
        ["booking.created", "booking.rescheduled", "booking.cancelled"],
    ]
    await all_delivered(org, hook["id"])
    registry = org.client.app[keys.METRICS].registry
    assert registry.get_sample_value("viva_webhook_deliveries_total", {"outcome": "retry"}) == 4


async def test_retries_stop_after_a_day_then_a_replay_delivers(
    make_org, clock, receiver: Receiver
) -> None:
    org = await make_org()
    hook = await subscribe(org, receiver, ["booking.created", "booking.cancelled"])
    await org.make_evaluator()
    receiver.status = 500
    token = token_of((await org.make_candidate())["link"])
    booked_at = clock.now()
    resp = await org.client.post(f"/c/{token}/booking", json={"start": START.isoformat()})
    assert resp.status == 201
    assert (await org.client.delete(f"/c/{token}/booking")).status == 200

    async def chain() -> list[dict] | None:
        found = (await org.ok("GET", f"/webhooks/{hook['id']}/deliveries"))["deliveries"]
        head, nxt = found[1], found[0]  # newest first
        done = head["status"] == "failed" or (
            head["status"] == "pending" and head["attempts"] == receiver.refused
        )
        return [head, nxt] if done else None

    while True:
        head, nxt = await eventually(chain, "an attempt recorded")
        if head["status"] == "failed":
            break
        # The booking's next delivery waits while the first is retried.
        assert nxt["attempts"] == 0 and nxt["status"] == "pending"
        clock.set(datetime.fromisoformat(head["next_attempt_at"]))
    assert head["last_status_code"] == 500 and head["last_error"] == "HTTP 500"
    finished = datetime.fromisoformat(head["finished_at"])
    # The last attempt is the one whose next would fall outside the day (at most 4 h later).
    assert booked_at + timedelta(hours=20) < finished <= booked_at + timedelta(hours=24)
    assert 10 < head["attempts"] < 20  # 10 s doubling to 4 hours (FAST), for a day

    # Failed for good, it no longer holds the booking's next delivery back.
    receiver.status = 200
    clock.set(clock.now() + timedelta(seconds=11))  # in case it was tried meanwhile
    events = await received(receiver, 1)
    assert [e["type"] for e in events] == ["booking.cancelled"]
    refused_before = receiver.refused
    replayed = await org.ok("POST", f"/webhooks/{hook['id']}/deliveries/{head['id']}/retry")
    assert replayed["status"] == "pending"
    events = await received(receiver, 2)
    assert [e["type"] for e in events] == ["booking.cancelled", "booking.created"]
    await all_delivered(org, hook["id"])
    # A delivery still waiting for its outcome cannot be replayed.
    receiver.status = 503
    await org.ok("POST", f"/webhooks/{hook['id']}/deliveries/{head['id']}/retry")
    await eventually(lambda: receiver.refused > refused_before, "the replay, refused")
    status, problem = await org.call(
        "POST", f"/webhooks/{hook['id']}/deliveries/{head['id']}/retry"
    )
    assert status == 409, problem
    status, problem = await org.call(
        "POST", f"/webhooks/{hook['id']}/deliveries/{uuid.uuid4()}/retry"
    )
    assert status == 404, problem


@pytest.mark.parametrize("answer", ["redirect", "huge"])
async def test_redirects_are_not_followed_and_answers_are_read_bounded(
    make_org, clock, receiver: Receiver, answer: str
) -> None:
    org = await make_org()
    hook = await subscribe(org, receiver, ["booking.created"])
    receiver.redirect = answer == "redirect"
    receiver.body_size = 128 * 1024 if answer == "huge" else 0
    await org.make_evaluator()
    token = token_of((await org.make_candidate())["link"])
    resp = await org.client.post(f"/c/{token}/booking", json={"start": START.isoformat()})
    assert resp.status == 201

    async def recorded() -> dict | None:
        found = (await org.ok("GET", f"/webhooks/{hook['id']}/deliveries"))["deliveries"]
        return found[0] if found[0]["attempts"] and found[0]["status"] == "pending" else None

    delivery = await eventually(recorded, "the attempt recorded")
    if answer == "redirect":
        assert delivery["last_status_code"] == 307 and delivery["last_error"] == "HTTP 307"
        assert receiver.elsewhere == 0
    else:
        # Read up to max_response_bytes (64 KiB), then hung up: not a timeout.
        assert delivery["last_status_code"] == 500 and delivery["last_error"] == "HTTP 500"
        assert delivery["last_response"] == "x" * 1000  # shown: the start of what was read


async def test_a_hanging_receiver_never_holds_a_booking_and_the_worker_wakes_on_commit(
    aiohttp_client, db_url: str, tmp_path: Path, clock, receiver: Receiver
) -> None:
    """The worker polls only hourly here: the delivery leaves because the booking's commit
    woke it. While the receiver holds that request, the candidate's next change is made
    and answered all the same."""
    environ = FAST | {"VIVA_WEBHOOKS_POLL_INTERVAL_SECONDS": "3600"}
    settings = load_settings(environ=app_environ(db_url, tmp_path / "data", **environ))
    client = await aiohttp_client(create_app(settings, clock=clock))
    org = await _org(client, clock, "CCI")
    await subscribe(org, receiver, ["booking.created", "booking.cancelled"])
    await org.make_evaluator()
    receiver.hold = asyncio.Event()
    token = token_of((await org.make_candidate())["link"])
    resp = await client.post(f"/c/{token}/booking", json={"start": START.isoformat()})
    assert resp.status == 201
    await eventually(lambda: receiver.waiting == 1, "the delivery, woken by the commit")
    assert (await client.delete(f"/c/{token}/booking")).status == 200
    assert receiver.waiting == 1  # the cancellation waits behind the booking's first event
    receiver.hold.set()
    events = await received(receiver, 2)
    assert [e["type"] for e in events] == ["booking.created", "booking.cancelled"]


async def test_two_processes_deliver_each_event_once(
    aiohttp_client, db_url: str, tmp_path: Path, clock, receiver: Receiver
) -> None:
    """Two apps on one database, both workers claiming: every delivery reaches the
    receiver once (claims with leases), each booking's in order."""
    apps = []
    for port in ("8081", "8082"):
        environ = FAST | {"VIVA_SERVER_PORT": port}
        settings = load_settings(environ=app_environ(db_url, tmp_path / "data", **environ))
        apps.append(await aiohttp_client(create_app(settings, clock=clock)))
    org = await _org(apps[0], clock, "CCI")
    await subscribe(org, receiver, ["booking.created", "booking.cancelled"])
    await org.make_evaluator()
    tokens = [token_of((await org.make_candidate())["link"]) for _ in range(6)]
    for i, token in enumerate(tokens):
        client = apps[i % 2]  # bookings through both processes
        start = (START + timedelta(hours=i % 3, days=i // 3)).isoformat()
        assert (await client.post(f"/c/{token}/booking", json={"start": start})).status == 201
        assert (await client.delete(f"/c/{token}/booking")).status == 200
    events = await received(receiver, 12)
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(set(ids)) == len(ids) == 12
    by_booking: dict[str, list[str]] = {}
    for event in events:
        by_booking.setdefault(event["data"]["booking_id"], []).append(event["type"])
    assert list(by_booking.values()) == [["booking.created", "booking.cancelled"]] * 6
    deliveries = await all_delivered(org, (await org.ok("GET", "/webhooks"))["webhooks"][0]["id"])
    assert [d["attempts"] for d in deliveries] == [1] * 12 and len(receiver.received) == 12


async def test_a_candidates_erasure_drops_the_reasons_their_events_carry(
    make_org, clock, receiver: Receiver
) -> None:
    """A force majeure reason is free text and may name the candidate: after their erasure
    no delivery (sent or not) holds it, and the events themselves stay."""
    org = await make_org()
    hook = await subscribe(org, receiver)
    await org.make_evaluator()
    cand = await org.make_candidate(name="Zoé Quintal")
    token = token_of(cand["link"])
    booked = await org.client.post(f"/c/{token}/booking", json={"start": START.isoformat()})
    booking_id = (await booked.json())["id"]
    await org.ok(
        "POST",
        f"/bookings/{booking_id}/force-majeure",
        json={"action": "cancel", "reason": "Zoé Quintal is in hospital."},
    )
    await received(receiver, 2)
    await all_delivered(org, hook["id"])
    async with org.client.app[keys.DB].read() as session:
        payloads = list(await session.scalars(select(WebhookDelivery.payload)))
    assert any("Zoé Quintal" in p for p in payloads), "the reason is in the event"

    status, _ = await org.call("DELETE", f"/candidates/{cand['id']}", json={"mode": "erase"})
    assert status in (200, 204)

    async with org.client.app[keys.DB].read() as session:
        rows = list(await session.scalars(select(WebhookDelivery)))
    assert len(rows) == 2, "the events stay"
    assert not any("Zoé" in r.payload or "Quintal" in r.payload for r in rows)
    majeure = next(r for r in rows if r.event_type == "booking.force_majeure")
    checked(json.loads(majeure.payload))


async def test_results_are_told_once_published_on_each_correction_and_once_revoked(
    make_org, clock, receiver: Receiver
) -> None:
    org = await make_org()
    await subscribe(org, receiver, ["result.published", "result.revoked"])
    candidate_id, booking_id = await _interviewed(org, clock)  # completed, assessed B2
    body = {"overall_level": "B2", "target_level": "B2", "target_reached": True}
    await org.ok("PUT", f"/candidates/{candidate_id}/result", json=body)
    await org.ok("POST", f"/candidates/{candidate_id}/result/publish")
    await org.ok("POST", f"/candidates/{candidate_id}/result/publish")  # nothing new
    await org.ok(
        "PUT",
        f"/candidates/{candidate_id}/result",
        json={**body, "overall_level": "C1", "reason": "Second marking."},
    )
    reason = {"reason": "Identity fraud."}
    await org.ok("POST", f"/candidates/{candidate_id}/result/revoke", json=reason)
    await org.ok("POST", f"/candidates/{candidate_id}/result/revoke", json=reason)

    events = await received(receiver, 3)
    published, corrected, revoked = map(checked, events)
    assert [e["type"] for e in events] == ["result.published"] * 2 + ["result.revoked"]
    assert published["candidate_id"] == candidate_id and published["booking_id"] == booking_id
    assert (published["version"], published["overall_level"]) == (1, "B2")
    assert published["oral_level"] == "B2", "from the submitted assessment"
    assert (corrected["version"], corrected["overall_level"]) == (2, "C1")
    assert revoked["reason"] == "Identity fraud." and revoked["revoked_at"]
    async with org.client.app[keys.DB].read() as session:
        assert len(list(await session.scalars(select(WebhookDelivery)))) == 3, "each once"
