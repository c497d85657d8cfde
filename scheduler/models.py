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

    # How many days each kind of personal data is kept ({kind: days}, 0: for ever), over
    # the server's defaults ([retention] in config.toml; scheduler.retention). Null: all
    # defaults.
    retention: Mapped[dict[str, int] | None] = mapped_column(JSON)
    # The recording notice, its own text per language ({"fr": ..., "en": ...}); a language
    # left out shows Viva's text (templates). A changed text asks for consent again.
    consent_notices: Mapped[dict[str, str] | None] = mapped_column(JSON)


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
    # Set when their personal data was erased on request (scheduler.privacy_evaluators):
    # the row stays, anonymous, as the evaluator of their past interviews.
    erased_at: Mapped[datetime | None]

    # Behind their calendar feed's link (scheduler.feeds): rotating it revokes the link.
    # Nullable only for rows older than the column; migration 0014 gave those one.
    feed_nonce: Mapped[str | None] = mapped_column(String(64), default=new_nonce)


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
    # A legal hold (an appeal): while `hold_reason` is set, retention deletes nothing of
    # theirs and an erasure is refused (scheduler.privacy).
    hold_reason: Mapped[str | None] = mapped_column(Text)
    held_at: Mapped[datetime | None]


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


class RetentionRun(Base):
    """One organisation's retention run (scheduler.retention_runs): planned, claimed, done.

    Rows are the truth, like timers: the pending row (`finished_at` null, one per
    organisation) says when the next run is due; a process claims it with a lease (a
    crashed run is taken over once the lease lapses), adds its counts after every batch,
    and on finishing plans the next day's row in the same transaction.
    """

    __tablename__ = "retention_runs"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id"))
    due_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # {kind: items deleted or anonymised}, also {"skipped": n} (e.g. a candidate whose
    # recording is still being written).
    counts: Mapped[dict[str, int] | None] = mapped_column(JSON)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_retention_runs_org_due", "organisation_id", "due_at"),
        # One pending run per organisation, whichever processes plan it.
        Index(
            "uq_retention_runs_pending",
            "organisation_id",
            unique=True,
            sqlite_where=text("finished_at IS NULL"),
            postgresql_where=text("finished_at IS NULL"),
        ),
    )


class ExternalCalendar(Base):
    """One of an evaluator's own calendars, read for busy times (scheduler.external_calendars).

    `secret` is the password encrypted (scheduler.credentials), never the password itself.
    `due_at` is when the next scheduled fetch may claim it (an atomic UPDATE, so one process
    fetches it); the last fetch's outcome is kept for the organisation to see.
    """

    __tablename__ = "external_calendars"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id"))
    evaluator_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("evaluators.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # "caldav" or "ics"
    url: Mapped[str] = mapped_column(Text)
    username: Mapped[str | None] = mapped_column(String(200))
    secret: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    due_at: Mapped[datetime]
    last_attempt_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # CalDAV only: the evaluator's interviews are written into it (scheduler.writeback).
    write_back: Mapped[bool] = mapped_column(default=False, server_default=text("false"))


class ExternalPushed(Base):
    """An interview written into an external calendar, at which SEQUENCE: what to rewrite
    when it changes, and to delete when it is cancelled or goes to another evaluator."""

    __tablename__ = "external_pushed"
    # `sequence` of a copy that must be written again whatever its booking's SEQUENCE, past
    # interviews included: its candidate was erased (scheduler.privacy), and the copy on the
    # evaluator's server still names them.
    REWRITE = -1
    calendar_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("external_calendars.id"), primary_key=True
    )
    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"), primary_key=True)
    sequence: Mapped[int] = mapped_column(Integer)
    pushed_at: Mapped[datetime]


class ExternalBusy(Base):
    """A busy interval read from an external calendar: the last good copy of its fetch."""

    __tablename__ = "external_busy"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    calendar_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("external_calendars.id"), index=True)
    evaluator_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("evaluators.id"))
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]

    __table_args__ = (Index("ix_external_busy_evaluator_start", "evaluator_id", "start_at"),)


class WebhookEndpoint(Base):
    """Where an organisation wants to hear of its bookings (scheduler.webhooks). The signing
    secrets are stored encrypted (Fernet, keyed from `[server] secret_key`): the database
    alone does not let anyone sign in Viva's name."""

    __tablename__ = "webhook_endpoints"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    # The event types it wants, e.g. ["booking.created", "booking.cancelled"].
    events: Mapped[list[str]] = mapped_column(JSON)
    enabled: Mapped[bool]
    secret: Mapped[str] = mapped_column(Text)
    # The secret replaced by the last rotation: it still signs until `previous_until`.
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class WebhookDelivery(Base):
    """One event owed to one endpoint: written in the transaction of the change it tells,
    delivered afterwards by scheduler.webhooks.delivery (claims with leases, like the mail
    outbox), in order per booking and endpoint (`position`)."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, comment="Also the webhook-id.")
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id"))
    booking_id: Mapped[uuid.UUID | None]
    # 1, 2, 3... per (endpoint, booking): a booking's next delivery waits for this one.
    position: Mapped[int] = mapped_column(Integer)
    event_type: Mapped[str] = mapped_column(String(64))
    # The exact body, so every attempt signs and sends the same bytes.
    payload: Mapped[str] = mapped_column(Text)
    # pending, sending (leased to `claimed_by` until next_attempt_at), delivered, failed.
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime]
    # Retries stop after this instant; null: `[webhooks] retry_hours` after `created_at`
    # (a manual retry sets it, from its own instant).
    retry_until: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(300))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    # The start of the receiver's last answer (bounded), to show the organisation.
    last_response: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_chain", "endpoint_id", "booking_id", "position"),
    )


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
