"""The webhooks API: input refused clearly and changing nothing, the secret shown only
when made or rotated, deletion, and the OpenAPI document describing every event."""

from __future__ import annotations

from sqlalchemy import func, select

from scheduler import keys
from scheduler.models import WebhookDelivery
from scheduler.webhooks.events import EVENT_TYPES

URL = "https://93.184.216.34/hook"  # public, literal: no DNS needed


async def test_bad_input_is_refused_and_changes_nothing(make_org) -> None:
    org = await make_org()
    bad = [
        {"url": URL, "events": []},
        {"url": URL, "events": ["booking.exploded"]},
        {"url": URL, "events": ["booking.created", "booking.created"]},
        {"url": URL},
        {"events": ["booking.created"]},
        {"url": URL, "events": ["booking.created"], "secret": "whsec_mine"},
        {"url": "x" * 2001, "events": ["booking.created"]},
    ]
    for body in bad:
        status, problem = await org.call("POST", "/webhooks", json=body)
        assert status == 422, (body, problem)
        assert problem["errors"], problem
    assert (await org.ok("GET", "/webhooks"))["webhooks"] == []


async def test_create_read_patch_rotate_delete(make_org, clock) -> None:
    org = await make_org()
    made = await org.ok("POST", "/webhooks", json={"url": URL, "events": ["booking.created"]})
    assert made["secret"].startswith("whsec_") and made["previous_secret_until"] is None
    listed = (await org.ok("GET", "/webhooks"))["webhooks"]
    assert [h["id"] for h in listed] == [made["id"]] and "secret" not in listed[0]
    patched = await org.ok(
        "PATCH",
        f"/webhooks/{made['id']}",
        json={"events": ["booking.cancelled", "message.failed"], "enabled": False},
    )
    assert patched["events"] == ["booking.cancelled", "message.failed"]
    assert patched["enabled"] is False and patched["url"] == URL
    status, problem = await org.call("PATCH", f"/webhooks/{made['id']}", json={"events": ["nope"]})
    assert status == 422, problem
    assert (await org.ok("GET", f"/webhooks/{made['id']}"))["events"] == patched["events"]
    rotated = await org.ok("POST", f"/webhooks/{made['id']}/secret")
    assert rotated["secret"] != made["secret"] and rotated["previous_secret_until"]

    # A delivery of it goes with it.
    from tests.scheduler.webhook_support import add_webhook_with_delivery

    async with org.client.app[keys.DB].write() as session:
        other, _delivery = await add_webhook_with_delivery(session, org.id, clock.now())
    status, _ = await org.call("DELETE", f"/webhooks/{other}")
    assert status == 204
    async with org.client.app[keys.DB].read() as session:
        assert await session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0
    assert (await org.call("GET", f"/webhooks/{other}"))[0] == 404
    assert [h["id"] for h in (await org.ok("GET", "/webhooks"))["webhooks"]] == [made["id"]]


async def test_the_openapi_document_describes_every_event(client) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    assert list(doc["webhooks"]) == list(EVENT_TYPES)
    for name, item in doc["webhooks"].items():
        ref = item["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
        assert schema["properties"]["type"]["const"] == name
        assert set(schema["required"]) == {"type", "timestamp", "data"}
    assert "/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry" in doc["paths"]
