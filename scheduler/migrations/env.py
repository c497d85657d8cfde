"""Alembic environment: used by `viva migrate` (with a connection handed in) and by the
alembic CLI (alembic.ini at the repository root, URL from `VIVA_DATABASE_URL` or config)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from scheduler.migrate import target_metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from scheduler.config import load_settings
    from scheduler.db import Database

    async def main() -> None:
        db = Database(load_settings().database.url)
        async with db.engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
        await db.dispose()

    asyncio.run(main())


_online()
