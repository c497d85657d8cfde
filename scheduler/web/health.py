"""Liveness (`/healthz`) and readiness (`/readyz`): whether this process should get traffic.

`/healthz` only says the process answers (a load balancer restarts a process that does not).
`/readyz` says whether it can do its work now: the database answers a read, can take a write
(a transaction that takes the write lock and changes nothing, bounded by a short timeout)
and has the schema this code expects (the latest Alembic revision). Each failing check is
named in the 503 answer, so an operator knows where to look.

Why a real write: a read-only SQLite file, another process holding SQLite's write lock, a
PostgreSQL standby or a read-only transaction default all answer reads and fail every booking.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from alembic.script import ScriptDirectory

from scheduler import keys
from scheduler.db import Database, busy_timeout_pragma
from scheduler.migrate import alembic_config
from scheduler.web.problems import problem

__all__ = ["Check", "expected_heads", "healthz", "readiness", "readyz", "setup"]

log = logging.getLogger("viva.health")

# The whole probe, and the wait for the write lock within it. A load balancer's probe
# usually gives up after a few seconds; a database that needs longer is not ready.
PROBE_TIMEOUT_SECONDS = 3.0
WRITE_LOCK_TIMEOUT_SECONDS = 1.0
# The one write the probe makes, rolled back: it needs the write lock (SQLite) or a
# writable primary (PostgreSQL), and changes nothing.
_NO_OP_WRITE = "UPDATE alembic_version SET version_num = version_num"


@dataclass(frozen=True)
class Check:
    name: str  # "read", "write" or "schema"
    ok: bool
    detail: str


@functools.cache
def expected_heads() -> frozenset[str]:
    """The Alembic head(s) of this code; read once (parsing the scripts takes a while)."""
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _sqlite_write(raw: Any, busy_timeout: float) -> None:
    """BEGIN IMMEDIATE with a short busy timeout, the no-op write, ROLLBACK.

    On the pool's own connection (the one the app writes with), through the driver, so
    SQLAlchemy's transaction handling (`scheduler.db`) is not involved; the pool's busy
    timeout (`busy_timeout`, seconds: `[database] busy_timeout_seconds`) is restored before
    the connection goes back, or its next writer would wait longer than configured before
    it is turned away with a 503.
    """
    await raw.execute(busy_timeout_pragma(WRITE_LOCK_TIMEOUT_SECONDS))
    try:
        await raw.execute("BEGIN IMMEDIATE")
        try:
            await raw.execute(_NO_OP_WRITE)
        finally:
            await raw.execute("ROLLBACK")
    finally:
        await raw.execute(busy_timeout_pragma(busy_timeout))


async def _checks(db: Database) -> list[Check]:
    checks: list[Check] = []
    async with db.engine.connect() as conn:
        if db.sqlite:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            try:
                cursor = await raw.execute("SELECT version_num FROM alembic_version")
                versions = {row[0] for row in await cursor.fetchall()}
            except Exception as exc:
                return [Check("read", False, _describe(exc))]
            checks.append(Check("read", True, "ok"))
            try:
                await _sqlite_write(raw, db.busy_timeout)
                checks.append(Check("write", True, "ok"))
            except Exception as exc:
                checks.append(Check("write", False, _describe(exc)))
        else:
            try:
                result = await conn.exec_driver_sql("SELECT version_num FROM alembic_version")
                versions = {row[0] for row in result}
                recovery = (await conn.exec_driver_sql("SELECT pg_is_in_recovery()")).scalar()
                read_only = (await conn.exec_driver_sql("SHOW transaction_read_only")).scalar()
                await conn.rollback()
            except Exception as exc:
                return [Check("read", False, _describe(exc))]
            checks.append(Check("read", True, "ok"))
            if recovery:
                checks.append(Check("write", False, "the database is a standby (in recovery)"))
            elif read_only == "on":
                checks.append(Check("write", False, "transactions are read-only"))
            else:
                try:
                    ms = int(WRITE_LOCK_TIMEOUT_SECONDS * 1000)
                    await conn.exec_driver_sql(f"SET LOCAL lock_timeout = {ms}")
                    await conn.exec_driver_sql(f"SET LOCAL statement_timeout = {2 * ms}")
                    await conn.exec_driver_sql(_NO_OP_WRITE)
                    checks.append(Check("write", True, "ok"))
                except Exception as exc:
                    checks.append(Check("write", False, _describe(exc)))
                finally:
                    await conn.rollback()
    heads = expected_heads()
    if versions == set(heads):
        checks.append(Check("schema", True, "ok"))
    else:
        found = ", ".join(sorted(versions)) or "none"
        checks.append(
            Check("schema", False, f"at {found}, this code needs {', '.join(sorted(heads))}")
        )
    return checks


async def readiness(db: Database, limit: float = PROBE_TIMEOUT_SECONDS) -> list[Check]:
    """Every check's result; a database that does not answer within `limit` s fails "read"."""
    try:
        async with asyncio.timeout(limit):
            return await _checks(db)
    except TimeoutError:
        return [Check("read", False, f"no answer within {limit:g} s")]
    except Exception as exc:  # cannot connect at all
        return [Check("read", False, _describe(exc))]


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers. It never touches the database (see `readyz`)."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks = await readiness(request.app[keys.DB])
    body = {c.name: c.detail for c in checks}
    failed = [c for c in checks if not c.ok]
    if not failed:
        return web.json_response({"status": "ok", "checks": body})
    log.warning("not ready: %s", "; ".join(f"{c.name}: {c.detail}" for c in failed))
    return problem(
        503,
        "; ".join(f"{c.name}: {c.detail}" for c in failed),
        title="Not ready",
        failed=[c.name for c in failed],
        checks=body,
        headers={"Retry-After": "5"},
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
