"""Organisations and their API keys (stored as SHA-256, shown once at creation)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mailer.message import validate_address
from scheduler.models import ApiKey, Organisation

KEY_PREFIX = "viva_"


@dataclass(frozen=True)
class NewKey:
    organisation: Organisation
    api_key: str  # the only time the plaintext exists


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def create_organisation(
    session: AsyncSession,
    *,
    name: str,
    contact_email: str,
    now: datetime,
    contact_phone: str | None = None,
) -> NewKey:
    """A new organisation and its first API key.

    The contact address is validated here (ValueError) because every invitation carries it
    as the ORGANIZER: an address the mailer refuses would make each booking fail later.
    """
    org = Organisation(
        id=uuid.uuid4(),
        name=name,
        contact_email=validate_address(contact_email.strip()),
        contact_phone=contact_phone,
        created_at=now,
    )
    session.add(org)
    await session.flush()
    key = await add_api_key(session, org.id, name="default", now=now)
    return NewKey(org, key)


async def add_api_key(
    session: AsyncSession, organisation_id: uuid.UUID, *, name: str, now: datetime
) -> str:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiKey(
            id=uuid.uuid4(),
            organisation_id=organisation_id,
            name=name,
            prefix=key[:12],
            key_hash=hash_key(key),
            created_at=now,
        )
    )
    await session.flush()
    return key


async def authenticate(session: AsyncSession, key: str) -> tuple[Organisation, ApiKey] | None:
    """The organisation behind a key, or None. Looking up a hash of a 256-bit secret leaks
    nothing through timing, so no constant-time comparison is needed here."""
    if not key.startswith(KEY_PREFIX) or len(key) > 100:
        return None
    row = (
        await session.execute(
            select(Organisation, ApiKey)
            .join(ApiKey, ApiKey.organisation_id == Organisation.id)
            .where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
        )
    ).first()
    return (row[0], row[1]) if row else None
