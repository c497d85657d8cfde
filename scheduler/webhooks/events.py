"""The events a webhook can ask for, and their bodies: stable, documented JSON.

Each body is a Standard Webhooks envelope, `{"type", "timestamp", "data"}`, validated by
the pydantic models below before it is stored; the OpenAPI document lists them under
`webhooks` and `components/schemas` (scheduler.web.openapi), so what a receiver gets is
what the document says. Fields are only ever added, never renamed or removed.

The results events (`result.published`, `result.revoked`) are sent by scheduler.results,
in the transaction that publishes, corrects or revokes.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

__all__ = [
    "BOOKING_EVENTS",
    "EVENT_MODELS",
    "EVENT_TYPES",
    "BookingData",
    "envelope",
]


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BookingData(_Data):
    """The booking as it is after the change."""

    booking_id: uuid.UUID
    candidate_id: uuid.UUID
    evaluator_id: uuid.UUID
    status: Literal["confirmed", "locked", "cancelled", "no_show", "completed"]
    start: datetime
    end: datetime
    sequence: int = Field(description="The calendar invitation's SEQUENCE.")


class BookingMovedData(BookingData):
    previous_start: datetime
    previous_evaluator_id: uuid.UUID


class BookingCancelledData(BookingData):
    reason: str | None = Field(description="The organisation's reason; null for a candidate.")


class ForceMajeureData(BookingData):
    action: Literal["move", "cancel"]
    reason: str
    previous_start: datetime
    previous_evaluator_id: uuid.UUID


class NoShowData(BookingData):
    marked_by: Literal["system", "evaluator"] = Field(
        description="`system`: nobody came by the deadline; `evaluator`: ended as no-show."
    )


class CompletedData(BookingData):
    outcome: Literal["completed", "interrupted", "id_refused"] = Field(
        description="How the evaluator ended the interview. `completed` holds the booking; "
        "after `interrupted` or `id_refused` it stays active for the organisation to decide."
    )


class CandidateJoinedData(_Data):
    booking_id: uuid.UUID
    candidate_id: uuid.UUID
    joined_at: datetime


class MessageFailedData(_Data):
    message_id: uuid.UUID = Field(description="The message's id in the booking's `messages`.")
    booking_id: uuid.UUID | None
    kind: str = Field(description="booking_confirmed, booking_updated, reminder...")
    attempts: int
    error: str | None


class ResultData(_Data):
    """The result as published: first publication (version 1) or a correction of it."""

    result_id: uuid.UUID
    candidate_id: uuid.UUID
    booking_id: uuid.UUID | None = Field(description="The interview it certifies, if any.")
    version: int = Field(description="1 when first published; each correction adds one.")
    oral_level: str | None
    overall_level: str
    target_level: str | None
    target_reached: bool
    published_at: datetime


class ResultRevokedData(ResultData):
    revoked_at: datetime
    reason: str


def _event(name: str, data: type[BaseModel], doc: str) -> type[BaseModel]:
    """The envelope model of one event type, named for it (`BookingCreatedEvent`)."""
    title = "".join(part.capitalize() for part in name.replace(".", "_").split("_"))
    return create_model(
        f"{title}Event",
        __doc__=doc,
        __module__=__name__,
        type=(Literal[name], ...),  # type: ignore[arg-type]
        timestamp=(datetime, ...),
        data=(data, ...),
    )


_DEFINITIONS: tuple[tuple[str, type[BaseModel], str], ...] = (
    ("booking.created", BookingData, "A candidate booked an interview."),
    ("booking.rescheduled", BookingMovedData, "A candidate moved their interview."),
    ("booking.cancelled", BookingCancelledData, "A candidate cancelled their interview."),
    ("booking.locked", BookingData, "Changes closed: only the organisation can move it now."),
    (
        "booking.force_majeure",
        ForceMajeureData,
        "The organisation moved or cancelled the interview, with a reason.",
    ),
    ("room.candidate_joined", CandidateJoinedData, "The candidate entered the room (first time)."),
    ("booking.no_show", NoShowData, "The candidate did not come."),
    ("booking.completed", CompletedData, "The evaluator ended the interview, with its outcome."),
    ("message.failed", MessageFailedData, "An e-mail could not be delivered, for good."),
    (
        "result.published",
        ResultData,
        "A result was published, or a published one corrected (its version rises).",
    ),
    ("result.revoked", ResultRevokedData, "A published result's certificate was revoked."),
)

EVENT_MODELS: dict[str, type[BaseModel]] = {
    name: _event(name, data, doc) for name, data, doc in _DEFINITIONS
}
EVENT_TYPES: tuple[str, ...] = tuple(EVENT_MODELS)
BOOKING_EVENTS = tuple(name for name in EVENT_TYPES if name.startswith("booking."))


def envelope(event_type: str, data: dict[str, Any], now: datetime) -> str:
    """The body of one event, validated against its model (a wrong field is a bug here,
    not a surprise for the receiver), as the compact JSON every attempt sends."""
    model = EVENT_MODELS[event_type]
    return model.model_validate(
        {"type": event_type, "timestamp": now, "data": data}
    ).model_dump_json()
