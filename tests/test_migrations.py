"""The migrations build exactly the tables the models declare, on SQLite and PostgreSQL.

A model changed without its migration would work in tests that create tables from the
models and fail on a real upgrade; here the tables come from the migrations (as in
production) and Alembic's own comparison must find nothing to add, drop or alter.
"""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from scheduler.db import Database
from scheduler.migrate import target_metadata


async def test_the_migrated_schema_is_the_models_schema(db_url: str) -> None:
    db = Database(db_url)
    try:
        async with db.engine.connect() as conn:

            def differences(sync_conn: Any) -> list[Any]:
                context = MigrationContext.configure(
                    sync_conn, opts={"compare_type": True, "render_as_batch": True}
                )
                return compare_metadata(context, target_metadata())

            diff = await conn.run_sync(differences)
    finally:
        await db.dispose()
    assert diff == []
