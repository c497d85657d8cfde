"""Engine, sessions and the write discipline for both databases.

SQLite (the embedded default) allows one writer at a time; Viva makes that explicit: every
write transaction starts with `BEGIN IMMEDIATE` (so a check-then-insert can never interleave
with another process's), and writers of one process queue on an asyncio lock instead of
spinning on SQLite's busy handler. PostgreSQL runs writers concurrently; the booking code
takes row locks and the schema carries constraints there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

from mailer.primitives import UTCDateTime  # one owner for the UTC column type
from scheduler.contention import Contention
from scheduler.errors import Busy

log = logging.getLogger("viva.db")

__all__ = ["Database", "UTCDateTime", "busy_timeout_pragma", "is_sqlite"]

# Where a write session finds its Database's `after_commit` hooks (its `info`).
_AFTER_COMMIT = "viva.after_commit"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        echo: bool = False,
        busy_timeout: float = 5.0,
        contention: Contention | None = None,
    ) -> None:
        # Installs the hook that raises an organisation's calendar version in every
        # transaction changing its slots; imported here because every write opens a Database.
        import scheduler.calendar_versions  # noqa: F401

        self.url = url
        self.sqlite = is_sqlite(url)
        # Retried conflicts and turned-away writers, counted where the app can read them.
        self.contention = contention or Contention()
        self.busy_timeout = busy_timeout
        # An error's message would otherwise quote the statement's parameters (names, e-mail
        # addresses) into the log: the statement and the error are enough to debug.
        kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
        if self.sqlite:
            kwargs["connect_args"] = {"timeout": busy_timeout}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self._write_lock = asyncio.Lock()
        if self.sqlite:
            _configure_sqlite(self.engine, busy_timeout)
        self._reader = async_sessionmaker(self.engine, expire_on_commit=False)
        writer_engine = (
            self.engine.execution_options(sqlite_immediate=True) if self.sqlite else self.engine
        )
        # Run after every commit of a write session, whoever opened it (a booking, a timer,
        # a room, a worker): e.g. the webhook worker is woken once the deliveries a
        # transaction wrote are visible, without each write path having to remember it.
        self.after_commit: list[Callable[[Session], None]] = []
        self._writer = async_sessionmaker(
            writer_engine, expire_on_commit=False, info={_AFTER_COMMIT: self.after_commit}
        )

    @property
    def writer_sessions(self) -> async_sessionmaker[AsyncSession]:
        """For workers that manage their own short transactions (the mail outbox)."""
        return self._writer

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads; its transaction ends (rolled back) on exit."""
        async with self._turned_away(), self._reader() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction: committed on normal exit, rolled back on error."""
        if self.sqlite:
            async with self._write_turn(), self._turned_away():
                async with self._writer() as session, session.begin():
                    yield session
        else:
            async with self._turned_away(), self._writer() as session, session.begin():
                yield session

    @asynccontextmanager
    async def _write_turn(self) -> AsyncIterator[None]:
        """This process's turn at SQLite's one write lock, waited for at most the busy timeout:
        behind a writer that waits out its own busy timeout, every queued writer would
        otherwise wait for all those ahead in turn (the 20th, twenty busy timeouts), where
        each should be turned away (`Busy`) after one."""
        try:
            async with asyncio.timeout(self.busy_timeout):
                await self._write_lock.acquire()
        except TimeoutError:
            raise self._sqlite_busy("writers queued") from None
        try:
            yield
        finally:
            self._write_lock.release()

    def _sqlite_busy(self, what: str) -> Busy:
        """A writer turned away after SQLite's busy timeout (in this process's queue, or at
        the lock itself): counted, logged, and told to come back in about that long."""
        self.contention.busy += 1
        log.warning("SQLite %s for %.1f s: turned away", what, self.busy_timeout)
        return Busy(
            "the database is busy; please try again in a moment",
            retry_after=max(1, round(self.busy_timeout)),
        )

    @asynccontextmanager
    async def _turned_away(self) -> AsyncIterator[None]:
        """`Busy` (503 with Retry-After, nothing changed) instead of a failure when the
        database cannot take the request in time: SQLite's write lock held by another
        process past the busy timeout, or no pooled connection free within the pool's
        timeout (every connection is in use by slower transactions)."""
        try:
            yield
        except DBAPIError as exc:
            if self.sqlite and isinstance(exc, OperationalError) and _locked(exc):
                raise self._sqlite_busy("write lock busy") from exc
            if not self.sqlite and _refused_connection(exc):
                self.contention.busy += 1
                log.warning("PostgreSQL refused a connection (%s): turned away", exc.orig)
                raise Busy("the server is busy; please try again in a moment") from exc
            raise
        except PoolTimeout as exc:
            self.contention.busy += 1
            log.warning("no database connection free in time: turned away")
            raise Busy("the server is busy; please try again in a moment") from exc

    async def checkpoint(self) -> bool:
        """SQLite: copy the write-ahead log into the file and empty it, so the page images
        from before an erasure (still in the WAL) are gone from disk too; False when a
        reader kept it from completing (the next one does it). PostgreSQL: nothing to do
        here (its dead rows go with VACUUM, which autovacuum runs)."""
        if not self.sqlite:
            return True
        async with self._write_lock, self.engine.connect() as conn:
            row = (await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")).first()
        return row is not None and row[0] == 0

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        await self.engine.dispose()


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    for hook in session.info.get(_AFTER_COMMIT, ()):
        try:
            hook(session)
        except Exception:  # the commit stands; a hook's failure must not undo its caller
            log.exception("an after-commit hook failed")


def busy_timeout_pragma(seconds: float) -> str:
    """The statement that gives a SQLite connection the pool's busy timeout (`seconds`):
    set on every new connection, and again by whoever changed it for a while (/readyz)."""
    return f"PRAGMA busy_timeout={round(seconds * 1000)}"


def _configure_sqlite(engine: AsyncEngine, busy_timeout: float) -> None:
    """Take transaction control from pysqlite so BEGIN IMMEDIATE means what it says."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Deleted or overwritten content is zeroed on disk, not left in free pages: an
        # erasure or a retention run must not leave names readable in the file.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute(busy_timeout_pragma(busy_timeout))
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# PostgreSQL refusing a new connection: too many clients (server-wide, per role or per
# database), or the server still starting or shutting down. The request did nothing.
_REFUSED_CONNECTION = frozenset({"53300", "57P03"})


def _refused_connection(exc: DBAPIError) -> bool:
    state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return state in _REFUSED_CONNECTION


def _locked(exc: OperationalError) -> bool:
    """SQLite's 'database is locked' (SQLITE_BUSY), as opposed to any other failure."""
    text = str(exc.orig).lower()
    return "database is locked" in text or "database is busy" in text
