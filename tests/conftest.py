"""Shared fixtures: both databases, the app, and factories that go through the real API.

Every test that asks for `db_url` runs twice: on SQLite (a fresh copy of a migrated file per
test) and on PostgreSQL (one database per test session, migrated once, emptied per test).
Without a reachable PostgreSQL the second run skips with the reason; CI sets
VIVA_REQUIRE_POSTGRES=1 and then it fails instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from scheduler import keys
from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.config import Settings, load_settings
from scheduler.db import Database
from scheduler.migrate import migrate

PG_ADMIN_URL = os.environ.get(
    "VIVA_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("VIVA_REQUIRE_POSTGRES") == "1"
SECRET = "test-secret-key-0123456789abcdef"
# A Monday morning; tests move the clock, never sleep.
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def _run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def _migrated(url: str) -> None:
    db = Database(url)
    try:
        await migrate(db)
    finally:
        await db.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    _run(_migrated(f"sqlite+aiosqlite:///{path}"))
    return path


async def _pg_admin(sql: str) -> None:
    import asyncpg

    dsn = PG_ADMIN_URL.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    name = f"viva_test_{uuid.uuid4().hex[:12]}"
    try:
        _run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL is required (VIVA_REQUIRE_POSTGRES=1) but: {exc}")
        pytest.skip(f"no PostgreSQL at {PG_ADMIN_URL}: {exc}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        _run(_migrated(url))
        yield url
    finally:
        _run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def all_table_names() -> list[str]:
    from scheduler.migrate import target_metadata

    return [t.name for md in target_metadata() for t in md.sorted_tables]


async def _truncate(url: str) -> None:
    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            tables = ", ".join(f'"{t}"' for t in all_table_names())
            await conn.exec_driver_sql(f"TRUNCATE {tables} CASCADE")
    finally:
        await db.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "viva.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    _run(_truncate(url))
    return url


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


def app_environ(db_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment a test app is configured from (the config loader's only input)."""
    return {
        "VIVA_DATABASE_URL": db_url,
        "VIVA_SERVER_SECRET_KEY": SECRET,
        "VIVA_SERVER_BASE_URL": "http://viva.test",
        "VIVA_SERVER_DATA_DIR": str(data_dir),
        # Mail leaves right after its wake-up, as before the linger existed: tests that
        # compare the database before and after a request need the worker done quickly
        # (tests/mailer/test_outbox.py covers the linger itself).
        "VIVA_SMTP_LINGER_SECONDS": "0",
        **extra,
    }


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return load_settings(environ=app_environ(db_url, tmp_path / "data"))


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., Awaitable[TestClient]], settings: Settings, clock: FrozenClock
) -> TestClient:
    return await aiohttp_client(create_app(settings, clock=clock))


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database.url)
    yield database
    await database.dispose()


# --- factories through the real API ------------------------------------------------------


class Org:
    """An organisation and an API client bound to its key."""

    def __init__(self, client: TestClient, org_id: uuid.UUID, api_key: str) -> None:
        self.client = client
        self.id = org_id
        self.api_key = api_key
        self.headers = {"Authorization": f"Bearer {api_key}"}

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        resp = await self.client.request(method, "/api/v1" + path, headers=self.headers, **kw)
        body = await resp.json(content_type=None) if resp.status != 204 else None
        return resp.status, body

    async def ok(self, method: str, path: str, **kw: Any) -> Any:
        status, body = await self.call(method, path, **kw)
        assert status < 300, (status, body)
        return body

    async def make_evaluator(
        self,
        *,
        name: str = "Évelyne Examinatrice",
        email: str | None = None,
        timezone: str = "Europe/Paris",
        languages: tuple[str, ...] = ("en",),
        locale: str = "fr",
        weekly: list[dict[str, str]] | None = None,
        overrides: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        ev = await self.ok(
            "POST",
            "/evaluators",
            json={
                "name": name,
                "email": email or f"ev-{uuid.uuid4().hex[:8]}@example.org",
                "timezone": timezone,
                "languages": list(languages),
                "locale": locale,
            },
        )
        if weekly is None:
            weekly = [
                {"day": d, "start": "09:00", "end": "12:00"}
                for d in ("mon", "tue", "wed", "thu", "fri")
            ]
        await self.ok(
            "PUT",
            f"/evaluators/{ev['id']}/availability",
            json={"weekly": weekly, "overrides": overrides or []},
        )
        return ev

    async def make_candidate(self, **fields: Any) -> dict[str, Any]:
        body = {
            "name": "Camille Candidate",
            "email": f"c-{uuid.uuid4().hex[:8]}@example.org",
            "language": "en",
            "locale": "en",
            "timezone": "Europe/Paris",
        }
        body.update(fields)
        return await self.ok("POST", "/candidates", json=body)


@pytest.fixture
async def make_org(
    client: TestClient, settings: Settings, clock: FrozenClock
) -> Callable[..., Awaitable[Org]]:
    from scheduler.orgs import create_organisation

    async def make(name: str = "CCI Formation", email: str = "contact@cci.example") -> Org:
        db = client.app[keys.DB]
        async with db.write() as session:
            new = await create_organisation(
                session,
                name=name,
                contact_email=email,
                contact_phone="+33 1 23 45 67 89",
                now=clock.now(),
            )
        return Org(client, new.organisation.id, new.api_key)

    return make


def token_of(link: str) -> str:
    """The token ending a personal link (`.../c/<token>`, `.../r/<token>`): tests call the
    paths a browser reaches from the link, on the test client's own host."""
    return link.rsplit("/", 1)[1]
