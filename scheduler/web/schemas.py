"""The organisation API's request and response models.

These models validate requests *and* generate the OpenAPI document (scheduler/openapi.py),
so the documentation cannot drift from what the server accepts.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from mailer.message import validate_address
from scheduler.web.assessment_schemas import AssessmentMarks
from scheduler.web.result_schemas import ResultOut

Locale = Literal["fr", "en"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_ZONES = frozenset(available_timezones())


def _check_zone(value: str) -> str:
    if value not in _ZONES and value != "UTC":
        raise ValueError("not an IANA time zone (e.g. Europe/Paris)")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("not an IANA time zone (e.g. Europe/Paris)") from exc
    return value


def _one_line(value: str) -> str:
    if any(ch in value for ch in "\r\n\x00"):
        raise ValueError("must be a single line")
    return value


TimeZone = Annotated[str, AfterValidator(_check_zone)]
# The mailer's own rule, so that every address the API accepts is one the outbox can send to.
Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=254),
    AfterValidator(validate_address),
    WithJsonSchema({"type": "string", "format": "email"}),
]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_one_line),
]


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


# The document states the rule too (pydantic drops a pattern that follows a BeforeValidator);
# any case is accepted and stored lower-case.
Language = Annotated[
    str,
    BeforeValidator(_lower),
    StringConstraints(pattern=r"^[a-z]{2,3}(-[a-z]{2})?$"),
    WithJsonSchema({"type": "string", "pattern": "^[A-Za-z]{2,3}(-[A-Za-z]{2})?$"}),
]
HHMM = Annotated[str, StringConstraints(pattern=r"^([01]\d|2[0-4]):[0-5]\d$")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _never_null(schema: dict[str, Any]) -> None:
    """A PATCH field may be left out, never sent as null (its validator refuses null): the
    document says so, instead of pydantic's `anyOf: [..., null]` for the optional field."""
    for prop in schema.get("properties", {}).values():
        options = prop.pop("anyOf", None)
        if options is not None:
            prop.update(next(o for o in options if o != {"type": "null"}))
        if "default" in prop and prop["default"] is None:
            del prop["default"]


class _Patch(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_never_null)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class WeeklyInterval(_In):
    day: Weekday
    start: HHMM = Field(examples=["09:00"])
    end: HHMM = Field(examples=["12:00"])


class Interval(_In):
    start: HHMM
    end: HHMM


class Override(_In):
    date: date
    intervals: list[Interval] = Field(
        description="Hours that day, replacing the weekly ones; empty for a day off."
    )


class AvailabilityDoc(_In):
    """Weekly hours in the evaluator's own time zone, plus dated exceptions."""

    weekly: list[WeeklyInterval] = Field(default_factory=list, max_length=200)
    overrides: list[Override] = Field(default_factory=list, max_length=1000)


class EvaluatorIn(_In):
    name: Name
    email: Email
    timezone: TimeZone = Field(examples=["Europe/Paris"])
    languages: list[Language] = Field(min_length=1, max_length=20, examples=[["fr", "en"]])
    locale: Locale = "fr"


class EvaluatorPatch(_Patch):
    name: Name | None = None
    email: Email | None = None
    timezone: TimeZone | None = None
    languages: list[Language] | None = Field(None, min_length=1, max_length=20)
    locale: Locale | None = None

    @field_validator("name", "email", "timezone", "languages", "locale", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Only runs for fields the request sent, so the error names the field itself.
        if value is None:
            raise ValueError("cannot be null; leave the field out to keep its value")
        return value


class EvaluatorOut(_Out):
    id: uuid.UUID
    name: str
    email: str
    timezone: str
    languages: list[str]
    locale: str
    created_at: datetime
    calendar_feed: str | None = Field(
        None,
        description="The evaluator's private calendar subscription (text/calendar): every "
        "interview of theirs from 30 days back on. Re-issue it with "
        "POST /evaluators/{id}/calendar_feed.",
    )
    calendar_feed_webcal: str | None = Field(
        None, description="The same feed as a webcal:// link, which calendar apps open."
    )


class CandidateIn(_In):
    name: Name
    email: Email
    language: Language = Field(description="The language of the exam.", examples=["en"])
    locale: Locale = Field("fr", description="The language of pages and e-mails.")
    timezone: TimeZone = "Europe/Paris"
    book_by: date | datetime | None = Field(
        None,
        description="Last moment an interview may take place: an instant, or a date meaning "
        "the end of that day in the candidate's time zone.",
    )


class BookingSummary(_Out):
    id: uuid.UUID
    evaluator_id: uuid.UUID
    start: datetime
    end: datetime
    status: str


class ApiWarning(BaseModel):
    """Something accepted that will not work as the caller probably expects."""

    field: str = Field(description="The input field concerned.", examples=["language"])
    code: Literal["no_evaluator_for_language"] = Field(description="Stable, for programs.")
    message: str = Field(description="For people.")


class HoldOut(_Out):
    reason: str
    since: datetime


class CandidateOut(_Out):
    id: uuid.UUID
    name: str
    email: str
    language: str
    locale: str
    timezone: str
    book_by: datetime | None
    link: str = Field(description="The candidate's personal link, to book and see the booking.")
    booking: BookingSummary | None = None
    created_at: datetime
    hold: HoldOut | None = Field(
        None, description="A legal hold: retention spares them and erasure is refused."
    )
    warnings: list[ApiWarning] = Field(
        default_factory=list,
        description="Empty when all is well. `no_evaluator_for_language`: no evaluator "
        "examines the candidate's `language` yet, so they see no slot until one is added "
        "(list them with `GET /candidates?unservable=true`).",
    )


class SlotOut(BaseModel):
    start: datetime
    end: datetime


class SlotsOut(BaseModel):
    timezone: str
    slots: list[SlotOut]


class SlotsQuery(_In):
    language: Language
    from_: date = Field(alias="from")
    to: date
    timezone: TimeZone = "UTC"


class CandidatesQuery(_In):
    unservable: bool | None = Field(
        None,
        description="`true`: only candidates whose exam language no evaluator examines "
        "(they see no slot); `false`: only the others.",
    )


class RangeQuery(_In):
    from_: date | None = Field(None, alias="from")
    to: date | None = None
    evaluator_id: uuid.UUID | None = None


class CandidateSlotsQuery(_In):
    from_: date | None = Field(None, alias="from")
    to: date | None = None
    tz: TimeZone | None = None


class BookingIn(_In):
    start: datetime = Field(description="ISO-8601 with an offset, e.g. 2026-12-03T14:00:00+01:00")

    @model_validator(mode="after")
    def _aware(self) -> BookingIn:
        if self.start.tzinfo is None:
            raise ValueError("start needs a UTC offset (e.g. +01:00 or Z)")
        return self


class RoomLinks(BaseModel):
    candidate: str
    evaluator: str


class MessageOut(BaseModel):
    """One e-mail about a booking and where it stands in the outbox."""

    id: uuid.UUID
    kind: str
    recipient: str
    subject: str
    message_id: str
    status: Literal["pending", "sending", "sent", "failed"] = Field(
        description="pending (waiting for its next attempt), sending, sent (accepted by the "
        "SMTP server) or failed (for good: resend it with POST .../resend)."
    )
    attempts: int = Field(description="Delivery attempts started since it was (re)queued.")
    last_error: str | None = Field(description="The last failed attempt's error, if any.")
    next_attempt_at: datetime | None = Field(
        None, description="pending: when it will be tried; null otherwise."
    )
    created_at: datetime
    sent_at: datetime | None


class AttendanceOut(_Out):
    """One participant's connection to the room: from opening the link to leaving it."""

    role: Literal["candidate", "evaluator"]
    joined_at: datetime
    left_at: datetime | None = Field(
        description="Null while connected (or when the server stopped abruptly)."
    )
    left_reason: str | None = Field(
        description="left, disconnected, replaced (another tab), ended, expired (the room "
        "closed), policy (protocol errors), shutdown, cancelled or moved (the booking "
        "changed during the session).",
    )


class RecordingOut(_Out):
    """One recorded room session (Matroska: each participant's video and sound)."""

    id: uuid.UUID
    started_at: datetime = Field(description="When recording started (the admission).")
    ended_at: datetime | None = Field(
        description="When it stopped (the interview's end, or everyone left). Null while "
        "recording, or if the server stopped abruptly: the file holds what was written."
    )
    bytes: int | None = Field(description="The file's size once finished.")
    download: str = Field(
        "", description="GET this path with the API key for the file (video/x-matroska)."
    )


class ConsentOut(_Out):
    """A participant's consent to the recording, given on their room page."""

    role: Literal["candidate", "evaluator"]
    name: str = Field(description="The participant's name when they consented.")
    notice: str = Field(
        description="The SHA-256 (hex) of the notice text they were shown and agreed to."
    )
    consented_at: datetime


class RoomReport(_Out):
    """What happened in the booking's video room (docs/rooms.md)."""

    attendance: list[AttendanceOut]
    recordings: list[RecordingOut] = Field(
        description="The room's recordings, when the organisation records its interviews."
    )
    consents: list[ConsentOut] = Field(
        description="Consents to the recording: a recorded room seats a participant only "
        "once theirs is stored, and records only once both are."
    )
    admitted_at: datetime | None = Field(description="When the evaluator admitted the candidate.")
    id_checked_at: datetime | None = Field(description="When the evaluator checked the ID.")
    interview_started_at: datetime | None = Field(
        description="Start of the interview proper (its first part after the ID check)."
    )
    step: Literal["id_check", "introduction", "role_play", "discussion"] | None
    ended_at: datetime | None
    outcome: Literal["completed", "interrupted", "id_refused", "no_show"] | None = Field(
        description="Set by the evaluator when ending the interview."
    )


class BookingOut(_Out):
    id: uuid.UUID
    candidate_id: uuid.UUID
    evaluator_id: uuid.UUID
    start: datetime
    end: datetime
    status: str = Field(
        description="confirmed (the candidate may still change it), locked (inside the "
        "change lock), cancelled, no_show (marked absent by the timer or the evaluator) or "
        "completed (the evaluator ended the interview as completed)."
    )
    sequence: int
    created_at: datetime
    updated_at: datetime
    recording: bool = Field(
        description="Whether its room records: the organisation records and has not turned "
        "recording off for this booking (PATCH)."
    )
    rooms: RoomLinks | None = None
    messages: list[MessageOut] | None = None
    room: RoomReport | None = Field(
        None, description="Attendance, ID check and outcome (GET /bookings/{id} only)."
    )


class BookingPatch(_Patch):
    recording: bool | None = Field(
        None,
        description="`false`: this booking's room is not recorded, whatever the "
        "organisation's setting (a participant does not consent to it); `true`: it follows "
        "the organisation's setting again. From the next room session on.",
    )

    @field_validator("recording", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null; leave the field out to keep its value")
        return value


class BookingList(BaseModel):
    bookings: list[BookingOut]


class EvaluatorList(BaseModel):
    evaluators: list[EvaluatorOut]


class CandidateList(BaseModel):
    candidates: list[CandidateOut]


class ForceMajeureIn(_In):
    action: Literal["move", "cancel"]
    start: datetime | None = Field(
        None, description="The new start (ISO-8601 with an offset); required to move."
    )
    evaluator_id: uuid.UUID | None = Field(
        None,
        description="Who examines at the new time; default: the current evaluator if "
        "free, else Viva picks a qualified free one.",
    )
    reason: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)
    ] = Field(description="Why; kept in the booking's history and told to the people concerned.")

    @model_validator(mode="after")
    def _move_needs_start(self) -> ForceMajeureIn:
        if self.action == "move":
            if self.start is None:
                raise ValueError("start is required to move a booking")
            if self.start.tzinfo is None:
                raise ValueError("start needs a UTC offset (e.g. +01:00 or Z)")
        return self


class EventOut(_Out):
    at: datetime
    actor: Literal["candidate", "evaluator", "organisation", "system"]
    actor_name: str
    action: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reason: str | None


class HistoryOut(BaseModel):
    events: list[EventOut]


class ApiKeyIn(_In):
    name: Name = Field(description='What the key is for, to tell keys apart (e.g. "LMS 2027").')


class ApiKeyOut(_Out):
    id: uuid.UUID
    name: str
    prefix: str = Field(description="The key's first characters, to recognise it; never the key.")
    created_at: datetime
    revoked_at: datetime | None = Field(description="Set once revoked: the key answers 401.")


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(
        description="The key itself, shown this once: Viva keeps only a hash of it. Send it "
        "as `Authorization: Bearer <key>`."
    )


class ApiKeyList(BaseModel):
    keys: list[ApiKeyOut]


class CandidateLinks(BaseModel):
    link: str = Field(description="The candidate's new personal link (the old one is revoked).")
    room: str | None = Field(
        description="The candidate's new room link for their active booking (the old one is "
        "revoked); null without an active booking."
    )


class OrganisationOut(_Out):
    id: uuid.UUID
    name: str
    contact_email: str
    contact_phone: str | None
    recording: bool = Field(
        description="Whether interviews are recorded; candidates are told before joining."
    )
    created_at: datetime


class OrganisationPatch(_Patch):
    recording: bool | None = Field(
        None,
        description="Record interviews from the next room session on (each room records "
        "from the admission to the end of the interview).",
    )
    contact_email: Email | None = Field(
        None,
        description="The organisation's contact address: sender name's address in the "
        "calendar invitations (ORGANIZER) and the contact candidates are given.",
    )

    @field_validator("recording", "contact_email", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null; leave the field out to keep its value")
        return value


# --- a candidate's data on request (scheduler.privacy) ----------------------------------


class ErasureIn(_In):
    mode: Literal["erase"] = Field(
        description="`erase`: remove or anonymise every personal field of the candidate "
        "everywhere (their bookings stay as anonymous rows). The only mode today."
    )


class CandidateProfile(_Out):
    id: uuid.UUID
    name: str
    email: str
    language: str
    locale: str
    timezone: str
    book_by: datetime | None
    created_at: datetime
    hold_reason: str | None = Field(None, description="A legal hold's reason, if any.")
    held_at: datetime | None = None


class MessagePartOut(_Out):
    content_type: str = Field(examples=["text/plain"])
    text: str


class MessageCopyOut(BaseModel):
    """One e-mail sent (or to be sent) to the candidate, as sent."""

    id: uuid.UUID
    kind: str
    status: Literal["pending", "sending", "sent", "failed"]
    created_at: datetime
    sent_at: datetime | None
    headers: list[tuple[str, str]] = Field(description="Every header, in order.")
    parts: list[MessagePartOut] = Field(
        description="The readable parts: the text, the HTML, the calendar invitation."
    )


class BookingExport(BaseModel):
    id: uuid.UUID
    evaluator_id: uuid.UUID
    start: datetime
    end: datetime
    status: str
    created_at: datetime
    updated_at: datetime
    cancel_reason: str | None
    history: list[EventOut]
    messages: list[MessageCopyOut]
    room: RoomReport = Field(
        description="Attendance, ID check, outcome; recordings as links (GET with the API key)."
    )
    evaluator_notes: str = Field(description="The evaluator's notes on the interview.")
    assessment: AssessmentMarks | None = Field(
        None, description="The evaluator's assessment of the interview (draft or submitted)."
    )


class CandidateExport(BaseModel):
    """Everything Viva holds about one candidate (docs/privacy.md)."""

    exported_at: datetime
    organisation_id: uuid.UUID
    profile: CandidateProfile
    bookings: list[BookingExport]
    other_messages: list[MessageCopyOut] = Field(
        description="Messages to the candidate's address outside their bookings."
    )
    result: ResultOut | None = Field(None, description="The certified result, if any.")


class ErasureOut(BaseModel):
    """What the erasure touched: counts, never the erased data."""

    erased_at: datetime
    bookings: int = Field(description="Bookings kept as anonymous rows.")
    messages: int = Field(description="Messages whose subject, body and address were dropped.")
    recordings: int = Field(description="Recordings deleted, files and entries.")
