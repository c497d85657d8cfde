"""The request and response models of assessments: the organisation's scheme, a booking's
assessment, the organisation's changes to it, and the evaluator's marks from the room.

Like scheduler/web/schemas.py they validate requests and feed the OpenAPI document; the
rules that need the whole scheme (repeated codes, a level not on the scale) are the pure
ones of scheduler.scheme, run by the domain, so they are written once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from scheduler.assessments import AssessmentView
from scheduler.scheme import (
    CODE_PATTERN,
    MAX_COMMENT_CHARS,
    MAX_CRITERIA,
    MAX_LABEL_CHARS,
    MAX_LEVELS,
    Item,
    Marks,
    Scheme,
)

Code = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]
Label = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_LABEL_CHARS),
]
Comment = Annotated[str, StringConstraints(max_length=MAX_COMMENT_CHARS)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Labels(_In):
    fr: Label
    en: Label

    @field_validator("fr", "en")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if any(ch in value for ch in "\r\n\x00"):
            raise ValueError("must be a single line")
        return value


class SchemeItem(_In):
    code: Code = Field(examples=["B2"])
    labels: Labels


class AssessmentScheme(_In):
    """The scale (lowest level first) and the criteria an interview is assessed on."""

    levels: list[SchemeItem] = Field(min_length=1, max_length=MAX_LEVELS)
    criteria: list[SchemeItem] = Field(min_length=1, max_length=MAX_CRITERIA)

    def to_scheme(self) -> Scheme:
        return Scheme(
            levels=tuple(Item(i.code, i.labels.model_dump()) for i in self.levels),
            criteria=tuple(Item(i.code, i.labels.model_dump()) for i in self.criteria),
        )

    @classmethod
    def of(cls, scheme: Scheme) -> AssessmentScheme:
        return cls.model_validate(scheme.to_json())


class AssessmentMarks(BaseModel):
    levels: dict[str, str] = Field(
        description="The level (a code of the scale) given for each criterion (by its code)."
    )
    overall_level: str | None
    comment: str
    submitted_at: datetime | None
    updated_at: datetime | None


class AssessmentOut(BaseModel):
    """An interview's assessment. `state`: `none` (nothing saved yet, or no assessment at all:
    then `reason` says why), `draft` (the evaluator's, saved as typed) or `submitted`.
    `scheme` is the one the form shows: the organisation's current one for a draft, the
    copy kept with a submitted assessment."""

    booking_id: uuid.UUID
    state: Literal["none", "draft", "submitted"]
    reason: Literal["no_show", "interrupted", "id_refused", "cancelled"] | None = Field(
        description="Why this interview has no assessment; null when it has one."
    )
    scheme: AssessmentScheme
    assessment: AssessmentMarks | None

    @classmethod
    def of(cls, found: AssessmentView) -> AssessmentOut:
        marks = None
        if found.state != "none":
            marks = AssessmentMarks(
                levels=dict(found.marks.levels),
                overall_level=found.marks.overall_level,
                comment=found.marks.comment,
                submitted_at=found.submitted_at,
                updated_at=found.updated_at,
            )
        return cls(
            booking_id=found.booking_id,
            state=found.state,
            reason=found.reason,  # type: ignore[arg-type]  # one of scheme.NO_ASSESSMENT_...
            scheme=AssessmentScheme.of(found.scheme),
            assessment=marks,
        )


class AssessmentChange(_In):
    """The organisation's change to a submitted assessment: the fields sent replace the
    current ones (the levels as a whole), and the reason goes into the booking's history."""

    levels: dict[Code, Code] | None = Field(None, max_length=MAX_CRITERIA)
    overall_level: Code | None = None
    comment: Comment | None = None
    reason: Reason = Field(description="Why it changes; kept in the booking's history.")

    def marks(self, current: Marks) -> Marks:
        return Marks(
            levels=self.levels if self.levels is not None else dict(current.levels),
            overall_level=self.overall_level or current.overall_level,
            comment=self.comment if self.comment is not None else current.comment,
        )


class RoomMarks(_In):
    """The evaluator's form, as typed: an empty or null level is one not given yet."""

    levels: dict[Code, Code | Literal[""] | None] = Field(
        default_factory=dict, max_length=MAX_CRITERIA
    )
    overall_level: Code | Literal[""] | None = None
    comment: Comment = ""

    def marks(self) -> Marks:
        return Marks(
            levels={c: lv for c, lv in self.levels.items() if lv},
            overall_level=self.overall_level or None,
            comment=self.comment,
        )
