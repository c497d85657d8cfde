"""The API's models for evaluators' external calendars (scheduler.external_calendars)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

__all__ = ["CalendarIn", "CalendarOut", "CalendarsIn", "CalendarsOut"]

Url = Annotated[str, StringConstraints(min_length=8, max_length=2000)]


class CalendarIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["caldav", "ics"] = Field(
        description="`caldav`: a CalDAV calendar collection; `ics`: a read-only iCalendar URL."
    )
    url: Url = Field(examples=["https://caldav.example.org/dav/calendars/evelyne/work/"])
    username: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    password: Annotated[str, StringConstraints(max_length=1000)] | None = Field(
        None,
        description="Or an app password. Stored encrypted, never returned. Left out: the "
        "password already stored for the same type, URL and user name is kept.",
    )

    write_back: bool = Field(
        False,
        description="CalDAV only: write the evaluator's interviews into this calendar "
        "(and move or delete them there), with the invitations' UIDs.",
    )

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        lowered = value.lower()
        if lowered.startswith("webcal://"):
            value = "https://" + value[len("webcal://") :]
        elif not lowered.startswith(("https://", "http://")):
            raise ValueError("an http(s) or webcal URL")
        if any(ch.isspace() for ch in value):
            raise ValueError("a URL has no spaces")
        return value


class CalendarsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    calendars: list[CalendarIn] = Field(max_length=20)


class CalendarOut(BaseModel):
    id: uuid.UUID
    type: Literal["caldav", "ics"]
    url: str
    username: str | None
    has_password: bool
    write_back: bool
    last_attempt_at: datetime | None
    last_success_at: datetime | None = Field(
        description="The last fetch that worked: the busy times shown are from it."
    )
    last_error: str | None = Field(description="Why the last fetch failed, if it did.")
    busy_count: int = Field(description="Busy intervals kept from the last good fetch.")


class CalendarsOut(BaseModel):
    calendars: list[CalendarOut]
