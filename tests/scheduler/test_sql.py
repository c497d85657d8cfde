"""scheduler.sql: the same rows as a plain IN, on both databases, without SQL rendered per
execution on PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from scheduler.db import Database
from scheduler.models import Organisation
from scheduler.orgs import create_organisation
from scheduler.sql import among, any_of

_BY_IDS = (
    select(Organisation.name).where(any_of(Organisation.id, "ids")).order_by(Organisation.name)
)


async def test_any_of_finds_exactly_the_listed_rows_whatever_the_list(db: Database) -> None:
    ids = []
    async with db.write() as session:
        for name in ("Ana", "Bea", "Cid"):
            new = await create_organisation(
                session, name=name, contact_email="o@x.test", now=datetime.now(UTC)
            )
            ids.append(new.organisation.id)
    async with db.read() as session:
        for chosen in ([], ids[:1], ids[1:], [*ids, uuid.uuid4()]):
            names = list(await session.scalars(_BY_IDS, {"ids": chosen}))
            pairs = zip(("Ana", "Bea", "Cid"), ids, strict=True)
            expected = sorted(name for name, i in pairs if i in chosen)
            assert names == expected


def test_postgresql_gets_one_array_parameter_and_sqlite_an_expanding_in() -> None:
    """The point of it: nothing left for SQLAlchemy to rewrite at execution on PostgreSQL."""
    statement = select(Organisation.id).where(
        any_of(Organisation.id, "ids"), among(Organisation.name, ("a", "b_2"))
    )
    on_postgresql = str(statement.compile(dialect=postgresql.asyncpg.dialect()))
    on_sqlite = str(statement.compile(dialect=sqlite.dialect()))
    assert "= ANY ($1::UUID[])" in on_postgresql and "POSTCOMPILE" not in on_postgresql
    assert "IN (__[POSTCOMPILE_ids])" in on_sqlite and "= 1" not in on_sqlite
    assert "organisations.name IN ('a', 'b_2')" in on_postgresql
    assert "organisations.name IN ('a', 'b_2')" in on_sqlite


@pytest.mark.parametrize("value", ["it's", "a b", "", "x;--"])
def test_among_takes_only_plain_constants(value: str) -> None:
    with pytest.raises(ValueError, match="plain constant"):
        among(Organisation.name, ("ok", value))
