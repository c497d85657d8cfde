"""The design card's boundaries, checked: rooms and mailer never import scheduler; aiortc
stays inside rooms."""

from __future__ import annotations

import ast
import re
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


def _modules(path: Path) -> set[str]:
    """Every module `path` imports, dotted in full (`from scheduler.web import api` gives
    `scheduler.web` and `scheduler.web.api`), imports inside functions included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _domain_files() -> list[Path]:
    """scheduler's own modules outside its HTTP layer (scheduler/web/) and its migrations."""
    return [
        path
        for path in _package_files("scheduler")
        if path.relative_to(ROOT / "scheduler").parts[0] not in ("web", "migrations")
    ]


# The wiring: they assemble the app from the domain and the web layer, so they may import
# both. Nothing else outside scheduler/web/ may.
WIRING = {
    "scheduler/app.py",  # create_app: registers the web layer's routes and middlewares
    "scheduler/cli.py",  # `viva org key create` validates a key's name as the API does
    "scheduler/keys.py",  # names the web layer's Throttle as an AppKey's type (for mypy only)
}

# The modules outside scheduler/web/ that may import aiohttp, and why. Each runs in the
# aiohttp app's life (a `cleanup_ctx`, an `AppKey`) or is the wiring; none handles a
# request. A new entry needs a reason as good.
AIOHTTP_ALLOWED = {
    "scheduler/app.py": "builds the web.Application",
    "scheduler/cli.py": "`viva serve` runs it (web.run_app)",
    "scheduler/keys.py": "declares the app's shared objects as web.AppKey",
    "scheduler/logs.py": "redacts aiohttp's access log (a web_log.AccessLogger)",
    "scheduler/confirmations.py": "its sweeper is a cleanup_ctx of the app",
    "scheduler/mail_worker.py": "the mail worker is a cleanup_ctx of the app",
    "scheduler/timers/wiring.py": "the timer service is a cleanup_ctx of the app",
    "scheduler/retention_runs.py": "the retention job is a cleanup_ctx of the app",
    "scheduler/room_wiring.py": "starts the room server with the app, adds its routes",
    "scheduler/busy_fetch.py": "an HTTP client (CalDAV, ICS) reading evaluators' calendars",
    "scheduler/external_calendars.py": "its refresher is a cleanup_ctx of the app",
    "scheduler/webhooks/wiring.py": "the webhook worker is a cleanup_ctx of the app",
    "scheduler/webhooks/delivery.py": "the webhook worker posts with aiohttp's HTTP client",
    "scheduler/webhooks/targets.py": "the client's resolver that refuses private addresses",
}


def test_the_domain_never_imports_the_web_layer() -> None:
    offenders = [
        rel
        for path in _domain_files()
        if (rel := str(path.relative_to(ROOT))) not in WIRING
        and any(m == "scheduler.web" or m.startswith("scheduler.web.") for m in _modules(path))
    ]
    assert offenders == []


def test_only_the_listed_modules_outside_the_web_layer_import_aiohttp() -> None:
    importers = {
        str(path.relative_to(ROOT))
        for path in _domain_files()
        if {"aiohttp", "aiohttp_jinja2"} & _imports(path)
    }
    assert importers <= set(AIOHTTP_ALLOWED)
    # A listed module that no longer needs aiohttp leaves the list.
    assert set(AIOHTTP_ALLOWED) <= importers


SECURITY_HEADERS = (
    "Content-Security-Policy",
    "Permissions-Policy",
    "Referrer-Policy",
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "no-store",
)


def test_security_headers_are_written_in_one_place() -> None:
    """scheduler/web/security.py writes them for every answer; a handler that needs a
    policy of its own names it (`response[security.POLICY]`) rather than set headers."""
    owner = ROOT / "scheduler" / "web" / "security.py"
    offenders = [
        f"{path.relative_to(ROOT)}: {header}"
        for package in ("scheduler", "rooms")
        for path in _package_files(package)
        if path != owner
        for header in SECURITY_HEADERS
        if f'"{header}' in path.read_text()
    ]
    assert offenders == []


def test_mailer_imports_neither_rooms_nor_scheduler() -> None:
    """mailer is the lowest layer, which is what lets it hold the shared primitives."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in _package_files("mailer")
        if _imports(path) & {"rooms", "scheduler"}
    ]
    assert offenders == []


def test_rooms_take_only_the_shared_primitives_from_mailer() -> None:
    """A room has no business with messages: of mailer, rooms use only the clock's interface
    and the UTC column type (mailer/primitives.py), so there is one copy of each."""
    used = {
        module
        for path in _package_files("rooms")
        for module in _modules(path)
        if module == "mailer" or module.startswith("mailer.")
    }
    assert used <= {"mailer.primitives", "mailer.primitives.Clock", "mailer.primitives.UTCDateTime"}


# Modules allowed over the size limit, and why (docs/architecture.md repeats the reasons).
LONG_MODULES: dict[str, str] = {}
MAX_LINES = 600


def test_no_module_is_over_the_size_limit() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for package in ("scheduler", "rooms", "mailer")
        for path in _package_files(package)
        if "migrations" not in path.parts
        and (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert set(long) <= set(LONG_MODULES), long


def test_the_architecture_document_names_every_module() -> None:
    """docs/architecture.md's floor plan stays true: a new module must be placed in it, and
    a module it names must exist."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    plan = doc[doc.index("## Packages and modules") : doc.index("## The scheduler")]
    modules = {
        path.name
        for package in ("scheduler", "rooms", "mailer")
        for path in _package_files(package)
        if "migrations" not in path.parts and path.name != "__init__.py"
    }
    named = set(re.findall(r"\b([a-z_0-9]+\.py)\b", plan))
    assert modules - named == set(), "modules missing from docs/architecture.md"
    assert named - modules - {"synthetic.py", "rooms.py"} == set(), "named but absent"


def test_the_wheel_lists_every_package() -> None:
    """The wheel's packages are listed, not discovered (pyproject.toml): a new subpackage
    left out installs without it, and the installed `viva` fails on its first import."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("scheduler", "rooms", "mailer")
        for init in (ROOT / top).rglob("__init__.py")
        if "migrations" not in init.parts
    }
    assert found - listed == set(), "add them to [tool.setuptools] packages"
