"""The organisation REST API under /api/v1 (JSON, `Authorization: Bearer <api key>`).

Each endpoint is declared once, with the models that validate it; routes and the OpenAPI
document are both generated from that declaration. Handlers are thin: parse, call, render.
Every query is scoped to the caller's organisation, so another organisation's ids are 404.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mailer.outbox import StoredMessage, booking_messages, requeue
from rooms.models import Recording, forget_recording, recordings, room_report
from scheduler import history, keys
from scheduler.availability import Availability, AvailabilityError
from scheduler.bookings import active_booking
from scheduler.calendars import load_calendars
from scheduler.errors import (
    Conflict,
    FieldError,
    NotFound,
    Unauthorized,
    ValidationFailed,
    VivaError,
)
from scheduler.history import Actor
from scheduler.models import (
    ACTIVE_STATUSES,
    ApiKey,
    Booking,
    Candidate,
    Evaluator,
    Organisation,
)
from scheduler.orgs import add_key, authenticate, list_keys, revoke_key
from scheduler.people import NewCandidate, NewEvaluator, examined_languages
from scheduler.people import create_candidate as create_candidate_row
from scheduler.people import create_evaluator as create_evaluator_row
from scheduler.slots import find_slots
from scheduler.web import throttle
from scheduler.web.problems import field_errors
from scheduler.web.schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyList,
    ApiKeyOut,
    ApiWarning,
    AvailabilityDoc,
    BookingList,
    BookingOut,
    BookingSummary,
    CandidateIn,
    CandidateLinks,
    CandidateList,
    CandidateOut,
    CandidatesQuery,
    EvaluatorIn,
    EvaluatorList,
    EvaluatorOut,
    EvaluatorPatch,
    EventOut,
    ForceMajeureIn,
    HistoryOut,
    MessageOut,
    OrganisationOut,
    OrganisationPatch,
    RangeQuery,
    RoomLinks,
    RoomReport,
    SlotOut,
    SlotsOut,
    SlotsQuery,
)

PREFIX = "/api/v1"
MAX_RANGE_DAYS = 62
# No document the API takes nests deeper than a few levels; past this, a body is refused
# before the parser runs (json.loads recurses, and a deep enough body ends in a 500).
MAX_JSON_DEPTH = 32
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


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
                if ep.body is not None
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


# --- the organisation ----------------------------------------------------------------------


@endpoint("GET", "/organisation", "The caller's organisation", response=OrganisationOut)
async def get_organisation(call: Call) -> OrganisationOut:
    return OrganisationOut.model_validate(call.org)


@endpoint(
    "PATCH",
    "/organisation",
    "Change the organisation's settings (recording, contact address)",
    body=OrganisationPatch,
    response=OrganisationOut,
    write=True,
    errors=(401, 409, 422),
)
async def patch_organisation(call: Call) -> OrganisationOut:
    changes = call.body.model_dump(exclude_unset=True)
    if changes.get("recording") and not call.request.app[keys.SETTINGS].rooms.recording_allowed:
        raise Conflict("recording is disabled on this server ([rooms] recording_allowed)")
    for name, value in changes.items():
        setattr(call.org, name, value)
    await call.session.flush()
    return OrganisationOut.model_validate(call.org)


# --- the organisation's API keys -----------------------------------------------------------


@endpoint(
    "POST",
    "/organisation/keys",
    "Create an API key (the key is in this response only; keep it safe)",
    body=ApiKeyIn,
    response=ApiKeyCreated,
    status=201,
    write=True,
    errors=(401, 422),
)
async def create_key(call: Call) -> ApiKeyCreated:
    now = call.request.app[keys.CLOCK].now()
    row, key = await add_key(call.session, call.org.id, name=call.body.name, now=now)
    return ApiKeyCreated(**ApiKeyOut.model_validate(row).model_dump(), key=key)


@endpoint(
    "GET",
    "/organisation/keys",
    "List the organisation's API keys (never the keys themselves)",
    response=ApiKeyList,
    errors=(401,),
)
async def get_keys(call: Call) -> ApiKeyList:
    rows = await list_keys(call.session, call.org.id)
    return ApiKeyList(keys=[ApiKeyOut.model_validate(k) for k in rows])


@endpoint(
    "DELETE",
    "/organisation/keys/{id}",
    "Revoke an API key at once (a key cannot revoke itself while it is the last active one)",
    status=204,
    write=True,
    errors=(401, 404, 409),
)
async def delete_key(call: Call) -> None:
    now = call.request.app[keys.CLOCK].now()
    await revoke_key(call.session, call.org.id, call.path_id(), now=now, acting_key_id=call.key_id)


# --- evaluators ----------------------------------------------------------------------------


async def _evaluator(call: Call) -> Evaluator:
    ev = await call.session.get(Evaluator, call.path_id())
    if ev is None or ev.organisation_id != call.org.id or ev.deleted_at is not None:
        raise NotFound("no such evaluator")
    return ev


@endpoint(
    "POST",
    "/evaluators",
    "Add an evaluator",
    body=EvaluatorIn,
    response=EvaluatorOut,
    status=201,
    write=True,
)
async def create_evaluator(call: Call) -> EvaluatorOut:
    now = call.request.app[keys.CLOCK].now()
    ev = await create_evaluator_row(
        call.session, call.org.id, NewEvaluator(**call.body.model_dump()), now=now
    )
    return EvaluatorOut.model_validate(ev)


@endpoint("GET", "/evaluators", "List evaluators", response=EvaluatorList)
async def list_evaluators(call: Call) -> EvaluatorList:
    rows = await call.session.scalars(
        select(Evaluator)
        .where(Evaluator.organisation_id == call.org.id, Evaluator.deleted_at.is_(None))
        .order_by(Evaluator.name, Evaluator.id)
    )
    return EvaluatorList(evaluators=[EvaluatorOut.model_validate(e) for e in rows])


@endpoint("GET", "/evaluators/{id}", "Get an evaluator", response=EvaluatorOut)
async def get_evaluator(call: Call) -> EvaluatorOut:
    return EvaluatorOut.model_validate(await _evaluator(call))


@endpoint(
    "PATCH",
    "/evaluators/{id}",
    "Change an evaluator",
    body=EvaluatorPatch,
    response=EvaluatorOut,
    write=True,
)
async def patch_evaluator(call: Call) -> EvaluatorOut:
    ev = await _evaluator(call)
    for name, value in call.body.model_dump(exclude_unset=True).items():
        setattr(ev, name, value)
    await call.session.flush()
    return EvaluatorOut.model_validate(ev)


@endpoint(
    "DELETE",
    "/evaluators/{id}",
    "Remove an evaluator (refused while they have interviews ahead)",
    status=204,
    write=True,
    errors=(401, 404, 409),
)
async def delete_evaluator(call: Call) -> None:
    ev = await _evaluator(call)
    now = call.request.app[keys.CLOCK].now()
    ahead = await call.session.scalar(
        select(Booking.id)
        .where(
            Booking.evaluator_id == ev.id,
            Booking.status.in_(ACTIVE_STATUSES),
            Booking.end_at > now,
        )
        .limit(1)
    )
    if ahead is not None:
        raise Conflict("this evaluator has interviews ahead; move or cancel them first")
    ev.deleted_at = now
    return None


@endpoint(
    "PUT",
    "/evaluators/{id}/availability",
    "Replace an evaluator's availability",
    body=AvailabilityDoc,
    response=AvailabilityDoc,
    write=True,
)
async def put_availability(call: Call) -> AvailabilityDoc:
    ev = await _evaluator(call)
    try:
        parsed = Availability.from_document(call.body.model_dump(mode="json"))
    except AvailabilityError as exc:
        raise ValidationFailed([FieldError(exc.field, exc.message)]) from exc
    ev.availability = parsed.to_document()
    return AvailabilityDoc.model_validate(ev.availability)


@endpoint(
    "GET",
    "/evaluators/{id}/availability",
    "Get an evaluator's availability",
    response=AvailabilityDoc,
)
async def get_availability(call: Call) -> AvailabilityDoc:
    return AvailabilityDoc.model_validate((await _evaluator(call)).availability)


# --- candidates ----------------------------------------------------------------------------


def _warnings(cand: Candidate, examined: set[str]) -> list[ApiWarning]:
    if cand.language in examined:
        return []
    return [
        ApiWarning(
            field="language",
            code="no_evaluator_for_language",
            message=f"no evaluator examines {cand.language!r}: the candidate sees no slot "
            "until an evaluator for this language is added",
        )
    ]


async def candidate_out(
    call: Call, cand: Candidate, examined: set[str] | None = None
) -> CandidateOut:
    links = call.request.app[keys.LINKS]
    booking = await active_booking(call.session, cand.id)
    if examined is None:
        examined = await examined_languages(call.session, call.org.id)
    return CandidateOut(
        warnings=_warnings(cand, examined),
        id=cand.id,
        name=cand.name,
        email=cand.email,
        language=cand.language,
        locale=cand.locale,
        timezone=cand.timezone,
        book_by=cand.book_by,
        link=links.candidate_url(cand),
        created_at=cand.created_at,
        booking=BookingSummary(
            id=booking.id,
            evaluator_id=booking.evaluator_id,
            start=booking.start_at,
            end=booking.end_at,
            status=booking.status,
        )
        if booking
        else None,
    )


@endpoint(
    "POST",
    "/candidates",
    "Invite a candidate (returns their personal link)",
    body=CandidateIn,
    response=CandidateOut,
    status=201,
    write=True,
)
async def create_candidate(call: Call) -> CandidateOut:
    now = call.request.app[keys.CLOCK].now()
    cand = await create_candidate_row(
        call.session, call.org.id, NewCandidate(**call.body.model_dump()), now=now
    )
    return await candidate_out(call, cand)


@endpoint(
    "GET",
    "/candidates",
    "List candidates (`?unservable=true`: those no evaluator can examine yet)",
    query=CandidatesQuery,
    response=CandidateList,
)
async def list_candidates(call: Call) -> CandidateList:
    q: CandidatesQuery = call.query
    examined = await examined_languages(call.session, call.org.id)
    stmt = select(Candidate).where(Candidate.organisation_id == call.org.id)
    if q.unservable is True:
        stmt = stmt.where(Candidate.language.not_in(examined))
    elif q.unservable is False:
        stmt = stmt.where(Candidate.language.in_(examined))
    rows = await call.session.scalars(stmt.order_by(Candidate.created_at, Candidate.id))
    return CandidateList(candidates=[await candidate_out(call, c, examined) for c in rows])


@endpoint("GET", "/candidates/{id}", "Get a candidate", response=CandidateOut)
async def get_candidate(call: Call) -> CandidateOut:
    cand = await call.session.get(Candidate, call.path_id())
    if cand is None or cand.organisation_id != call.org.id:
        raise NotFound("no such candidate")
    return await candidate_out(call, cand)


@endpoint(
    "POST",
    "/candidates/{id}/link",
    "Re-issue a candidate's links: the old personal link and room link stop working, and "
    "the candidate is mailed the new ones",
    response=CandidateLinks,
    errors=(401, 404),
)
async def reissue_candidate_link(call: Call) -> CandidateLinks:
    # Its own write transaction (the mail goes in with the new nonces); the service then
    # closes whatever the old room link holds open, once that has committed.
    app = call.request.app
    candidate, booking = await app[keys.BOOKINGS].reissue_links(
        organisation_id=call.org.id, candidate_id=call.path_id()
    )
    links = app[keys.LINKS]
    return CandidateLinks(
        link=links.candidate_url(candidate),
        room=links.room_url(booking, "candidate") if booking is not None else None,
    )


# --- slots and bookings ------------------------------------------------------------------


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


@endpoint(
    "GET",
    "/slots",
    "Green slots for a language (any qualified evaluator free)",
    query=SlotsQuery,
    response=SlotsOut,
)
async def org_slots(call: Call) -> SlotsOut:
    q: SlotsQuery = call.query
    tz = ZoneInfo(q.timezone)
    lo, hi = day_range(q.from_, q.to, tz)
    app = call.request.app
    calendars = await load_calendars(call.session, call.org.id, q.language, lo, hi)
    slots = find_slots(calendars, app[keys.POLICY], app[keys.CLOCK].now(), lo, hi)
    return SlotsOut(
        timezone=q.timezone,
        slots=[SlotOut(start=s.start.astimezone(tz), end=s.end.astimezone(tz)) for s in slots],
    )


def booking_out(call: Call, b: Booking, *, detail: bool = False) -> BookingOut:
    links = call.request.app[keys.LINKS]
    rooms = None
    if detail and b.status in ACTIVE_STATUSES:
        rooms = RoomLinks(
            candidate=links.room_url(b, "candidate"), evaluator=links.room_url(b, "evaluator")
        )
    return BookingOut(
        id=b.id,
        candidate_id=b.candidate_id,
        evaluator_id=b.evaluator_id,
        start=b.start_at,
        end=b.end_at,
        status=b.status,
        sequence=b.sequence,
        created_at=b.created_at,
        updated_at=b.updated_at,
        rooms=rooms,
    )


@endpoint("GET", "/bookings", "List bookings", query=RangeQuery, response=BookingList)
async def list_bookings(call: Call) -> BookingList:
    q: RangeQuery = call.query
    stmt = select(Booking).where(Booking.organisation_id == call.org.id)
    if q.from_ is not None:
        stmt = stmt.where(Booking.start_at >= datetime.combine(q.from_, time(0), UTC))
    if q.to is not None:
        stmt = stmt.where(
            Booking.start_at < datetime.combine(q.to + timedelta(days=1), time(0), UTC)
        )
    if q.evaluator_id is not None:
        stmt = stmt.where(Booking.evaluator_id == q.evaluator_id)
    rows = await call.session.scalars(stmt.order_by(Booking.start_at, Booking.id).limit(5000))
    return BookingList(bookings=[booking_out(call, b) for b in rows])


@endpoint(
    "GET",
    "/bookings/{id}",
    "Get a booking, with its room links, its messages and its room report",
    response=BookingOut,
)
async def get_booking(call: Call) -> BookingOut:
    b = await call.session.get(Booking, call.path_id())
    if b is None or b.organisation_id != call.org.id:
        raise NotFound("no such booking")
    out = booking_out(call, b, detail=True)
    out.messages = [message_out(m) for m in await booking_messages(call.session, b.id)]
    out.room = RoomReport.model_validate(await room_report(call.session, b.id))
    for recording in out.room.recordings:
        recording.download = f"{PREFIX}/bookings/{b.id}/recordings/{recording.id}"
    return out


def message_out(m: StoredMessage) -> MessageOut:
    return MessageOut(
        id=m.id,
        kind=m.kind,
        recipient=m.recipient,
        subject=m.subject,
        message_id=m.message_id,
        status=m.status,  # type: ignore[arg-type]
        attempts=m.attempts,
        last_error=m.last_error,
        next_attempt_at=m.next_attempt_at if m.status == "pending" else None,
        created_at=m.created_at,
        sent_at=m.sent_at,
    )


@endpoint(
    "POST",
    "/bookings/{id}/messages/{message_id}/resend",
    "Send a booking's message again: one that failed for good (an SMTP outage longer than "
    "the retries) or was sent; queued at once with a fresh attempt budget",
    response=MessageOut,
    status=202,
    errors=(401, 404, 409),
)
async def resend_message(call: Call) -> MessageOut:
    # Its own write transaction (the call's session reads), so the worker is woken after
    # the commit.
    app = call.request.app
    booking_id, message_id = call.path_id(), call.path_id("message_id")
    now = app[keys.CLOCK].now()
    async with app[keys.DB].write() as session:
        b = await session.get(Booking, booking_id)
        if b is None or b.organisation_id != call.org.id:
            raise NotFound("no such booking")
        stored, queued = await requeue(session, message_id, booking_id=b.id, now=now)
        if stored is None:
            raise NotFound("no such message")
        if not queued:
            raise Conflict(f"this message is already {stored.status}; wait for its outcome")
        await history.record(
            session,
            b,
            actor=Actor("organisation", call.key_name),
            action="message_resent",
            now=now,
            reason=f"{stored.kind} to {stored.recipient}",
        )
    app[keys.MAIL].wake()
    return message_out(stored)


@endpoint(
    "GET",
    "/bookings/{id}/recordings/{recording_id}",
    "Download a recording of the booking's room (Matroska: H.264 video, AAC sound)",
    media_type="video/x-matroska",
)
async def download_recording(call: Call) -> web.StreamResponse:
    booking, _, path = await _recording(call)
    if not path.is_file():
        raise NotFound("this recording's file is gone")
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "video/x-matroska",
            "Content-Disposition": f'attachment; filename="{booking.id}-{path.name}"',
            "Cache-Control": "no-store",
        },
    )


@endpoint(
    "DELETE",
    "/bookings/{id}/recordings/{recording_id}",
    "Delete a recording: its file, then its entry (refused while it is being recorded)",
    status=204,
    write=True,
    errors=(401, 404, 409),
)
async def delete_recording(call: Call) -> None:
    booking, recording, path = await _recording(call)
    app = call.request.app
    # Unfinished and its room still open: another process may be writing it (`/r/` need
    # not be served by this one). Unfinished after the room closed: a crash cut it short.
    closes_at = booking.end_at + timedelta(minutes=app[keys.SETTINGS].rooms.close_after_minutes)
    unfinished = recording.ended_at is None and app[keys.CLOCK].now() < closes_at
    if unfinished or app[keys.ROOMS].recording_in_progress(recording.id):
        raise Conflict("this recording is in progress; delete it once the interview has ended")
    # The file goes first: should the transaction fail, the entry remains and says the
    # file is gone, and deleting again finishes the job; never a file left unlisted.
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # the booking's folder, once empty
    await forget_recording(call.session, recording.id)


async def _recording(call: Call) -> tuple[Booking, Recording, Path]:
    """The booking, the recording and its file's path (which may be gone)."""
    b = await call.session.get(Booking, call.path_id())
    if b is None or b.organisation_id != call.org.id:
        raise NotFound("no such booking")
    recording_id = call.path_id("recording_id")
    found = next((r for r in await recordings(call.session, b.id) if r.id == recording_id), None)
    folder = call.request.app[keys.SETTINGS].recordings_path.resolve()
    path = (folder / found.file).resolve() if found is not None else None
    if found is None or path is None or not path.is_relative_to(folder):
        raise NotFound("no such recording")
    return b, found, path


@endpoint(
    "POST",
    "/bookings/{id}/force-majeure",
    "Move or cancel a booking as force majeure (allowed inside the lock, until it ends)",
    body=ForceMajeureIn,
    response=BookingOut,
    errors=(401, 404, 409, 422),
)
async def force_majeure_booking(call: Call) -> BookingOut:
    # Its own write transaction (row locks, effects), not the read session of the call.
    app = call.request.app
    data: ForceMajeureIn = call.body
    booking = await app[keys.BOOKINGS].force_majeure(
        organisation_id=call.org.id,
        booking_id=call.path_id(),
        action=data.action,
        reason=data.reason,
        actor=Actor("organisation", call.key_name),
        start=data.start.astimezone(UTC) if data.start else None,
        evaluator_id=data.evaluator_id,
    )
    return booking_out(call, booking, detail=True)


@endpoint(
    "GET",
    "/bookings/{id}/history",
    "Every change to a booking: who, when, what, why",
    response=HistoryOut,
)
async def booking_history(call: Call) -> HistoryOut:
    b = await call.session.get(Booking, call.path_id())
    if b is None or b.organisation_id != call.org.id:
        raise NotFound("no such booking")
    return HistoryOut(
        events=[EventOut.model_validate(e) for e in await history.events(call.session, b.id)]
    )
