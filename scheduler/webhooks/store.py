"""The webhook rows as the rest of Viva sees them: deliveries written in the transaction of
the change they tell (`enqueue`), read and replayed for the organisation.

`enqueue` adds rows to the caller's session and does not commit: an event exists if and
only if its change is committed. It marks the session, and the Database's after-commit hook
wakes the delivery worker once the rows are visible (scheduler.webhooks.wiring); a receiver
never holds up the change, which only writes rows.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailer.store import require_aware, rows_changed
from scheduler.models import WebhookDelivery, WebhookEndpoint
from scheduler.webhooks.events import EVENT_TYPES, envelope

__all__ = ["WAKE", "deliveries", "drop_reasons", "enqueue", "get_delivery", "replay"]

# Set in a session's info when it wrote deliveries: the after-commit hook wakes the worker.
WAKE = "viva.webhooks.wake"
_D = WebhookDelivery.__table__


async def enqueue(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    event_type: str,
    data: dict[str, Any],
    *,
    now: datetime,
    booking_id: uuid.UUID | None = None,
) -> list[uuid.UUID]:
    """One delivery of this event per enabled endpoint of the organisation that wants it,
    in the caller's transaction; returns their ids (the `webhook-id` of each).

    `data` is the event's `data` object, checked against its model (scheduler.webhooks.
    events). A delivery about a booking comes after every earlier one of that booking to
    the same endpoint (`position`).
    """
    require_aware(now, "now")
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    endpoints = (
        await session.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.events).where(
                WebhookEndpoint.organisation_id == organisation_id,
                WebhookEndpoint.enabled.is_(True),
            )
        )
    ).all()
    wanted = [row.id for row in endpoints if event_type in (row.events or ())]
    if not wanted:
        return []
    body = envelope(event_type, data, now)
    ids = []
    for endpoint_id in wanted:
        position = 0
        if booking_id is not None:
            last = await session.scalar(
                select(func.max(WebhookDelivery.position)).where(
                    WebhookDelivery.endpoint_id == endpoint_id,
                    WebhookDelivery.booking_id == booking_id,
                )
            )
            position = (last or 0) + 1
        row_id = uuid.uuid4()
        session.add(
            WebhookDelivery(
                id=row_id,
                endpoint_id=endpoint_id,
                organisation_id=organisation_id,
                booking_id=booking_id,
                position=position,
                event_type=event_type,
                payload=body,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                retry_until=None,
                created_at=now,
            )
        )
        ids.append(row_id)
    await session.flush()
    session.sync_session.info[WAKE] = True
    return ids


async def deliveries(
    session: AsyncSession, endpoint_id: uuid.UUID, *, limit: int = 100
) -> Sequence[WebhookDelivery]:
    """The endpoint's deliveries, newest first."""
    rows = await session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.position.desc())
        .limit(limit)
    )
    return rows.all()


async def get_delivery(
    session: AsyncSession, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> WebhookDelivery | None:
    row = await session.get(WebhookDelivery, delivery_id)
    return row if row is not None and row.endpoint_id == endpoint_id else None


async def replay(
    session: AsyncSession, delivery: WebhookDelivery, *, now: datetime, until: datetime
) -> bool:
    """Queue a finished delivery again, at once, retried until `until`; False if it is
    still pending or being sent (its outcome is not known yet). It keeps its place: later
    deliveries of its booking to the endpoint wait for it again."""
    result = await session.execute(
        update(_D)
        .where(_D.c.id == delivery.id, _D.c.status.in_(("delivered", "failed")))
        .values(
            status="pending",
            next_attempt_at=now,
            retry_until=until,
            claimed_by=None,
            finished_at=None,
        )
    )
    if not rows_changed(result):
        return False
    await session.refresh(delivery)
    session.sync_session.info[WAKE] = True
    return True


async def drop_reasons(session: AsyncSession, booking_ids: Sequence[uuid.UUID]) -> int:
    """A person's erasure (scheduler.privacy): the free-text reasons their bookings' events
    carry may name them, and so may what a receiver answered. The events stay (the rest is
    ids and times) and a pending one is still sent, without the reason."""
    if not booking_ids:
        return 0
    changed = 0
    rows = await session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.booking_id.in_(booking_ids))
    )
    for row in rows:
        body = json.loads(row.payload)
        data = body.get("data") or {}
        if data.get("reason"):
            # Nullable where the event's model says so (a cancellation's), empty elsewhere.
            data["reason"] = None if row.event_type == "booking.cancelled" else ""
            row.payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
            changed += 1
        row.last_response = None
    return changed
