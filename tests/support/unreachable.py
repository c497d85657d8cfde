"""Taking a running app's database away, for real, and giving it back."""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from scheduler.db import Database
from tests.conftest import _pg_admin


@asynccontextmanager
async def unreachable(db: Database) -> AsyncIterator[None]:
    """Take the app's database away while the server runs, then give it back."""
    await db.engine.dispose()  # no pooled connection may answer for the database
    if db.sqlite:
        path = Path(db.url.split("///", 1)[1])
        aside = path.with_name(path.name + ".aside")
        os.replace(path, aside)
        os.mkdir(path)  # a directory where the file was: "unable to open database file"
        try:
            yield
        finally:
            os.rmdir(path)
            os.replace(aside, path)
            # aiosqlite leaves the connection that failed to open for the garbage collector,
            # which warns; collect it here, where that is expected, not in a later test.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                gc.collect()
    else:
        name = db.url.rsplit("/", 1)[1]
        await _pg_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await _pg_admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        try:
            yield
        finally:
            await _pg_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    await db.engine.dispose()
