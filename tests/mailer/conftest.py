"""Fixtures for the mailer tests: a real SMTP server, a database, a movable clock, templates.

The database URL comes from the single `mail_db_url` fixture so that the integrator can
parametrize it (SQLite here, PostgreSQL in CI) without touching the tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import jinja2
import pytest
from babel.support import Translations
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from mailer.settings import SmtpSettings
from tests.mailer.mailer_support import (
    TEMPLATES,
    MovableClock,
    SmtpServer,
    create_schema,
    load_translations,
)


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(datetime(2026, 11, 2, 8, 0, tzinfo=UTC))


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_settings(smtp_server: SmtpServer) -> SmtpSettings:
    return SmtpSettings(
        host="127.0.0.1",
        port=smtp_server.port,
        security="none",
        from_address="viva@viva.example.test",
        timeout=5,
        max_attempts=5,
        backoff_base_seconds=30,
        backoff_max_seconds=600,
        batch_size=10,
        lease_seconds=300,
        poll_interval_seconds=60,
    )


# --- database ----------------------------------------------------------------------------------


@pytest.fixture
def mail_db_url(db_url: str) -> str:
    """The shared migrated database: SQLite and, where available, PostgreSQL."""
    return db_url


@pytest.fixture
async def mail_engine(mail_db_url: str) -> AsyncIterator[AsyncEngine]:
    await create_schema(mail_db_url)
    engine = create_async_engine(mail_db_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def mail_sessions(mail_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(mail_engine, expire_on_commit=False)


# --- templates and translations -------------------------------------------------------------


@pytest.fixture
def mail_env() -> jinja2.Environment:
    """Configured like the app's environment (scheduler.i18n.create_env)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html", "xml"], default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
    )
    env.policies["ext.i18n.trimmed"] = True
    env.newstyle_gettext = True  # type: ignore[attr-defined]
    return env


@pytest.fixture(scope="session")
def fr() -> Translations:
    return load_translations()
