"""What `viva migrate` and `viva demo` print is true: a newcomer reads it first."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from scheduler.cli import main
from scheduler.db import Database
from scheduler.migrate import migrate

HEAD = sorted(p.name[:4] for p in Path("scheduler/migrations/versions").glob("0*.py"))[-1]


@pytest.fixture
def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'viva.db'}"
    monkeypatch.setenv("VIVA_DATABASE_URL", url)
    monkeypatch.setenv("VIVA_SERVER_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("VIVA_SERVER_DEV_MODE", "true")
    monkeypatch.setenv("VIVA_SERVER_BASE_URL", "http://viva.test")
    return url


def test_migrate_says_created_then_up_to_date(
    sqlite_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out.strip() == f"database created at revision {HEAD}"
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out.strip() == f"database is up to date (revision {HEAD})"


def test_migrate_says_from_which_revision_it_upgraded(
    sqlite_env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "var").mkdir()

    async def partly() -> None:
        db = Database(sqlite_env)
        try:
            await migrate(db, "0005")
        finally:
            await db.dispose()

    asyncio.run(partly())
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out.strip() == f"database upgraded from revision 0005 to {HEAD}"


def test_demo_links_name_the_exam_language_and_the_page_language(
    sqlite_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "/c/" in line]
    assert len(lines) == 4
    # Léa takes her exam in English and reads the pages in French: both said, neither alone.
    lea = next(line for line in lines if "Léa" in line)
    assert "exam in English, pages in French" in lea
    assert not re.search(r"\[(fr|en)\]", out)
    assert "http://viva.test/dev/mail" in out and "http://viva.test/api/v1/docs" in out
    # A second run finds the same organisation and prints the same links.
    assert main(["demo", "--if-empty"]) == 0
    again = capsys.readouterr().out
    assert "(already there)" in again
    assert [line for line in again.splitlines() if "/c/" in line] == lines
