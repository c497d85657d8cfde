"""The primitives the three packages share: the clock's interface and the UTC column type.

`mailer` imports neither `scheduler` nor `rooms`, so it is the one package both others may
import without breaking the design card's rule (scheduler -> rooms, mailer; rooms -> mailer
only for this module; mailer -> neither; tests/test_layout.py checks it). They live here,
once, rather than copied into each package: a fix to how instants are stored must reach
every table.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import DateTime, Dialect, TypeDecorator

__all__ = ["Clock", "UTCDateTime"]


class Clock(Protocol):
    """Where code reads the current time. One implementation per use: the system clock in
    production (scheduler.clock.SystemClock), a clock tests move by hand; every package
    takes it as a parameter, never reads `datetime.now()` itself."""

    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that goes in as an aware instant and always comes back as aware UTC.

    PostgreSQL's timestamptz keeps the instant, but SQLite has no time zone type: SQLAlchemy
    stores the wall-clock digits and drops the offset, so an aware value written in another
    zone would come back naive *and* shifted. Here every value is converted to UTC before
    it is stored (and the offset stripped for SQLite, so the stored text is uniform and
    compares correctly as a string), and everything read back is marked UTC. Naive values
    are refused: in Viva a naive datetime is always a bug.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime given to a UTC column: {value!r}")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
