"""Fixtures for the calendar tests: an app that may reach loopback calendar servers, and a
real CalDAV server (Radicale, tests/support/caldav.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from scheduler.config import Settings, load_settings
from tests.conftest import app_environ
from tests.support.caldav import Radicale, require_radicale


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    # Radicale and the ICS server listen on loopback, which production refuses.
    return load_settings(
        environ=app_environ(db_url, tmp_path / "data", VIVA_CALENDARS_ALLOW_PRIVATE_NETWORKS="true")
    )


@pytest.fixture
async def radicale(tmp_path: Path) -> AsyncIterator[Radicale]:
    require_radicale()
    folder = tmp_path / "radicale"
    folder.mkdir()
    server = Radicale(folder)
    await server.start()
    await server.make_calendar()
    yield server
    server.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test with a Radicale child process is slow (left out by `make test-fast`)."""
    for item in items:
        if "radicale" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
