"""One error shape for the API (RFC 9457 problem+json), produced here and nowhere else."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from scheduler.errors import Busy, FieldError, ValidationFailed, VivaError

log = logging.getLogger("viva.http")

PROBLEM_TYPE = "application/problem+json"
_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Invalid request",
    500: "Internal server error",
    503: "Service busy",
}


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    body.update(extra)
    return web.Response(
        status=status,
        text=json.dumps(body, default=str),
        content_type=PROBLEM_TYPE,
        headers=headers,
    )


def field_errors(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    """pydantic's errors, named the way the API documents its fields."""
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"] if p not in ("body",))
        out.append(FieldError(prefix + loc if loc else prefix.rstrip(".") or "body", err["msg"]))
    return out


def from_error(exc: VivaError) -> web.Response:
    errors = exc.errors if isinstance(exc, ValidationFailed) else None
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if isinstance(exc, Busy):
        headers = {"Retry-After": str(exc.retry_after)}
    return problem(
        exc.status, exc.detail, title=exc.title, errors=errors, headers=headers, **exc.extra
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every failure under the JSON API to problem+json; the server keeps serving."""
    if not is_json_path(request.path):
        return await handler(request)
    try:
        return await handler(request)
    except VivaError as exc:
        return from_error(exc)
    except ValidationError as exc:
        return from_error(ValidationFailed(field_errors(exc)))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem(exc.status, exc.reason or _TITLES.get(exc.status, "Error"))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "The server failed to answer this request; it has been logged.")


def is_json_path(path: str) -> bool:
    if path.startswith("/api/"):
        return True
    # The candidate JSON endpoints live beside the candidate pages, and the evaluator's
    # assessment beside the room page.
    if path.startswith("/r/"):
        return path.endswith("/assessment") or path.endswith("/assessment/submit")
    return path.startswith("/c/") and (path.endswith("/slots") or path.endswith("/booking"))
