"""The webhooks API's request and response models (the events' bodies are the domain's,
scheduler.webhooks.events, and appear in the OpenAPI document's `webhooks`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from scheduler.webhooks.events import EVENT_TYPES

EventType = Literal[
    "booking.created",
    "booking.rescheduled",
    "booking.cancelled",
    "booking.locked",
    "booking.force_majeure",
    "room.candidate_joined",
    "booking.no_show",
    "booking.completed",
    "message.failed",
    "result.published",
    "result.revoked",
]
Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
_EVENTS_DOC = "The event types it receives (see the document's `webhooks`); at least one."


def _distinct(value: list[str] | None) -> list[str] | None:
    if value is not None and len(set(value)) != len(value):
        raise ValueError("an event type is listed twice")
    return value


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url = Field(
        description="https:// (http only in dev mode or to loopback); its host must resolve "
        "to public addresses only (no loopback, private or link-local address)."
    )
    events: list[EventType] = Field(
        min_length=1, max_length=len(EVENT_TYPES), description=_EVENTS_DOC
    )
    enabled: bool = True

    _events = field_validator("events")(_distinct)


class WebhookPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url | None = None
    events: list[EventType] | None = Field(
        None, min_length=1, max_length=len(EVENT_TYPES), description=_EVENTS_DOC
    )
    enabled: bool | None = None

    _events = field_validator("events")(_distinct)


class WebhookOut(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    enabled: bool
    previous_secret_until: datetime | None = Field(
        description="After a rotation: until when the old secret signs too (a second "
        "signature in `webhook-signature`)."
    )
    created_at: datetime
    updated_at: datetime


class WebhookList(BaseModel):
    webhooks: list[WebhookOut]


class WebhookSecret(WebhookOut):
    """A webhook with its signing secret: shown once, when it is made or rotated."""

    secret: str = Field(
        description="`whsec_` + base64: give it as is to any Standard Webhooks library."
    )


class DeliveryOut(BaseModel):
    id: uuid.UUID = Field(description="Also the `webhook-id` header (`msg_` + its hex).")
    event_type: str
    booking_id: uuid.UUID | None
    status: Literal["pending", "sending", "delivered", "failed"] = Field(
        description="pending (waiting for its next attempt, or for an earlier delivery of "
        "its booking), sending, delivered (a 2xx answer) or failed (for good: retry it)."
    )
    attempts: int
    last_status_code: int | None = Field(description="The HTTP status of the last answer.")
    last_error: str | None
    last_response: str | None = Field(description="The last answer's body, truncated.")
    next_attempt_at: datetime | None = Field(description="pending: when it will be tried.")
    created_at: datetime
    finished_at: datetime | None
    payload: str = Field(description="The exact body sent (signed as it is).")


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]
