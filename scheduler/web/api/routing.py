"""The API's machinery: declaring an endpoint, authenticating the caller, reading input,
the one check that an object is the caller's organisation's.

Each endpoint is declared once (`endpoint`), with the models that validate it; routes and
the OpenAPI document are both generated from that declaration (scheduler.web.openapi).
Handlers are thin: parse, call, render. Every query is scoped to the caller's organisation:
an object named in the path is fetched through `Call.owned`, so another organisation's ids
are 404 like ids that never existed (tests/scheduler/test_tenancy.py checks every route).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler import keys
from scheduler.errors import (
    FieldError,
    NotFound,
    Unauthorized,
    ValidationFailed,
    VivaError,
)
from scheduler.models import ApiKey, Booking, Candidate, Evaluator, Organisation, WebhookEndpoint
from scheduler.orgs import authenticate
from scheduler.web import throttle
from scheduler.web.problems import field_errors

PREFIX = "/api/v1"
MAX_RANGE_DAYS = 62
# No document the API takes nests deeper than a few levels; past this, a body is refused
# before the parser runs (json.loads recurses, and a deep enough body ends in a 500).
MAX_JSON_DEPTH = 32
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


Owned = TypeVar("Owned", Booking, Candidate, Evaluator, WebhookEndpoint)


@dataclass(frozen=True)
class Call:
    """What a handler receives: the caller's organisation and the parsed input."""

    request: web.Request
    org: Organisation
    key_name: str  # who is acting, for the history
    session: AsyncSession
    body: Any = None
    query: Any = None
    key_id: uuid.UUID | None = None  # the API key making the request

    def path_id(self, name: str = "id") -> uuid.UUID:
        try:
            return uuid.UUID(self.request.match_info[name])
        except ValueError as exc:
            raise NotFound(f"no such {name.removesuffix('_id') or 'object'}") from exc

    async def owned(
        self,
        model: type[Owned],
        what: str,
        *,
        name: str = "id",
        session: AsyncSession | None = None,
    ) -> Owned:
        """The `model` row the path's `name` names, if it is the caller's organisation's.

        The one ownership check of the API: another organisation's object, a removed one
        (`deleted_at`), an erased candidate (`erased_at`) and an id that never existed all
        answer the same 404, so a caller learns nothing about other organisations.
        `session`: a handler's own write transaction, when it does not use the call's.
        """
        row = await (session or self.session).get(model, self.path_id(name))
        if (
            row is None
            or row.organisation_id != self.org.id
            or getattr(row, "deleted_at", None) is not None
            or getattr(row, "erased_at", None) is not None
        ):
            raise NotFound(f"no such {what}")
        return row


Handler = Callable[[Call], Awaitable[BaseModel | web.StreamResponse | None]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    write: bool = False
    errors: tuple[int, ...] = field(default=(401, 404, 422))
    # A non-JSON response (a file): the handler returns the web response itself.
    media_type: str | None = None
    # The body may be left out (no bytes at all): the handler gets `call.body` None.
    body_optional: bool = False


ENDPOINTS: list[Endpoint] = []


def endpoint(method: str, path: str, summary: str, **kw: Any) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ENDPOINTS.append(Endpoint(method, path, fn, summary, **kw))
        return fn

    return register


# --- reading input -----------------------------------------------------------------------


async def _org_for(request: web.Request, session: AsyncSession) -> tuple[Organisation, ApiKey]:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("send the organisation's API key as `Authorization: Bearer <key>`")
    found = await authenticate(session, key.strip())
    if found is None:
        await throttle.lookup_failed()
        raise Unauthorized("unknown or revoked API key")
    return found


async def json_body(request: web.Request) -> Any:
    return decode_json(request.content_type, await request.read())


def decode_json(content_type: str, raw: bytes) -> Any:
    if content_type != "application/json":
        raise ValidationFailed(
            [FieldError("body", "send JSON with Content-Type: application/json")]
        )
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise VivaError(f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed([FieldError("body", f"not valid JSON: {exc}")]) from exc


def json_depth(raw: bytes) -> int:
    """How deep the brackets of a JSON text nest, strings set aside: one linear scan."""
    depth = deepest = 0
    for match in _JSON_BRACKET.finditer(_JSON_STRING.sub(b"", raw)):
        if match[0] in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def parse(model: type[BaseModel], data: Any, prefix: str = "") -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(field_errors(exc, prefix)) from exc


def _wrap(ep: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        db = request.app[keys.DB]
        # Read before the transaction starts, so a slow client never holds a lock.
        raw_body = await request.read() if ep.body is not None else b""
        async with db.write() if ep.write else db.read() as session:
            # Who is asking comes before what they sent: a caller without a valid key
            # learns nothing about the shape of the input.
            org, key = await _org_for(request, session)
            query = parse(ep.query, dict(request.query)) if ep.query is not None else None
            body = (
                parse(ep.body, decode_json(request.content_type, raw_body))
                if ep.body is not None and (raw_body or not ep.body_optional)
                else None
            )
            result = await ep.handler(
                Call(request, org, key.name, session, body, query, key_id=key.id)
            )
        if result is None:
            return web.Response(status=204)
        if isinstance(result, web.StreamResponse):
            return result
        return web.json_response(result.model_dump(mode="json", by_alias=True), status=ep.status)

    return handle


def setup(app: web.Application) -> None:
    for ep in ENDPOINTS:
        app.router.add_route(ep.method, PREFIX + ep.path, _wrap(ep))


def day_range(
    start: date, end: date, tz: ZoneInfo, field_prefix: str = ""
) -> tuple[datetime, datetime]:
    """[local midnight of start, local midnight after end) as UTC instants."""
    if end < start:
        raise ValidationFailed([FieldError(field_prefix + "to", "must not be before `from`")])
    if (end - start).days >= MAX_RANGE_DAYS:
        raise ValidationFailed(
            [FieldError(field_prefix + "to", f"at most {MAX_RANGE_DAYS} days after `from`")]
        )
    lo = datetime.combine(start, time(0), tz).astimezone(UTC)
    hi = datetime.combine(end + timedelta(days=1), time(0), tz).astimezone(UTC)
    return lo, hi
