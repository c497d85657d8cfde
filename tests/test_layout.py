"""The design card's boundaries, checked: rooms and mailer never import scheduler; aiortc
stays inside rooms."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _package_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_rooms_and_mailer_never_import_scheduler() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("rooms", "mailer")
        for path in _package_files(package)
        if "scheduler" in _imports(path)
    ]
    assert offenders == []


def test_aiortc_is_imported_only_inside_rooms() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("scheduler", "mailer")
        for path in _package_files(package)
        if _imports(path) & {"aiortc", "av"}
    ]
    assert offenders == []
    assert _package_files("rooms"), "the rooms package exists"
