"""SQLite: a writer that cannot take the write lock in time is told to come back (503), at
once after the busy timeout, never a 500 after a long wait; and nothing is written. A
booking that did commit is answered as booked, whatever happens after its commit."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select, text

from scheduler import keys
from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.config import load_settings
from scheduler.models import Booking
from scheduler.orgs import create_organisation
from tests.conftest import T0, Org, app_environ, token_of

START = "2026-12-01T09:00:00+01:00"


@pytest.fixture
def sqlite_path(sqlite_template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "viva.db"
    shutil.copy(sqlite_template, path)
    return path


async def test_a_held_write_lock_answers_503_with_retry_after(
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    sqlite_path: Path,
    tmp_path: Path,
) -> None:
    settings = load_settings(
        environ=app_environ(
            f"sqlite+aiosqlite:///{sqlite_path}",
            tmp_path / "data",
            VIVA_DATABASE_BUSY_TIMEOUT_SECONDS="0.2",
        )
    )
    client = await aiohttp_client(create_app(settings, clock=FrozenClock(T0)))
    db = client.app[keys.DB]
    async with db.write() as session:
        new = await create_organisation(session, name="Org", contact_email="o@org.test", now=T0)
    org = Org(client, new.organisation.id, new.api_key)
    await org.make_evaluator()
    token = token_of((await org.make_candidate(locale="fr"))["link"])

    # Another process takes the write lock.
    other = sqlite3.connect(sqlite_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        resp = await client.post(f"/c/{token}/booking", json={"start": START})
        assert resp.status == 503
        assert resp.content_type == "application/problem+json"
        assert int(resp.headers["Retry-After"]) >= 1
        body = await resp.json(content_type=None)
        assert body["status"] == 503 and "try again" in body["detail"]

        resp = await client.post(
            f"/c/{token}/book", data={"start": START}, headers={"Accept-Language": "fr"}
        )
        assert resp.status == 503
        assert resp.content_type == "text/html"
        assert int(resp.headers["Retry-After"]) >= 1
        assert "Rien n’a été réservé ni modifié" in await resp.text()

        status, _ = await org.call(
            "POST",
            "/candidates",
            json={
                "name": "Late",
                "email": f"{uuid.uuid4().hex[:8]}@example.org",
                "language": "en",
                "locale": "en",
                "timezone": "Europe/Paris",
            },
        )
        assert status == 503  # the API too
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert client.app[keys.CONTENTION].busy == 3

    async with db.read() as session:
        assert await session.scalar(select(func.count()).select_from(Booking)) == 0
    # The lock released, the same request goes through.
    resp = await client.post(f"/c/{token}/booking", json={"start": START})
    assert resp.status == 201


@pytest.mark.postgres
async def test_postgresql_refusing_connections_turns_writers_away_with_busy(
    postgres_url: str,
) -> None:
    """'Too many clients' is PostgreSQL saying "not now": 503 with Retry-After, never a 500.

    A role with CONNECTION LIMIT 0 is refused exactly as a full server refuses everyone
    (SQLSTATE 53300); a superuser would be exempt from the limit, so the role is not one."""
    from scheduler.db import Database
    from scheduler.errors import Busy
    from tests.conftest import _pg_admin

    role = f"viva_refused_{uuid.uuid4().hex[:8]}"
    await _pg_admin(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')
    db = Database(postgres_url.replace("://postgres@", f"://{role}@"))
    try:
        with pytest.raises(Busy):
            async with db.write() as session:
                await session.execute(text("SELECT 1"))
        assert db.contention.busy == 1
    finally:
        await db.dispose()
        await _pg_admin(f'DROP ROLE "{role}"')


async def test_queued_writers_are_each_turned_away_after_one_busy_timeout(
    sqlite_path: Path,
) -> None:
    """Writers queued in this process behind one that waits on another process's lock: each
    gets its 503 within about one busy timeout, not one more busy timeout per writer ahead."""
    from scheduler.db import Database
    from scheduler.errors import Busy

    db = Database(f"sqlite+aiosqlite:///{sqlite_path}", busy_timeout=0.5)
    other = sqlite3.connect(sqlite_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def write() -> float:
        with pytest.raises(Busy):
            async with db.write() as session:
                await session.execute(text("UPDATE alembic_version SET version_num = version_num"))
        return loop.time() - start

    try:
        waited = await asyncio.gather(*(write() for _ in range(8)))
    finally:
        other.execute("ROLLBACK")
        other.close()
        await db.dispose()
    # One behind the other they would take 0.5, 1.0, ... 4.0 s. (The bound is generous: a
    # loaded machine may be slow to answer, but not by four more busy timeouts.)
    assert max(waited) < 2.5, waited
    assert db.contention.busy == 8


async def test_a_booking_whose_confirmations_meet_a_held_lock_is_still_booked_201(
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    sqlite_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The booking committed, then another process took the write lock before its
    confirmations could be written: the answer is the booking (201), and the sweep writes
    its confirmations later; never a 503 that says nothing was booked."""
    from mailer.models import outbox_messages
    from scheduler.confirmations import GRACE, sweep
    from scheduler.notify import Notifier

    settings = load_settings(
        environ=app_environ(
            f"sqlite+aiosqlite:///{sqlite_path}",
            tmp_path / "data",
            VIVA_DATABASE_BUSY_TIMEOUT_SECONDS="0.2",
        )
    )
    clock = FrozenClock(T0)
    client = await aiohttp_client(create_app(settings, clock=clock))
    db = client.app[keys.DB]
    async with db.write() as session:
        new = await create_organisation(session, name="Org", contact_email="o@org.test", now=T0)
    org = Org(client, new.organisation.id, new.api_key)
    await org.make_evaluator()
    token = token_of((await org.make_candidate())["link"])

    other = sqlite3.connect(sqlite_path, isolation_level=None)
    compose = Notifier.confirmations

    async def lock_taken_meanwhile(self: Notifier, *args: object, **kwargs: object) -> object:
        other.execute("BEGIN IMMEDIATE")  # after the booking's commit, before its messages
        return await compose(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Notifier, "confirmations", lock_taken_meanwhile)
    try:
        resp = await client.post(f"/c/{token}/booking", json={"start": START})
    finally:
        other.execute("ROLLBACK")
        other.close()
    monkeypatch.setattr(Notifier, "confirmations", compose)
    assert resp.status == 201, await resp.text()
    booking_id = uuid.UUID((await resp.json())["id"])

    async def messages() -> int:
        async with db.read() as session:
            return (
                await session.scalar(
                    select(func.count())
                    .select_from(outbox_messages)
                    .where(outbox_messages.c.booking_id == booking_id)
                )
                or 0
            )

    assert await messages() == 0
    clock.advance(GRACE + timedelta(seconds=1))
    assert await sweep(db, client.app[keys.NOTIFIER], clock.now()) == 1
    assert await messages() == 2
