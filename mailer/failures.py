"""A send that failed: what the SMTP error says (how to write it down, whether trying again
can ever help: mailer.outbox decides retry or failure with it), and what is told of a message
failed for good."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import aiosmtplib
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["FailedMessage", "OnFailedInTransaction", "describe", "is_permanent", "without_address"]


@dataclass(frozen=True)
class FailedMessage:
    """A message marked failed for good, as told to `on_failed_in_transaction`. The error
    no longer names the recipient (see `without_address`)."""

    id: uuid.UUID
    organisation_id: uuid.UUID
    booking_id: uuid.UUID | None
    kind: str
    attempts: int
    error: str
    at: datetime


# Runs in the transaction that marks a message failed (the scheduler's webhooks), so what
# it writes exists if and only if the failure is recorded.
OnFailedInTransaction = Callable[[AsyncSession, FailedMessage], Awaitable[None]]


def describe(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def without_address(error: str, recipient: str) -> str:
    """An SMTP error often quotes the address it refused. Logs name a message by its
    Message-ID, never its recipient: the outbox row says who it was for for as long as it
    exists, and an erased candidate's row stops saying it (scheduler.privacy), which a log
    line kept elsewhere could not."""
    return re.sub(re.escape(recipient), "<recipient>", error, flags=re.IGNORECASE)


def is_permanent(exc: BaseException) -> bool:
    """Whether a per-message error means "never going to work": a 5xx for this message.

    Connection-level trouble never is: a 5xx while connecting or logging in is a
    configuration or server problem, fixed by an operator, after which the message must go.
    """
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return all(500 <= r.code < 600 for r in exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return 500 <= exc.code < 600
    if isinstance(exc, aiosmtplib.SMTPNotSupported | ValueError):
        return True  # e.g. an address the server cannot take: retrying changes nothing
    return False
