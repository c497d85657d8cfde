"""Webhooks: the organisation's receivers, their secrets, their deliveries.

A URL is checked (scheme, host, every resolved address: scheduler.webhooks.targets) before
the write transaction opens, so a slow DNS answer never holds a lock. The secret is shown
once, in the answer that makes or rotates it; the row keeps it sealed.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import delete, select

from scheduler import keys
from scheduler.errors import Conflict, FieldError, NotFound, ValidationFailed
from scheduler.models import WebhookDelivery, WebhookEndpoint
from scheduler.web.api.routing import Call, endpoint
from scheduler.web.webhook_schemas import (
    DeliveryList,
    DeliveryOut,
    WebhookIn,
    WebhookList,
    WebhookOut,
    WebhookPatch,
    WebhookSecret,
)
from scheduler.webhooks import store
from scheduler.webhooks.secrets import new_secret
from scheduler.webhooks.targets import Refused, check_url, resolve_checked


def webhook_out(row: WebhookEndpoint) -> WebhookOut:
    return WebhookOut(
        id=row.id,
        url=row.url,
        events=list(row.events),
        enabled=row.enabled,
        previous_secret_until=row.previous_until,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def delivery_out(row: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=row.id,
        event_type=row.event_type,
        booking_id=row.booking_id,
        status=row.status,  # type: ignore[arg-type]
        attempts=row.attempts,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        last_response=row.last_response,
        next_attempt_at=row.next_attempt_at if row.status == "pending" else None,
        created_at=row.created_at,
        finished_at=row.finished_at,
        payload=row.payload,
    )


async def _checked(call: Call, url: str) -> str:
    """The URL if Viva may call it; 422 naming `url` otherwise."""
    webhooks = call.request.app[keys.WEBHOOKS]
    try:
        host, port = check_url(
            url, dev_mode=webhooks.dev_mode, allow_private=webhooks.allow_private
        )
        await resolve_checked(host, port, webhooks.allow_private)
    except Refused as exc:
        raise ValidationFailed([FieldError("url", str(exc))]) from exc
    return url


@endpoint(
    "POST",
    "/webhooks",
    "Add a webhook; the answer holds its signing secret, shown this once",
    body=WebhookIn,
    response=WebhookSecret,
    status=201,
    errors=(401, 422),
)
async def create_webhook(call: Call) -> WebhookSecret:
    data: WebhookIn = call.body
    url = await _checked(call, data.url)
    app = call.request.app
    now = app[keys.CLOCK].now()
    secret = new_secret()
    row = WebhookEndpoint(
        id=uuid.uuid4(),
        organisation_id=call.org.id,
        url=url,
        events=list(data.events),
        enabled=data.enabled,
        secret=app[keys.WEBHOOKS].secrets.seal(secret),
        created_at=now,
        updated_at=now,
    )
    async with app[keys.DB].write() as session:
        session.add(row)
    return WebhookSecret(**webhook_out(row).model_dump(), secret=secret)


@endpoint("GET", "/webhooks", "List the webhooks", response=WebhookList, errors=(401,))
async def list_webhooks(call: Call) -> WebhookList:
    rows = await call.session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.organisation_id == call.org.id)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return WebhookList(webhooks=[webhook_out(r) for r in rows])


@endpoint("GET", "/webhooks/{id}", "Get a webhook", response=WebhookOut)
async def get_webhook(call: Call) -> WebhookOut:
    return webhook_out(await call.owned(WebhookEndpoint, "webhook"))


@endpoint(
    "PATCH",
    "/webhooks/{id}",
    "Change a webhook's URL, events or whether it is enabled",
    body=WebhookPatch,
    response=WebhookOut,
)
async def patch_webhook(call: Call) -> WebhookOut:
    data: WebhookPatch = call.body
    await call.owned(WebhookEndpoint, "webhook")  # 404 before any URL is resolved
    url = await _checked(call, data.url) if data.url is not None else None
    app = call.request.app
    async with app[keys.DB].write() as session:
        row = await call.owned(WebhookEndpoint, "webhook", session=session)
        if url is not None:
            row.url = url
        if data.events is not None:
            row.events = list(data.events)
        if data.enabled is not None:
            row.enabled = data.enabled
        row.updated_at = app[keys.CLOCK].now()
    return webhook_out(row)


@endpoint(
    "DELETE",
    "/webhooks/{id}",
    "Delete a webhook and its deliveries (none is sent any more)",
    status=204,
    write=True,
    errors=(401, 404),
)
async def delete_webhook(call: Call) -> None:
    row = await call.owned(WebhookEndpoint, "webhook")
    await call.session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == row.id))
    await call.session.delete(row)


@endpoint(
    "POST",
    "/webhooks/{id}/secret",
    "Rotate a webhook's secret: the new one is shown this once; the old one still signs "
    "(a second signature) for the grace period (`[webhooks] secret_grace_hours`)",
    response=WebhookSecret,
    write=True,
    errors=(401, 404),
)
async def rotate_webhook_secret(call: Call) -> WebhookSecret:
    row = await call.owned(WebhookEndpoint, "webhook")
    app = call.request.app
    webhooks = app[keys.WEBHOOKS]
    now = app[keys.CLOCK].now()
    secret = new_secret()
    row.previous_secret = row.secret
    row.previous_until = now + timedelta(hours=webhooks.settings.secret_grace_hours)
    row.secret = webhooks.secrets.seal(secret)
    row.updated_at = now
    return WebhookSecret(**webhook_out(row).model_dump(), secret=secret)


@endpoint(
    "GET",
    "/webhooks/{id}/deliveries",
    "A webhook's last 100 deliveries, newest first: attempts and the receiver's answers",
    response=DeliveryList,
)
async def list_deliveries(call: Call) -> DeliveryList:
    row = await call.owned(WebhookEndpoint, "webhook")
    return DeliveryList(
        deliveries=[delivery_out(d) for d in await store.deliveries(call.session, row.id)]
    )


@endpoint(
    "POST",
    "/webhooks/{id}/deliveries/{delivery_id}/retry",
    "Send a delivered or failed delivery again, at once, with a new day of retries",
    response=DeliveryOut,
    status=202,
    errors=(401, 404, 409),
)
async def retry_delivery(call: Call) -> DeliveryOut:
    # Its own write transaction, so the worker is woken after its commit.
    app = call.request.app
    call.path_id()
    delivery_id = call.path_id("delivery_id")
    now = app[keys.CLOCK].now()
    hours = app[keys.WEBHOOKS].settings.retry_hours
    async with app[keys.DB].write() as session:
        row = await call.owned(WebhookEndpoint, "webhook", session=session)
        delivery = await store.get_delivery(session, row.id, delivery_id)
        if delivery is None:
            raise NotFound("no such delivery")
        if not await store.replay(session, delivery, now=now, until=now + timedelta(hours=hours)):
            raise Conflict(f"this delivery is {delivery.status}; wait for its outcome")
    return delivery_out(delivery)
