"""The results API's models (issue 13 part B): what an organisation certifies, publishes,
corrects and revokes. Kept apart from scheduler.web.schemas, which is near its size limit
(and imports ResultOut from here for the candidate's export, so nothing is imported back)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


Level = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=32, pattern=r"^[^\r\n\x00]+$"
    ),
]
PartName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\r\n\x00]+$"
    ),
]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class PartIn(_In):
    name: PartName = Field(examples=["Written test"])
    level: Level = Field(examples=["B2"])
    score: float | None = Field(None, ge=0, le=1_000_000, allow_inf_nan=False, examples=[71.5])


class ResultIn(_In):
    oral_level: Level | None = Field(
        None,
        description="The oral level; left out: the overall level of the submitted assessment "
        "of the candidate's completed interview.",
    )
    parts: list[PartIn] = Field(default_factory=list, max_length=20)
    overall_level: Level
    target_level: Level | None = None
    target_reached: bool
    reason: Reason | None = Field(
        None, description="Why: required to correct a published result, kept in its history."
    )


class RevokeIn(_In):
    reason: Reason


class BatchPublishIn(_In):
    candidate_ids: list[uuid.UUID] = Field(min_length=1, max_length=500)


class ResultsQuery(_In):
    status: Literal["to_review", "published"]
    from_: date | None = Field(None, alias="from")
    to: date | None = None


class PartOut(BaseModel):
    name: str
    level: str
    score: float | None = None


class ResultVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    version: int
    oral_level: str | None
    parts: list[PartOut]
    overall_level: str
    target_level: str | None
    target_reached: bool
    replaced_at: datetime
    replaced_by: str
    reason: str


class ResultOut(BaseModel):
    candidate_id: uuid.UUID
    booking_id: uuid.UUID | None
    status: Literal["draft", "published", "revoked"]
    version: int
    oral_level: str | None
    parts: list[PartOut]
    overall_level: str
    target_level: str | None
    target_reached: bool
    updated_at: datetime
    published_at: datetime | None
    revoked_at: datetime | None
    revoke_reason: str | None
    results_url: str | None = Field(description="The candidate's results page, once published")
    verification_code: str | None
    verification_url: str | None
    versions: list[ResultVersionOut] = Field(
        description="Published versions a correction replaced, oldest first"
    )


class PublishOutcome(BaseModel):
    candidate_id: uuid.UUID
    outcome: Literal["published", "already_published", "not_found", "no_result", "revoked"]


class BatchPublishOut(BaseModel):
    outcomes: list[PublishOutcome]


class ResultListItem(BaseModel):
    candidate_id: uuid.UUID
    candidate_name: str
    booking_id: uuid.UUID | None
    interview_start: datetime | None
    status: Literal["to_review", "published"]
    overall_level: str | None
    published_at: datetime | None


class ResultList(BaseModel):
    results: list[ResultListItem]
