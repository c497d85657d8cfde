"""Schema migrations (Alembic), run by `viva migrate` and at the start of `viva serve`."""

from __future__ import annotations

from dataclasses import dataclass

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
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


@dataclass(frozen=True)
class Migration:
    """The schema revision before and after `migrate`, so the CLI can say what it did."""

    before: str | None  # None: the database had no schema yet
    after: str | None

    def describe(self) -> str:
        if self.before is None:
            return f"database created at revision {self.after}"
        if self.before == self.after:
            return f"database is up to date (revision {self.after})"
        return f"database upgraded from revision {self.before} to {self.after}"


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Connection, revision: str) -> Migration:
    before = _current(connection)
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)
    return Migration(before, _current(connection))


async def migrate(db: Database, revision: str = "head") -> Migration:
    async with db.engine.begin() as conn:
        return await conn.run_sync(_upgrade, revision)
