"""Schema migrations (Alembic), run by `viva migrate` and at the start of `viva serve`."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from scheduler import resources
from scheduler.db import Database

MIGRATIONS = resources.migrations()


def target_metadata() -> list[MetaData]:
    """Every package's tables: the scheduler's and those of the packages it wires in."""
    from mailer.models import metadata as mailer_metadata
    from rooms.models import metadata as rooms_metadata
    from scheduler.models import metadata

    return [metadata, mailer_metadata, rooms_metadata]


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _upgrade(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


async def migrate(db: Database, revision: str = "head") -> None:
    async with db.engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)
