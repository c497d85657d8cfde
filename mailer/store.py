"""The outbox's rows as the rest of Viva sees them: written with the booking change that
causes them, read by the dev mailbox (/dev/mail) and the organisation's view, queued again
on the organisation's request. Delivering them is `mailer.outbox`'s business.

`enqueue` / `enqueue_content` add a row to the caller's session and do not commit, so the
message exists if and only if the booking change that caused it is committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

from sqlalchemy import CursorResult, Result, Select, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailer.message import MailContent, message_id_for, validate_address
from mailer.models import outbox_messages as t
from mailer.settings import SmtpSettings

__all__ = [
    "StoredMessage",
    "booking_messages",
    "enqueue",
    "enqueue_content",
    "get_message",
    "list_messages",
    "requeue",
    "require_aware",
    "rows_changed",
]


def require_aware(value: datetime, name: str) -> None:
    """Every instant in the outbox is compared with others: a naive one is a bug upstream."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def rows_changed(result: Result[Any]) -> int:
    """How many rows an UPDATE changed. Its result is a CursorResult, which has the count;
    the session types every result as the general `Result`."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"not the result of an UPDATE or DELETE: {type(result).__name__}")
    return result.rowcount


async def enqueue(
    session: AsyncSession,
    *,
    build: Callable[[str], EmailMessage],
    domain: str,
    organisation_id: uuid.UUID,
    booking_id: uuid.UUID | None,
    kind: str,
    now: datetime,
) -> uuid.UUID:
    """Add one message to the outbox in the caller's transaction; return the row id.

    The Message-ID must derive from the row id, which does not exist before this call, so
    the caller passes a builder: it receives the Message-ID (`<row id@domain>`) and returns
    the finished message. Exactly one To recipient and no Cc/Bcc are accepted: the stored
    bytes are sent as they are, so a Bcc header would reach every recipient.
    """
    require_aware(now, "now")
    row_id = uuid.uuid4()
    message_id = message_id_for(row_id, domain)
    message = build(message_id)
    if message["Message-ID"] != message_id:
        raise ValueError("the builder must use the Message-ID it was given")
    if message.get_all("Cc") or message.get_all("Bcc") or len(message.get_all("To") or []) != 1:
        raise ValueError("an outbox message has exactly one To recipient and no Cc/Bcc")
    addresses = message["To"].addresses
    if len(addresses) != 1:
        raise ValueError("an outbox message has exactly one To recipient")
    recipient = validate_address(addresses[0].addr_spec)
    await _insert(
        session,
        row_id=row_id,
        organisation_id=organisation_id,
        booking_id=booking_id,
        kind=kind,
        recipient=recipient,
        subject=str(message["Subject"] or ""),
        message_id=message_id,
        raw=message.as_bytes(policy=SMTP),
        now=now,
    )
    return row_id


# Built once: `insert(t).values(...)` coerced its fifteen values and computed the
# statement's cache key again for every message.
_INSERT = insert(t)


async def _insert(
    session: AsyncSession,
    *,
    row_id: uuid.UUID,
    organisation_id: uuid.UUID,
    booking_id: uuid.UUID | None,
    kind: str,
    recipient: str,
    subject: str,
    message_id: str,
    raw: bytes,
    now: datetime,
) -> None:
    await session.execute(
        _INSERT,
        {
            "id": row_id,
            "organisation_id": organisation_id,
            "booking_id": booking_id,
            "kind": kind,
            "recipient": recipient,
            "subject": subject,
            "message_id": message_id,
            "raw": raw,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": None,
            "created_at": now,
            "sent_at": None,
        },
    )


async def enqueue_content(
    session: AsyncSession,
    *,
    content: MailContent,
    settings: SmtpSettings,
    organisation_id: uuid.UUID,
    booking_id: uuid.UUID | None,
    now: datetime,
) -> uuid.UUID:
    """`enqueue` for what `mailer.compose` returns: the usual call from the scheduler.

    The row holds the bytes `enqueue` would store for `content.to_email(...)`, written
    directly (`MailContent.render`: a third of the CPU), with the same one recipient.
    """
    require_aware(now, "now")
    row_id = uuid.uuid4()
    message_id = message_id_for(row_id, settings.message_id_domain)
    rendered = content.render(message_id=message_id, from_address=settings.from_address)
    await _insert(
        session,
        row_id=row_id,
        organisation_id=organisation_id,
        booking_id=booking_id,
        kind=content.kind,
        recipient=validate_address(rendered.recipient),
        subject=rendered.subject,
        message_id=message_id,
        raw=rendered.raw,
        now=now,
    )
    return row_id


@dataclass(frozen=True)
class StoredMessage:
    """One outbox row as stored, including the exact bytes that were (or will be) sent."""

    id: uuid.UUID
    organisation_id: uuid.UUID
    booking_id: uuid.UUID | None
    kind: str
    recipient: str
    subject: str
    message_id: str
    raw: bytes
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


def _stored_select() -> Select[tuple[object, ...]]:
    return select(*(t.c[field] for field in StoredMessage.__dataclass_fields__))


async def list_messages(
    session: AsyncSession,
    organisation_id: uuid.UUID | None = None,
    limit: int = 50,
) -> list[StoredMessage]:
    """The newest messages first, optionally for one organisation."""
    query = _stored_select().order_by(t.c.created_at.desc(), t.c.id).limit(limit)
    if organisation_id is not None:
        query = query.where(t.c.organisation_id == organisation_id)
    rows = (await session.execute(query)).mappings().all()
    return [StoredMessage(**row) for row in rows]


async def booking_messages(session: AsyncSession, booking_id: uuid.UUID) -> list[StoredMessage]:
    """Every message about one booking, oldest first (the organisation's view)."""
    query = _stored_select().where(t.c.booking_id == booking_id).order_by(t.c.created_at, t.c.id)
    rows = (await session.execute(query)).mappings().all()
    return [StoredMessage(**row) for row in rows]


async def get_message(session: AsyncSession, id: uuid.UUID) -> StoredMessage | None:
    """One message by its row id, or None."""
    row = (await session.execute(_stored_select().where(t.c.id == id))).mappings().first()
    return StoredMessage(**row) if row is not None else None


async def requeue(
    session: AsyncSession, id: uuid.UUID, *, booking_id: uuid.UUID, now: datetime
) -> tuple[StoredMessage | None, bool]:
    """Queue a message of this booking again, at once, with a fresh attempt budget (the
    organisation's resend, after an outage outlasted the retries); in the caller's
    transaction. Returns the message (None if the booking has no such message) and whether
    it was queued: one already pending or sending is left as it is.
    """
    require_aware(now, "now")
    result = await session.execute(
        update(t)
        .where(
            t.c.id == id,
            t.c.booking_id == booking_id,
            t.c.status.in_(("failed", "sent")),
            # An erased message (scheduler.privacy) has no body left to send.
            func.length(t.c.raw) > 0,
        )
        .values(status="pending", attempts=0, next_attempt_at=now, sent_at=None, claimed_by=None)
    )
    queued = bool(rows_changed(result))
    found = await get_message(session, id)
    return (found if found is not None and found.booking_id == booking_id else None), queued
