"""The API's models for personal data: retention, legal holds, an evaluator's erasure and
the recording notices (scheduler.retention, scheduler.privacy). Apart from
scheduler/web/schemas.py, which is near its size limit."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from scheduler.retention import KINDS

# --- retention ----------------------------------------------------------------------------

_Days = Annotated[int, Field(ge=0, le=36500)]

# One field per kind of the registry: a kind added there is settable here.
RetentionIn: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "RetentionIn",
    __config__=ConfigDict(extra="forbid"),
    __doc__="Days each kind of personal data is kept (0: for ever). A kind left out or "
    "null follows the server's default; the whole policy is replaced.",
    **{k.name: (_Days | None, Field(None, description=k.description)) for k in KINDS},
)


class RetentionRule(BaseModel):
    kind: str = Field(examples=["recordings"])
    description: str
    days: int = Field(description="Days kept (0: for ever), the organisation's or the default.")
    default_days: int = Field(description="The server's default ([retention] in config.toml).")
    own: bool = Field(description="Whether the organisation set its own period.")


class RetentionRunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    due_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    counts: dict[str, int] | None = Field(
        description="Items deleted or anonymised per kind; `skipped`: left for the next run "
        "(a recording still being written)."
    )
    last_error: str | None


class RetentionOut(BaseModel):
    rules: list[RetentionRule]
    next_run_at: datetime = Field(description="When the organisation's next daily run is due.")
    running: bool = Field(description="Whether a process is running it now.")
    last_run: RetentionRunOut | None


# --- legal holds --------------------------------------------------------------------------


class HoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]


# --- an evaluator's erasure ---------------------------------------------------------------


class EvaluatorErasureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["erase"] = Field(
        description="`erase`: remove every personal field of the evaluator everywhere; "
        "their past interviews keep an anonymous evaluator. Without a body the evaluator "
        "is only removed from scheduling.",
    )


# --- the recording notice ----------------------------------------------------------------

_Notice = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


class PrivacyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    consent_notices: dict[str, _Notice] = Field(
        description="The recording notice per page language (`fr`, `en`); a language left "
        "out shows Viva's own text. Replaces the previous notices; a participant who "
        "consented to another text is asked again."
    )


class NoticeOut(BaseModel):
    language: str
    text: str
    own: bool = Field(description="The organisation's text, or Viva's default.")
    version: str = Field(description="SHA-256 of the text: what a consent records.")


class PrivacyOut(BaseModel):
    consent_notices: list[NoticeOut]
