"""Green slots, bookings, their messages, recordings, force majeure and history."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import select

from mailer.outbox import StoredMessage, booking_messages, requeue
from rooms.models import Recording, forget_recording, recordings, room_report
from scheduler import history, keys
from scheduler.availability import from_us
from scheduler.errors import (
    Conflict,
    NotFound,
)
from scheduler.history import Actor
from scheduler.models import (
    ACTIVE_STATUSES,
    Booking,
)
from scheduler.web.api.routing import (
    PREFIX,
    Call,
    day_range,
    endpoint,
)
from scheduler.web.schemas import (
    BookingList,
    BookingOut,
    BookingPatch,
    EventOut,
    ForceMajeureIn,
    HistoryOut,
    MessageOut,
    RangeQuery,
    RoomLinks,
    RoomReport,
    SlotOut,
    SlotsOut,
    SlotsQuery,
)

# --- slots and bookings ------------------------------------------------------------------


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
    # The same shared free times as the candidates' calendars (scheduler.free_times).
    offer = await app[keys.FREE_TIMES].offer(
        call.session, call.org.id, q.language, app[keys.CLOCK].now(), lo, hi, None
    )
    interview = app[keys.POLICY].interview
    return SlotsOut(
        timezone=q.timezone,
        slots=[
            SlotOut(start=s.astimezone(tz), end=(s + interview).astimezone(tz))
            for s in map(from_us, offer.starts())
        ],
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
        recording=call.org.recording and b.recording is not False,
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
    b = await call.owned(Booking, "booking")
    out = booking_out(call, b, detail=True)
    out.messages = [message_out(m) for m in await booking_messages(call.session, b.id)]
    out.room = RoomReport.model_validate(await room_report(call.session, b.id))
    for recording in out.room.recordings:
        recording.download = f"{PREFIX}/bookings/{b.id}/recordings/{recording.id}"
    return out


@endpoint(
    "PATCH",
    "/bookings/{id}",
    "Change a booking's settings: `recording` false to leave its room unrecorded (a "
    "participant does not consent), true to follow the organisation's setting again",
    body=BookingPatch,
    response=BookingOut,
    write=True,
)
async def patch_booking(call: Call) -> BookingOut:
    b = await call.owned(Booking, "booking")
    data: BookingPatch = call.body
    if "recording" in data.model_fields_set and (b.recording is not False) != data.recording:
        now = call.request.app[keys.CLOCK].now()
        # False, or null again: null follows the organisation's setting, whatever it becomes.
        b.recording = None if data.recording else False
        b.updated_at = now
        await history.record(
            call.session,
            b,
            actor=Actor("organisation", call.key_name),
            action="recording_on" if data.recording else "recording_off",
            now=now,
        )
    return booking_out(call, b, detail=True)


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
    call.path_id()  # both ids well-formed before the transaction, as the other routes
    message_id = call.path_id("message_id")
    now = app[keys.CLOCK].now()
    async with app[keys.DB].write() as session:
        b = await call.owned(Booking, "booking", session=session)
        stored, queued = await requeue(session, message_id, booking_id=b.id, now=now)
        if stored is None:
            raise NotFound("no such message")
        if not stored.raw:
            raise Conflict("this message was erased with its candidate's data")
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
    b = await call.owned(Booking, "booking")
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
    b = await call.owned(Booking, "booking")
    return HistoryOut(
        events=[EventOut.model_validate(e) for e in await history.events(call.session, b.id)]
    )
