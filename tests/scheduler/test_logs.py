"""The redaction itself (scheduler/logs.py), each layer on its own, with real handlers."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from scheduler.logs import AccessLogger, RedactSecrets, fingerprint, redact

TOKEN = "AQGSK8DTeOxOCrTyqzi5K-LR0Qe8lsZuf-k8HwvxnoCgyw"
KEY = "viva_" + "k3y" * 15


def file_logger(path: Path, name: str, *, redacting: bool) -> logging.Logger:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    if redacting:
        handler.addFilter(RedactSecrets())
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def test_every_spelling_of_a_secret_is_replaced_by_its_fingerprint() -> None:
    line = redact(
        f"GET /c/{TOKEN}/book /r/{TOKEN}=/ws /r/{TOKEN}%3D Authorization: Bearer {KEY} key={KEY}"
    )
    assert TOKEN not in line and KEY not in line
    assert f"/c/{fingerprint(TOKEN)}/book" in line
    assert f"Bearer {fingerprint(KEY)}" in line
    assert fingerprint(TOKEN) == fingerprint(TOKEN) != fingerprint(TOKEN + "x")
    assert len(fingerprint(TOKEN)) == len("…#") + 8


def test_the_filter_rewrites_messages_arguments_and_tracebacks(tmp_path: Path) -> None:
    path = tmp_path / "viva.log"
    log = file_logger(path, "test.redact.filter", redacting=True)
    try:
        raise RuntimeError(f"cannot open /r/{TOKEN}/info with Bearer {KEY}")
    except RuntimeError:
        log.exception("unhandled error on %s %s", "GET", f"/c/{TOKEN}")
    log.info("plain %s", "words")
    written = path.read_text()
    assert TOKEN not in written and KEY not in written
    assert f"unhandled error on GET /c/{fingerprint(TOKEN)}" in written
    assert f"RuntimeError: cannot open /r/{fingerprint(TOKEN)}/info" in written
    assert "plain words" in written


def test_the_access_logger_redacts_at_the_source(tmp_path: Path) -> None:
    """Even on a handler without the filter (one attached to aiohttp.access alone)."""
    path = tmp_path / "access.log"
    logger = file_logger(path, "test.redact.access", redacting=False)
    request = make_mocked_request("GET", f"/c/{TOKEN}/slots?x=1")
    AccessLogger(logger, '%a "%r" %U %s').log(request, web.Response(), 0.01)
    written = path.read_text()
    assert TOKEN not in written
    assert f"/c/{fingerprint(TOKEN)}/slots" in written


def test_every_path_that_carries_a_link_is_redacted() -> None:
    """Personal and room links, evaluators' feeds and candidates' results links: each is
    a credential wherever it appears in a request line."""
    for path in (
        f"/c/{TOKEN}/book",
        f"/r/{TOKEN}/ws",
        f"/feeds/{TOKEN}.ics",
        f"/results/{TOKEN}/certificate.pdf",
    ):
        line = redact(f'"GET {path} HTTP/1.1" 200')
        assert TOKEN not in line, path
        assert "…#" in line, path  # a fingerprint stands in its place


def test_the_shipped_nginx_access_log_hides_every_link() -> None:
    """deploy/nginx/viva.conf logs `$viva_loggable_uri`: its map must cut the token of every
    path that carries one (its PCRE pattern, applied here as Python reads it)."""
    conf = (Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "viva.conf").read_text()
    pattern, replacement = re.search(
        r'map \$request_uri \$viva_loggable_uri \{\s*"~([^"]+)" "([^"]+)";', conf
    ).groups()  # type: ignore[union-attr]
    rule = re.compile(pattern.replace("(?<", "(?P<"))
    for path in (
        f"/c/{TOKEN}/book",
        f"/r/{TOKEN}/ws",
        f"/feeds/{TOKEN}.ics",
        f"/results/{TOKEN}/statement.pdf",
    ):
        match = rule.match(path)
        assert match is not None, path
        logged = replacement.replace("$viva_prefix", match["viva_prefix"]).replace(
            "$viva_rest", match["viva_rest"]
        )
        assert TOKEN not in logged and logged.startswith(path[: path.index(TOKEN) + 6]), logged
