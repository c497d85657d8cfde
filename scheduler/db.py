"""Engine, sessions and the write discipline for both databases.

SQLite (the embedded default) allows one writer at a time; Viva makes that explicit: every
write transaction starts with `BEGIN IMMEDIATE` (so a check-then-insert can never interleave
with another process's), and writers of one process queue on an asyncio lock instead of
spinning on SQLite's busy handler. PostgreSQL runs writers concurrently; the booking code
takes row locks and the schema carries constraints there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from mailer.models import UTCDateTime  # one owner for the UTC column type

__all__ = ["Database", "UTCDateTime", "is_sqlite"]


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


class Database:
    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = url
        self.sqlite = is_sqlite(url)
        kwargs: dict[str, Any] = {"echo": echo}
        if self.sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self._write_lock = asyncio.Lock()
        if self.sqlite:
            _configure_sqlite(self.engine)
        self._reader = async_sessionmaker(self.engine, expire_on_commit=False)
        writer_engine = (
            self.engine.execution_options(sqlite_immediate=True) if self.sqlite else self.engine
        )
        self._writer = async_sessionmaker(writer_engine, expire_on_commit=False)

    @property
    def writer_sessions(self) -> async_sessionmaker[AsyncSession]:
        """For workers that manage their own short transactions (the mail outbox)."""
        return self._writer

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads; its transaction ends (rolled back) on exit."""
        async with self._reader() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction: committed on normal exit, rolled back on error."""
        if self.sqlite:
            async with self._write_lock, self._writer() as session, session.begin():
                yield session
        else:
            async with self._writer() as session, session.begin():
                yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        await self.engine.dispose()


def _configure_sqlite(engine: AsyncEngine) -> None:
    """Take transaction control from pysqlite so BEGIN IMMEDIATE means what it says."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
