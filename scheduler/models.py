"""The tables the scheduler owns. The mailer and rooms packages declare their own."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rooms.tokens import new_nonce
from scheduler.db import UTCDateTime

ACTIVE_STATUSES = ("confirmed", "locked")
_ACTIVE_SQL = "status IN ('confirmed', 'locked')"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)


class Base(DeclarativeBase):
    metadata = metadata
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), uuid.UUID: Uuid()}

    if TYPE_CHECKING:
        # Each model maps one plain table (SQLAlchemy types it as any FromClause), so Core
        # statements such as `update(Timer.__table__)` type-check.
        __table__: ClassVar[Table]


class Organisation(Base):
    __tablename__ = "organisations"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    contact_email: Mapped[str] = mapped_column(String(320))
    contact_phone: Mapped[str | None] = mapped_column(String(50))
    created_at: Mapped[datetime]
    # Whether its interviews are recorded (rooms.recording); candidates are told before
    # joining. Off until the organisation turns it on.
    recording: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    # Raised in every transaction that may change its slots (scheduler.calendar_versions):
    # the key under which each process caches the free times it computed.
    # Only a server default, so that inserts written for older schemas leave it out.
    calendar_version: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    # Its assessment scheme (scheduler.scheme: the scale's levels and the criteria), as the
    # API document; null: the default (CEFR levels, the criteria of an oral like CLOE's).
    assessment_scheme: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ApiKey(Base):
    """Only a SHA-256 of the key is kept: keys are 256-bit random, so no slow hash is needed."""

    __tablename__ = "api_keys"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class Evaluator(Base):
    __tablename__ = "evaluators"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    timezone: Mapped[str] = mapped_column(String(64))
    languages: Mapped[list[str]] = mapped_column(JSON)
    locale: Mapped[str] = mapped_column(String(8))
    # The API document {"weekly": [...], "overrides": [...]}; parsed by scheduler.availability.
    availability: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


class Candidate(Base):
    __tablename__ = "candidates"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    language: Mapped[str] = mapped_column(String(16))
    locale: Mapped[str] = mapped_column(String(8))
    timezone: Mapped[str] = mapped_column(String(64))
    book_by: Mapped[datetime | None]
    # Rotating it revokes the personal link (see rooms.tokens).
    link_nonce: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    # Set when their personal data was erased on request (scheduler.privacy): the row is
    # kept, anonymous, because their bookings still point at it; the API no longer finds it.
    erased_at: Mapped[datetime | None]


class Booking(Base):
    __tablename__ = "bookings"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id"))
    candidate_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("candidates.id"))
    evaluator_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("evaluators.id"))
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]
    # end_at + the buffer in force when booked: the interval no other booking may overlap.
    block_end: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    # iCalendar SEQUENCE: raised on every change of time or status.
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    # One nonce per room link (rooms.tokens): rotating one revokes that role's link alone.
    # The evaluator's is rotated whenever the booking goes to another evaluator, so the
    # replaced evaluator's link dies; the candidate's when their links are re-issued.
    candidate_room_nonce: Mapped[str] = mapped_column(String(64), default=new_nonce)
    evaluator_room_nonce: Mapped[str] = mapped_column(String(64), default=new_nonce)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    # Null: recorded if the organisation records. False: the organisation turned recording
    # off for this booking (a participant does not consent to it).
    recording: Mapped[bool | None]

    __table_args__ = (
        Index("ix_bookings_evaluator_start", "evaluator_id", "start_at"),
        Index("ix_bookings_org_start", "organisation_id", "start_at"),
        # The partial unique index below cannot serve queries whose statuses are bound
        # parameters (SQLite matches partial indexes only on literal WHERE clauses).
        Index("ix_bookings_candidate", "candidate_id"),
        # One active booking per candidate, whatever the concurrency.
        Index(
            "uq_bookings_active_candidate",
            "candidate_id",
            unique=True,
            sqlite_where=text(_ACTIVE_SQL),
            postgresql_where=text(_ACTIVE_SQL),
        ),
    )


class BookingEvent(Base):
    """The booking's history: appended on every change, by anyone, never rewritten."""

    __tablename__ = "booking_events"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"))
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id"))
    # 1, 2, 3... within the booking: the order of events even when the clock stands still.
    position: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    # "candidate", "evaluator" (ending the interview), "organisation" (an API key, named in
    # actor_name) or "system" (timers).
    actor: Mapped[str] = mapped_column(String(16))
    actor_name: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("uq_booking_events_position", "booking_id", "position", unique=True),)


class Timer(Base):
    """One timed action of a booking (the lock, a reminder). The row is the truth; the
    scheduler's in-memory jobs are rebuilt from pending rows at start-up."""

    __tablename__ = "timers"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"), index=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id"))
    kind: Mapped[str] = mapped_column(String(32))
    due_at: Mapped[datetime]
    # Set by the one atomic claim (UPDATE ... WHERE done_at IS NULL RETURNING).
    done_at: Mapped[datetime | None]
    # "done", "dropped" (no longer made sense, e.g. a reminder after the start), "cancelled".
    outcome: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime]
    # Failed tries of its action (a transient error); a pending row waits until `retry_at`
    # before it is claimed again, and keeps the last error for the operator.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    retry_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index(
            "ix_timers_pending_due",
            "due_at",
            sqlite_where=text("done_at IS NULL"),
            postgresql_where=text("done_at IS NULL"),
        ),
    )


class Assessment(Base):
    """The evaluator's assessment of one interview (scheduler.assessments).

    `scheme` is a copy of the organisation's scheme the levels were given on, so that a
    later change of scale or criteria leaves a submitted assessment readable as it was.
    A row without `submitted_at` is the evaluator's draft, saved as typed.
    """

    __tablename__ = "assessments"
    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"), primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id"), index=True)
    scheme: Mapped[dict[str, Any]] = mapped_column(JSON)
    # {criterion code: level code}; a draft may leave criteria out.
    levels: Mapped[dict[str, str]] = mapped_column(JSON)
    overall_level: Mapped[str | None] = mapped_column(String(32))
    comment: Mapped[str] = mapped_column(Text, default="")
    submitted_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class Result(Base):
    """The result an organisation certifies for a candidate (scheduler.results): one per
    candidate, corrected in place until published, then only with a reason, each former
    version kept in `result_versions`.

    The verification code is derived from the server secret and the row's id (so the PDF can
    print it again, byte for byte); only its SHA-256 is stored, for the look-up of /v/{code}.
    """

    __tablename__ = "results"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id"), index=True)
    candidate_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("candidates.id"), unique=True)
    # The completed interview the oral level came from, if any.
    booking_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("bookings.id"))
    oral_level: Mapped[str | None] = mapped_column(String(32))
    # [{"name": "written", "level": "B2", "score": 71.5}, ...]
    parts: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    overall_level: Mapped[str] = mapped_column(String(32))
    target_level: Mapped[str | None] = mapped_column(String(32))
    target_reached: Mapped[bool]
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    published_at: Mapped[datetime | None]
    # Rotating it revokes the results link (rooms.tokens, kind RESULTS).
    link_nonce: Mapped[str] = mapped_column(String(64), default=new_nonce)
    code_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    revoked_at: Mapped[datetime | None]
    revoke_reason: Mapped[str | None] = mapped_column(Text)


class ResultVersion(Base):
    """A published result as it was before a correction: never rewritten."""

    __tablename__ = "result_versions"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    result_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("results.id"), index=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id"))
    version: Mapped[int] = mapped_column(Integer)
    # The result's fields as they were (levels, parts, target), as JSON.
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    replaced_at: Mapped[datetime]
    # Who corrected it (the API key's name) and why.
    actor_name: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
