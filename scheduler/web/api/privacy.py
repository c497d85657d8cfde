"""A candidate's data on request: the export (access) and the erasure (scheduler.privacy)."""

from __future__ import annotations

import logging
from datetime import timedelta

from rooms.models import Recording
from scheduler import keys
from scheduler.history import Actor
from scheduler.models import Candidate
from scheduler.privacy import MessageCopy, RecordingFiles, erase_candidate, gather
from scheduler.web.api.routing import PREFIX, Call, endpoint
from scheduler.web.assessment_schemas import AssessmentMarks
from scheduler.web.schemas import (
    BookingExport,
    CandidateExport,
    CandidateProfile,
    ErasureIn,
    ErasureOut,
    EventOut,
    MessageCopyOut,
    MessagePartOut,
    RecordingOut,
    RoomReport,
)

log = logging.getLogger(__name__)


def _message(m: MessageCopy) -> MessageCopyOut:
    return MessageCopyOut(
        id=m.stored.id,
        kind=m.stored.kind,
        status=m.stored.status,  # type: ignore[arg-type]
        created_at=m.stored.created_at,
        sent_at=m.stored.sent_at,
        headers=m.headers,
        parts=[MessagePartOut.model_validate(p) for p in m.parts],
    )


def _recording(booking_id: object, r: Recording) -> RecordingOut:
    out = RecordingOut.model_validate(r)
    out.download = f"{PREFIX}/bookings/{booking_id}/recordings/{r.id}"
    return out


@endpoint(
    "GET",
    "/candidates/{id}/export",
    "Everything Viva holds about a candidate, in one JSON document (their right of access): "
    "profile, bookings and their history, the e-mails sent to them, what happened in the "
    "room, and the recordings as links",
    response=CandidateExport,
    errors=(401, 404),
)
async def export_candidate(call: Call) -> CandidateExport:
    cand = await call.owned(Candidate, "candidate")
    record = await gather(call.session, cand)
    bookings = []
    for b in record.bookings:
        room = RoomReport.model_validate(b.room)
        room.recordings = [_recording(b.booking.id, r) for r in b.room.recordings]
        bookings.append(
            BookingExport(
                id=b.booking.id,
                evaluator_id=b.booking.evaluator_id,
                start=b.booking.start_at,
                end=b.booking.end_at,
                status=b.booking.status,
                created_at=b.booking.created_at,
                updated_at=b.booking.updated_at,
                cancel_reason=b.booking.cancel_reason,
                history=[EventOut.model_validate(e) for e in b.events],
                messages=[_message(m) for m in b.messages],
                room=room,
                evaluator_notes=b.notes,
                assessment=AssessmentMarks(
                    levels=b.assessment.levels,
                    overall_level=b.assessment.overall_level,
                    comment=b.assessment.comment,
                    submitted_at=b.assessment.submitted_at,
                    updated_at=b.assessment.updated_at,
                )
                if b.assessment is not None
                else None,
            )
        )
    # Imported here: importing the results routes at the top would declare them before this
    # module's own, out of the OpenAPI document's order (scheduler.web.api).
    from scheduler.results import of_candidate
    from scheduler.web.api.results import result_out

    result = await of_candidate(call.session, cand.id)
    return CandidateExport(
        exported_at=call.request.app[keys.CLOCK].now(),
        organisation_id=call.org.id,
        profile=CandidateProfile.model_validate(cand),
        bookings=bookings,
        other_messages=[_message(m) for m in record.other_messages],
        result=await result_out(call, call.session, result) if result is not None else None,
    )


@endpoint(
    "DELETE",
    "/candidates/{id}",
    "Erase a candidate's personal data (their right to erasure): every personal field, "
    "everywhere, is removed or anonymised; their bookings stay as anonymous rows and their "
    "links stop working. Refused while they have an interview ahead or a recording is "
    "being written",
    body=ErasureIn,
    response=ErasureOut,
    errors=(401, 404, 409, 422),
)
async def erase_candidate_data(call: Call) -> ErasureOut:
    # Its own write transaction (the call's session reads), so the rooms are told of the
    # dead links only once the erasure has committed.
    app = call.request.app
    call.path_id()
    now = app[keys.CLOCK].now()
    settings = app[keys.SETTINGS]
    files = RecordingFiles(
        folder=settings.recordings_path,
        in_progress=app[keys.ROOMS].recording_in_progress,
        room_closes_after=timedelta(minutes=settings.rooms.close_after_minutes),
    )
    async with app[keys.DB].write() as session:
        cand = await call.owned(Candidate, "candidate", session=session)
        done = await erase_candidate(
            session, cand, actor=Actor("organisation", call.key_name), now=now, files=files
        )
    # Counts and ids only: the log must not keep what was just erased.
    log.info(
        "candidate %s erased: %d bookings, %d messages, %d recordings",
        cand.id,
        done.bookings,
        done.messages,
        done.recordings,
    )
    for booking_id in done.booking_ids:
        await app[keys.BOOKINGS].after_commit.links_changed(booking_id)
    return ErasureOut(
        erased_at=now,
        bookings=done.bookings,
        messages=done.messages,
        recordings=done.recordings,
    )
