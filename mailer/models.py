"""The outbox table, in the mailer's own MetaData (the app's Alembic migration includes it).

There is no foreign key to bookings: that table belongs to another MetaData, and a message
must outlive whatever caused it (a cancellation e-mail is still owed after the booking row
is gone).
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import (
    CheckConstraint,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import TypeDecorator

from mailer.primitives import UTCDateTime

# UTCDateTime stays importable from here: migrations 0002, 0003 and 0008 name it so.
__all__ = [
    "OUTBOX_STATUSES",
    "MessageSeal",
    "SealedMessage",
    "UTCDateTime",
    "metadata",
    "outbox_messages",
    "seal_messages",
]


class MessageSeal(Protocol):
    """Encrypts a stored message and opens it again (the app's: scheduler.credentials)."""

    def seal(self, raw: bytes) -> bytes: ...

    def open(self, stored: bytes) -> bytes: ...


_SEAL = "viva_message_seal"


def seal_messages(engine: AsyncEngine, seal: MessageSeal) -> None:
    """Store this engine's outbox bodies sealed with `seal`, and open them when read.

    A stored message carries its reader's links in clear (invitations, re-issued links,
    results): sealed, a copy of the database alone yields none of them. The seal is the
    engine's (its dialect carries it), so two apps in one process keep their own keys; an
    engine without one reads and writes bodies in clear (the mailer's own tests, tools).
    """
    setattr(engine.dialect, _SEAL, seal)


class SealedMessage(TypeDecorator[bytes]):
    """The `raw` column: bytes in Python, sealed in the database where the engine has a
    seal (`seal_messages`). An empty body (erased, expired) stays empty, so "has a body"
    is still `length(raw) > 0`; a body stored before sealing is read as it is."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: bytes | None, dialect: Dialect) -> bytes | None:
        seal: MessageSeal | None = getattr(dialect, _SEAL, None)
        return seal.seal(value) if value and seal is not None else value

    def process_result_value(self, value: Any, dialect: Dialect) -> bytes | None:
        seal: MessageSeal | None = getattr(dialect, _SEAL, None)
        if value and seal is not None:
            return seal.open(bytes(value))
        return bytes(value) if value is not None else None


# Explicit constraint and index names keep Alembic migrations stable across databases.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

OUTBOX_STATUSES = ("pending", "sending", "sent", "failed")

outbox_messages = Table(
    "outbox_messages",
    metadata,
    Column("id", Uuid(), primary_key=True, comment="Also the left part of the Message-ID."),
    Column("organisation_id", Uuid(), nullable=False, index=True),
    Column("booking_id", Uuid(), nullable=True, index=True),
    Column("kind", String(64), nullable=False, comment="booking_confirmed, booking_updated..."),
    Column("recipient", String(320), nullable=False, comment="The single envelope recipient."),
    Column("subject", Text(), nullable=False),
    Column("message_id", String(255), nullable=False, comment="Message-ID header, for logs."),
    Column(
        "raw",
        SealedMessage(),
        nullable=False,
        comment="The complete RFC 5322 message, so delivery never needs to render anything.",
    ),
    Column("status", String(16), nullable=False),
    Column(
        "attempts",
        Integer(),
        nullable=False,
        comment="Delivery attempts started (counted when a worker claims the row).",
    ),
    Column(
        "next_attempt_at",
        UTCDateTime(),
        nullable=False,
        comment=(
            "pending: when it may be tried (again); sending: when the claim's lease ends and "
            "another worker may take it over."
        ),
    ),
    Column("last_error", Text(), nullable=True),
    Column(
        "claimed_by",
        String(300),
        nullable=True,
        comment="sending: the worker holding the lease, so a restarted one takes its rows back.",
    ),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime(), nullable=True),
    CheckConstraint(
        "status IN ('pending', 'sending', 'sent', 'failed')",
        name="status",
    ),
    CheckConstraint("attempts >= 0", name="attempts"),
    Index(None, "status", "next_attempt_at"),
)
