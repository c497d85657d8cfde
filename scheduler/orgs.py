"""Organisations and their API keys (stored as SHA-256, shown once at creation).

An organisation may hold several keys, so that one can be rotated without downtime: create
the new key, move the clients to it, revoke the old one. Every request looks its key up in
the database (`authenticate`), with no cache, so a revocation holds at once on every process.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mailer.message import validate_address
from scheduler.errors import Conflict, NotFound
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


async def add_key(
    session: AsyncSession, organisation_id: uuid.UUID, *, name: str, now: datetime
) -> tuple[ApiKey, str]:
    """A new key for the organisation: its row and the plaintext, which exists only now."""
    key = await add_api_key(session, organisation_id, name=name, now=now)
    row = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    assert row is not None  # just inserted
    return row, key


async def list_keys(session: AsyncSession, organisation_id: uuid.UUID) -> list[ApiKey]:
    """The organisation's keys, revoked ones included (they say when), oldest first."""
    rows = await session.scalars(
        select(ApiKey)
        .where(ApiKey.organisation_id == organisation_id)
        .order_by(ApiKey.created_at, ApiKey.id)
    )
    return list(rows)


async def revoke_key(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    key_id: uuid.UUID,
    *,
    now: datetime,
    acting_key_id: uuid.UUID | None = None,
) -> ApiKey:
    """Revoke one of the organisation's keys; revoking a revoked key changes nothing.

    NotFound for another organisation's key. `acting_key_id`: the key making the request
    (the API), which may revoke itself only while another key is active, so that an
    organisation cannot lock itself out by mistake; the command line (None) may.
    """
    # One revocation per organisation at a time (PostgreSQL; SQLite's write transaction is
    # exclusive anyway): two keys revoking themselves at once must not both go.
    await session.get(Organisation, organisation_id, with_for_update=True)
    key = await session.get(ApiKey, key_id)
    if key is None or key.organisation_id != organisation_id:
        raise NotFound("no such key")
    if key.revoked_at is not None:
        return key
    if key.id == acting_key_id:
        others = await session.scalar(
            select(ApiKey.id)
            .where(
                ApiKey.organisation_id == organisation_id,
                ApiKey.id != key.id,
                ApiKey.revoked_at.is_(None),
            )
            .limit(1)
        )
        if others is None:
            raise Conflict(
                "this is the organisation's last active key: create another one before revoking it"
            )
    key.revoked_at = now
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
