"""Migration 0007 splits the shared room nonce without breaking a link already mailed.

An existing booking's nonce becomes the candidate's and is copied to the evaluator's, so
both links in the e-mails sent before the upgrade keep working; from then on each role's
nonce rotates alone. On a fresh database of each kind, migrated to 0006 first.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import JSON, Integer, String, Uuid, column, insert, table

from rooms.tokens import LinkKind, LinkSigner, new_nonce
from scheduler.db import Database, UTCDateTime
from scheduler.migrate import migrate
from scheduler.models import Booking, Candidate, Organisation
from scheduler.room_wiring import ticket_for
from tests.conftest import PG_ADMIN_URL, SECRET, _pg_admin

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def fresh_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
        yield db
        await db.dispose()
        return
    name = f"viva_mig_{uuid.uuid4().hex[:12]}"
    try:
        await _pg_admin(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # same rule as tests/conftest.py's postgres_url
        from tests.conftest import REQUIRE_POSTGRES

        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL is required but: {exc}")
        pytest.skip(f"no PostgreSQL at {PG_ADMIN_URL}: {exc}")
    db = Database(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield db
    finally:
        await db.dispose()
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# `bookings` as revision 0006 left it: one `room_nonce` for both links.
OLD_BOOKINGS = table(
    "bookings",
    *(column(name, Uuid()) for name in ("id", "organisation_id", "candidate_id", "evaluator_id")),
    *(column(name, UTCDateTime()) for name in ("start_at", "end_at", "block_end")),
    *(column(name, UTCDateTime()) for name in ("created_at", "updated_at")),
    column("status", String()),
    column("sequence", Integer()),
    column("room_nonce", String()),
)


# The evaluators table as revision 0006 had it: the model's later columns with a default
# (feed_nonce, 0014) would otherwise be written into a table that has not got them yet.
OLD_EVALUATORS = table(
    "evaluators",
    column("id", Uuid()),
    column("organisation_id", Uuid()),
    column("name", String()),
    column("email", String()),
    column("timezone", String()),
    column("languages", JSON()),
    column("locale", String()),
    column("availability", JSON()),
    column("created_at", UTCDateTime()),
)


async def _old_booking(db: Database, nonce: str) -> uuid.UUID:
    org, ev, cand, booking = (uuid.uuid4() for _ in range(4))
    async with db.engine.begin() as conn:
        await conn.execute(
            insert(Organisation.__table__).values(
                id=org, name="CCI", contact_email="oral@cci.example", created_at=NOW
            )
        )
        await conn.execute(
            insert(OLD_EVALUATORS).values(
                id=ev,
                organisation_id=org,
                name="Eva",
                email="eva@cci.test",
                timezone="Europe/Paris",
                languages=["en"],
                locale="fr",
                availability={},
                created_at=NOW,
            )
        )
        await conn.execute(
            insert(Candidate.__table__).values(
                id=cand,
                organisation_id=org,
                name="Cam",
                email="cam@x.test",
                language="en",
                locale="en",
                timezone="Europe/Paris",
                link_nonce=new_nonce(),
                created_at=NOW,
            )
        )
        await conn.execute(
            insert(OLD_BOOKINGS).values(
                id=booking,
                organisation_id=org,
                candidate_id=cand,
                evaluator_id=ev,
                start_at=NOW,
                end_at=NOW,
                block_end=NOW,
                created_at=NOW,
                updated_at=NOW,
                status="confirmed",
                sequence=0,
                room_nonce=nonce,
            )
        )
    return booking


async def test_existing_links_keep_working_and_each_role_gets_its_own_nonce(
    fresh_db: Database,
) -> None:
    await migrate(fresh_db, "0006")
    nonce = new_nonce()
    booking_id = await _old_booking(fresh_db, nonce)
    signer = LinkSigner(SECRET.encode())
    mailed = {
        "candidate": signer.make(LinkKind.ROOM_CANDIDATE, booking_id, nonce),
        "evaluator": signer.make(LinkKind.ROOM_EVALUATOR, booking_id, nonce),
    }

    await migrate(fresh_db)

    async with fresh_db.read() as session:
        row = await session.get(Booking, booking_id)
        assert row is not None
        assert (row.candidate_room_nonce, row.evaluator_room_nonce) == (nonce, nonce)
        for role, token in mailed.items():
            ticket = await ticket_for(session, signer, token)
            assert ticket is not None and ticket.role == role
    # From now on the evaluator's nonce turns alone: the candidate's mailed link still works.
    async with fresh_db.write() as session:
        row = await session.get(Booking, booking_id)
        assert row is not None
        row.evaluator_room_nonce = new_nonce()
    async with fresh_db.read() as session:
        assert await ticket_for(session, signer, mailed["evaluator"]) is None
        assert await ticket_for(session, signer, mailed["candidate"]) is not None
