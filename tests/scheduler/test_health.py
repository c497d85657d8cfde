"""/healthz says the process answers; /readyz says whether the database can do the work.

Each readiness failure is produced for real: another connection holding the write lock
(SQLite's BEGIN IMMEDIATE, a PostgreSQL table lock), a read-only SQLite file, a schema
behind the code's Alembic head, and a database that cannot be reached.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from scheduler.app import create_app
from scheduler.config import load_settings
from scheduler.db import Database
from scheduler.web.health import expected_heads, readiness
from tests.conftest import app_environ


def _sqlite_path(url: str) -> str:
    return url.split("///", 1)[1]


async def test_ready_when_the_database_reads_writes_and_is_at_head(client) -> None:
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["checks"] == {"read": "ok", "write": "ok", "schema": "ok"}


@pytest.fixture
async def lock_holder(client, settings) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Takes the database's write lock from another connection, outside the app (after the
    app started: `client` comes first); released at the end of the test."""
    url = settings.database.url
    release: list[Callable[[], Awaitable[None]]] = []

    async def take() -> None:
        if url.startswith("sqlite"):
            # In a thread: the app's own writer must be able to finish while we wait.
            conn = sqlite3.connect(
                _sqlite_path(url), isolation_level=None, timeout=30, check_same_thread=False
            )
            await asyncio.to_thread(conn.execute, "BEGIN IMMEDIATE")

            async def free() -> None:
                conn.execute("ROLLBACK")
                conn.close()

        else:
            pg = await asyncpg.connect(url.replace("+asyncpg", ""))
            tx = pg.transaction()
            await tx.start()
            await pg.execute("LOCK TABLE alembic_version IN EXCLUSIVE MODE")

            async def free() -> None:
                await tx.rollback()
                await pg.close()

        release.append(free)

    yield take
    for free in release:
        await free()
    release.clear()


async def test_not_ready_while_another_connection_holds_the_write_lock(client, lock_holder) -> None:
    await lock_holder()
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 503, body
    assert resp.content_type == "application/problem+json"
    assert resp.headers["Retry-After"]
    assert body["failed"] == ["write"], body
    assert body["checks"]["read"] == "ok"
    assert "lock" in body["detail"].lower(), body
    # Liveness is not readiness: the process still answers.
    assert (await client.get("/healthz")).status == 200


async def test_not_ready_on_a_read_only_sqlite_file(
    aiohttp_client, sqlite_template, tmp_path, clock
) -> None:
    path = tmp_path / "viva.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true"
    settings = load_settings(environ=app_environ(url, tmp_path / "data"))
    client = await aiohttp_client(create_app(settings, clock=clock))
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 503, body
    assert resp.content_type == "application/problem+json"
    assert body["failed"] == ["write"] and "readonly" in body["detail"], body
    assert body["checks"]["read"] == "ok"


async def test_not_ready_when_the_schema_is_behind_head(db_url: str, tmp_path: Path) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("the schema is moved back in a copy of the SQLite file")
    path = tmp_path / "behind.db"
    shutil.copy(_sqlite_path(db_url), path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE alembic_version SET version_num = '0006'")
    conn.commit()
    conn.close()
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        checks = {c.name: c for c in await readiness(db)}
    finally:
        await db.dispose()
    assert checks["read"].ok and checks["write"].ok
    assert not checks["schema"].ok
    assert "0006" in checks["schema"].detail
    assert all(head in checks["schema"].detail for head in expected_heads())


async def test_the_probe_gives_the_connection_back_with_the_configured_busy_timeout(
    sqlite_template, tmp_path: Path
) -> None:
    """The probe shortens SQLite's busy timeout on a pooled connection for its own write; the
    next writer on that connection must wait the configured time, no longer, before its 503."""
    path = tmp_path / "viva.db"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite+aiosqlite:///{path}", busy_timeout=2.5)
    try:
        checks = await readiness(db)
        async with db.engine.connect() as conn:
            # The pool holds one connection: the probe's.
            assert db.engine.pool.checkedout() == 1 and db.engine.pool.checkedin() == 0
            timeout = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
    finally:
        await db.dispose()
    assert all(c.ok for c in checks), checks
    assert timeout == 2500


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:////nonexistent-folder/viva.db",
        "postgresql+asyncpg://postgres@127.0.0.1:1/viva",
    ],
    ids=["sqlite-missing-folder", "postgresql-closed-port"],
)
async def test_not_ready_when_the_database_cannot_be_reached(url: str) -> None:
    db = Database(url)
    try:
        checks = await readiness(db)
    finally:
        await db.dispose()
        await _aiosqlite_threads_done()
    assert [(c.name, c.ok) for c in checks] == [("read", False)]
    assert checks[0].detail


async def _aiosqlite_threads_done(within: float = 10.0) -> None:
    """On a loaded machine the probe's time bound can end before aiosqlite's thread has
    failed to open the file; that thread then reports to this test's loop after it closed,
    and the exception lands in whichever test runs next. Let it finish here."""
    for thread in threading.enumerate():
        if "_connection_worker_thread" in thread.name:
            await asyncio.to_thread(thread.join, within)
