"""Logs without secrets: links and API keys are replaced by a short fingerprint.

A candidate link (`/c/<token>`), room link (`/r/<token>`, with any suffix) or calendar feed
(`/feeds/<token>.ics`) is a working
key to a person's booking or interview, and an API key to a whole organisation: a log that
holds them makes any log leak (a shared support ticket, a log shipper, a backup) a leak of
working links, although the database alone yields none. Every record reaching the server's
handlers is rewritten here, the access log included: its message with its arguments, its
formatted exception and stack. What replaces a secret is `…#` and the first 8 hex digits of
its SHA-256: lines about the same link can still be told apart and matched (hash the link
you hold to find its lines), but nothing in them can be turned back into the link.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web_log

# A token is base64url (a link's 46 characters); allow padding and %-escapes so a
# variant spelling or an encoded one is hidden as well.
# Every path that carries one: personal and room links, feeds, results.
_LINK = re.compile(r"(/(?:[cr]|feeds|results)/)([A-Za-z0-9_\-=%+.~]{16,})")
_BEARER = re.compile(r"(?i)(bearer\s+)([^\s'\",;]+)")
_API_KEY = re.compile(r"\bviva_[A-Za-z0-9_\-]{16,}")


def fingerprint(secret: str) -> str:
    """`…#` and 8 hex digits of SHA-256: enough to correlate, useless to an attacker."""
    return "…#" + hashlib.sha256(secret.encode()).hexdigest()[:8]


def redact(text: str) -> str:
    """`text` with every link token, bearer credential and API key replaced."""
    text = _LINK.sub(lambda m: m[1] + fingerprint(m[2]), text)
    text = _BEARER.sub(lambda m: m[1] + fingerprint(m[2]), text)
    return _API_KEY.sub(lambda m: fingerprint(m[0]), text)


class RedactSecrets(logging.Filter):
    """Rewrites a record in place before any handler formats it.

    Attached to handlers (not loggers), because a logger's filters do not see the records
    its children propagate: aiohttp.access, aiohttp.server and viva.* all reach the root
    handlers. The message is formatted once here (`getMessage`) and stored without its
    arguments; the exception and stack texts are formatted and redacted likewise, and the
    handler's formatter then uses the cached `exc_text` instead of formatting again.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_viva_redacted", False):
            return True  # a record passes through every handler, once is enough
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        # aiohttp's access log also passes the request line as an `extra` attribute.
        for name in ("first_request_line", "request_line"):
            value = getattr(record, name, None)
            if isinstance(value, str):
                setattr(record, name, redact(value))
        record._viva_redacted = True
        return True


def install(handlers: Iterable[logging.Handler] | None = None) -> None:
    """Put the filter on `handlers` (default: the root logger's), once each."""
    for handler in logging.getLogger().handlers if handlers is None else handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())


class AccessLogger(web_log.AccessLogger):
    """aiohttp's access log with the request line and path redacted at the source.

    The handlers' filter would catch them too; this keeps the access log clean even for a
    handler attached to `aiohttp.access` alone.
    """

    def _format_line(self, request: Any, response: Any, time: float) -> Any:
        return [
            (key, redact(value) if isinstance(value, str) else value)
            for key, value in super()._format_line(request, response, time)
        ]
