"""Where Viva's own files are: templates, static files, translations and migrations.

Found through `importlib.resources`, never relative to the source tree, so an installed wheel
serves pages from any folder. The repository keeps `templates/` at its top level; the wheel
(and the editable install of a checkout) carry it as the package `viva_templates`
(pyproject.toml, `[tool.setuptools.package-dir]`). Migrations are package data of
`scheduler`.

jinja2's FileSystemLoader, aiohttp's static route and Alembic all want a folder on disk, so
a resource that is not one (Viva imported from a zip file) is refused with a clear error
rather than half served.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

TEMPLATES_PACKAGE = "viva_templates"


class ResourceError(RuntimeError):
    """Viva's files are not a folder on disk."""


def folder(package: str, *parts: str) -> Path:
    """The folder `parts` of `package`, as a real path (what jinja2, aiohttp, Alembic need)."""
    resource = files(package).joinpath(*parts)
    path = Path(str(resource))
    if not isinstance(resource, Path) and not path.is_dir():
        raise ResourceError(
            f"{package}/{'/'.join(parts)} is not a folder on disk ({resource!r}): "
            "install Viva unpacked (pip install), not as a zip file"
        )
    return path


def templates() -> Path:
    """templates/: pages, mail, rooms, static/ and locale/."""
    return folder(TEMPLATES_PACKAGE)


def migrations() -> Path:
    """scheduler/migrations: Alembic's env.py and versions/."""
    return folder("scheduler", "migrations")
