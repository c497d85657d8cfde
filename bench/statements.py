"""What one database round trip costs the server's CPU on PostgreSQL, piece by piece: the
floor under a booking confirmation's ~22 statements over three connection checkouts.

A loop of `--repeat` of each, after a warm-up, timed with the process's CPU clock (the
driver's and SQLAlchemy's Python work; PostgreSQL's own is another process):
a pooled checkout (its ping, and the reset when the connection goes back), a checkout and one
Core SELECT, a Core SELECT on a session already open, an empty write transaction (BEGIN,
COMMIT), and the same SELECT with bare asyncpg.

Usage: .venv/bin/python bench/statements.py [--repeat 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import bindparam, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import fresh_database, machine, table
from scheduler.db import Database
from scheduler.migrate import migrate
from scheduler.models import Organisation
from scheduler.orgs import create_organisation

_NAME = select(Organisation.name).where(Organisation.id == bindparam("org"))


async def cpu_per_call(fn: Callable[[], Awaitable[object]], repeat: int) -> float:
    """Microseconds of this process's CPU per call, after a warm-up."""
    for _ in range(50):
        await fn()
    start = time.process_time()
    for _ in range(repeat):
        await fn()
    return 1e6 * (time.process_time() - start) / repeat


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = await fresh_database("postgresql", Path(tmp), name="viva_bench_statements")
    db = Database(url, pool_size=5)
    try:
        await migrate(db)
        async with db.write() as session:
            org = (
                await create_organisation(
                    session, name="Org", contact_email="o@org.test", now=datetime.now(UTC)
                )
            ).organisation
        params = {"org": org.id}

        async def checkout() -> None:
            async with db.read() as session:
                await session.connection()

        async def checkout_and_select() -> None:
            async with db.read() as session:
                await session.scalar(_NAME, params)

        async def empty_write() -> None:
            async with db.write() as session:
                await session.connection()

        rows = [
            ["pooled checkout (ping, reset)", await cpu_per_call(checkout, args.repeat)],
            ["checkout + one Core SELECT", await cpu_per_call(checkout_and_select, args.repeat)],
        ]
        async with db.read() as session:

            async def select_open() -> None:
                await session.scalar(_NAME, params)

            rows.append(["Core SELECT, session open", await cpu_per_call(select_open, args.repeat)])
        rows.append(["empty write (BEGIN, COMMIT)", await cpu_per_call(empty_write, args.repeat)])
        async with db.engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None

            async def bare() -> None:
                await raw.fetchval("SELECT name FROM organisations WHERE id = $1", org.id)

            rows.append(["bare asyncpg SELECT", await cpu_per_call(bare, args.repeat)])
    finally:
        await db.dispose()
    print(f"# statements: {args.repeat} of each, PostgreSQL, CPU of this process")
    load = os.getloadavg()[0]
    print(f"# machine: {machine()}; load average {load:.1f}; {datetime.now(UTC):%Y-%m-%d}")
    print(table(["operation", "µs CPU each"], [[name, f"{us:.0f}"] for name, us in rows]))


if __name__ == "__main__":
    asyncio.run(main())
