"""A candidate's data on request: everything Viva holds about them (access), or none of it
(erasure). GDPR articles 15 and 17, answered with Viva rather than around it.

Both read the same places, so what an export shows is what an erasure removes: the
candidate's row; their bookings and each booking's history; the messages about those
bookings and any other message to their address; the room's record (attendance, the ID
check, the outcome, the evaluator's private notes) and its recordings.

Erasure keeps each booking as an anonymous row (the organisation's statistics: when, with
which evaluator, how it ended) and the candidate's row as an anonymous placeholder the
bookings point at; it removes or overwrites every field that could name the person.
Recording files go before their rows, as with a single recording's deletion, so that no
row ever lists a file that is gone without saying so, and no file is left unlisted.

Pure of HTTP: the web layer (scheduler/web/api/privacy.py) parses, calls and renders.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailer.models import outbox_messages as outbox
from mailer.store import StoredMessage
from rooms.models import (
    RoomConsent,
    RoomRecord,
    RoomRecording,
    RoomReport,
    room_report,
)
from rooms.tokens import new_nonce
from scheduler import history
from scheduler.errors import Conflict
from scheduler.history import Actor
from scheduler.models import (
    ACTIVE_STATUSES,
    Assessment,
    Booking,
    BookingEvent,
    Candidate,
    ExternalPushed,
    Result,
    ResultVersion,
    Timer,
)
from scheduler.webhooks import store as webhook_store

# What the erased fields become: recognisably erased, never a real person or address
# (`.invalid` is reserved, RFC 2606), and still valid for the columns' types.
ERASED_NAME = "(erased)"
ERASED_ACTOR = "(erased candidate)"
ERASED_ERROR = "erased on request"


def erased_address(candidate_id: uuid.UUID) -> str:
    """One per candidate, so that two erased candidates remain two rows, told apart."""
    return f"erased-{candidate_id.hex}@erased.invalid"


# --- access --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessagePart:
    content_type: str
    text: str


@dataclass(frozen=True)
class MessageCopy:
    """One e-mail as it was sent: its headers and its readable parts (the invitation's
    iCalendar part included)."""

    stored: StoredMessage
    headers: list[tuple[str, str]]
    parts: list[MessagePart]


@dataclass(frozen=True)
class BookingRecord:
    booking: Booking
    events: list[BookingEvent]
    messages: list[MessageCopy]
    room: RoomReport
    notes: str  # the evaluator's notes: private to the organisation, but about this person
    assessment: Assessment | None = None  # the evaluator's, draft or submitted


@dataclass(frozen=True)
class CandidateRecord:
    """Everything Viva holds about one candidate."""

    candidate: Candidate
    bookings: list[BookingRecord]
    # Messages to the candidate's address that belong to no booking of theirs.
    other_messages: list[MessageCopy]


def read_message(stored: StoredMessage) -> MessageCopy:
    """The stored bytes, parsed: a person reads headers and text, not MIME."""
    parsed = email.message_from_bytes(stored.raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    headers = [(name, str(value)) for name, value in parsed.items()]
    parts = []
    for part in parsed.walk():
        if part.is_multipart():
            continue
        content = part.get_content()
        if isinstance(content, bytes):
            content = content.decode("utf-8", "replace")
        parts.append(MessagePart(part.get_content_type(), str(content)))
    return MessageCopy(stored, headers, parts)


def _messages_of(candidate: Candidate, booking_ids: list[uuid.UUID]) -> ColumnElement[bool]:
    """Every outbox row about this candidate: their bookings', and any to their address."""
    to_them = (outbox.c.organisation_id == candidate.organisation_id) & (
        func.lower(outbox.c.recipient) == candidate.email.lower()
    )
    return or_(outbox.c.booking_id.in_(booking_ids), to_them) if booking_ids else to_them


async def _bookings(session: AsyncSession, candidate: Candidate) -> list[Booking]:
    rows = await session.scalars(
        select(Booking)
        .where(Booking.candidate_id == candidate.id)
        .order_by(Booking.start_at, Booking.id)
    )
    return list(rows)


async def gather(session: AsyncSession, candidate: Candidate) -> CandidateRecord:
    """The export's content. Messages about a booking that went to someone else (the
    evaluator's notices) are left out: they are the evaluator's mail, and what they say of
    the candidate is in the booking and its history."""
    bookings = await _bookings(session, candidate)
    ids = [b.id for b in bookings]
    fields = [outbox.c[name] for name in StoredMessage.__dataclass_fields__]
    rows = (
        await session.execute(
            select(*fields)
            .where(
                _messages_of(candidate, ids),
                func.lower(outbox.c.recipient) == candidate.email.lower(),
            )
            .order_by(outbox.c.created_at, outbox.c.id)
        )
    ).mappings()
    by_booking: dict[uuid.UUID | None, list[MessageCopy]] = {}
    for row in rows:
        stored = StoredMessage(**row)
        key = stored.booking_id if stored.booking_id in ids else None
        by_booking.setdefault(key, []).append(read_message(stored))
    records = []
    for b in bookings:
        room = await session.get(RoomRecord, b.id)
        records.append(
            BookingRecord(
                booking=b,
                events=await history.events(session, b.id),
                messages=by_booking.get(b.id, []),
                room=await room_report(session, b.id),
                notes=room.evaluator_notes if room is not None else "",
                assessment=await session.get(Assessment, b.id),
            )
        )
    return CandidateRecord(candidate, records, by_booking.get(None, []))


# --- erasure -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Erasure:
    """What an erasure touched, for its history event and the operator's log: counts only."""

    bookings: int
    messages: int
    recordings: int
    booking_ids: tuple[uuid.UUID, ...]  # whose room links died: the rooms are told


@dataclass(frozen=True)
class RecordingFiles:
    """Where recordings live and whether one is being written (by this process)."""

    folder: Path
    in_progress: Callable[[uuid.UUID], bool]
    # A room stays open this long after its end: until then, an unfinished recording may
    # still be written by another process.
    room_closes_after: timedelta


async def erase_candidate(
    session: AsyncSession,
    candidate: Candidate,
    *,
    actor: Actor,
    now: datetime,
    files: RecordingFiles,
) -> Erasure:
    """Anonymise everything about `candidate`, in the caller's transaction.

    Refused under a legal hold (an appeal), while they have an interview ahead (cancel it
    first: the cancellation mails are owed) or a recording of theirs may still be written.
    Each booking's history gets a `candidate_erased` event that names no one; the
    candidate's own history entries keep what happened and when, with an anonymous actor,
    and every free-text reason of their bookings is dropped (it may name them).
    """
    if candidate.hold_reason is not None:
        raise Conflict(
            "this candidate is under a legal hold; lift it first "
            "(DELETE /api/v1/candidates/{id}/hold), then erase"
        )
    bookings = await _bookings(session, candidate)
    if any(b.status in ACTIVE_STATUSES and b.end_at > now for b in bookings):
        raise Conflict("this candidate has an interview ahead; cancel it first, then erase")
    ids = [b.id for b in bookings]
    removed = await _delete_recordings(session, bookings, now=now, files=files)
    messages = await _erase_messages(session, candidate, ids)
    if ids:
        await session.execute(
            update(BookingEvent)
            .where(BookingEvent.booking_id.in_(ids), BookingEvent.actor == "candidate")
            .values(actor_name=ERASED_ACTOR)
        )
        await session.execute(
            update(BookingEvent).where(BookingEvent.booking_id.in_(ids)).values(reason=None)
        )
        await session.execute(
            update(RoomRecord).where(RoomRecord.booking_id.in_(ids)).values(evaluator_notes="")
        )
        await session.execute(
            update(Timer).where(Timer.booking_id.in_(ids)).values(last_error=None)
        )
        # The interviews written into evaluators' own calendars name the candidate: their next
        # write-back pass rewrites them, past ones included, without the name.
        await session.execute(
            update(ExternalPushed)
            .where(ExternalPushed.booking_id.in_(ids))
            .values(sequence=ExternalPushed.REWRITE)
        )
        await _erase_assessment_comments(session, ids)
        await webhook_store.drop_reasons(session, ids)
        # Who consented stays known as a role (the recording's lawful basis); not the name.
        await session.execute(
            update(RoomConsent)
            .where(RoomConsent.booking_id.in_(ids), RoomConsent.role == "candidate")
            .values(name=ERASED_ACTOR)
        )
    for b in bookings:
        b.cancel_reason = None
        b.candidate_room_nonce = new_nonce()  # the room link dies
        b.updated_at = now
    await _erase_result_reasons(session, candidate.id)
    candidate.name = ERASED_NAME
    candidate.email = erased_address(candidate.id)
    candidate.timezone = "UTC"
    candidate.link_nonce = new_nonce()  # the personal link dies
    candidate.erased_at = now
    await session.flush()
    done = Erasure(len(bookings), messages, removed, tuple(ids))
    for b in bookings:
        await history.record(session, b, actor=actor, action="candidate_erased", now=now)
    return done


async def _erase_result_reasons(session: AsyncSession, candidate_id: uuid.UUID) -> None:
    """The result stays as anonymous figures (scheduler.results); the reasons of its
    corrections and revocation may name the candidate, and its link dies."""
    await session.execute(
        update(Result)
        .where(Result.candidate_id == candidate_id)
        .values(revoke_reason=None, link_nonce=new_nonce())
    )
    await session.execute(
        update(ResultVersion)
        .where(
            ResultVersion.result_id.in_(
                select(Result.id).where(Result.candidate_id == candidate_id)
            )
        )
        .values(reason="")
    )


# The history events whose before/after hold an assessment's comment (scheduler.assessments).
_ASSESSMENT_ACTIONS = ("assessment_submitted", "assessment_changed")


async def _erase_assessment_comments(session: AsyncSession, ids: list[uuid.UUID]) -> None:
    """The evaluator's comment may name the candidate: it goes, from the assessment and from
    the history's copies of it. The levels stay, like the outcome: anonymous figures."""
    await session.execute(
        update(Assessment).where(Assessment.booking_id.in_(ids)).values(comment="")
    )
    events = await session.scalars(
        select(BookingEvent).where(
            BookingEvent.booking_id.in_(ids), BookingEvent.action.in_(_ASSESSMENT_ACTIONS)
        )
    )
    for event in events:
        event.before = {**event.before, "comment": ""} if event.before else event.before
        event.after = {**event.after, "comment": ""} if event.after else event.after


async def delete_assessments(session: AsyncSession, ids: list[uuid.UUID]) -> None:
    """Retention's end of an assessment: the row goes, and the history keeps that it was
    submitted or changed, by whom and when, but no longer the levels or the comment."""
    await session.execute(delete(Assessment).where(Assessment.booking_id.in_(ids)))
    events = await session.scalars(
        select(BookingEvent).where(
            BookingEvent.booking_id.in_(ids), BookingEvent.action.in_(_ASSESSMENT_ACTIONS)
        )
    )
    for event in events:
        event.before = None
        event.after = None


async def _erase_messages(session: AsyncSession, candidate: Candidate, ids: list[uuid.UUID]) -> int:
    """Drop bodies, subjects and errors; the candidate's address goes too. A message not
    yet sent never will be: an empty body is not a message (mailer.store.requeue refuses
    to queue it again)."""
    where = _messages_of(candidate, ids)
    await session.execute(
        update(outbox)
        .where(where, outbox.c.status.in_(("pending", "sending")))
        .values(status="failed", claimed_by=None)
    )
    await session.execute(
        update(outbox)
        .where(
            where,
            func.lower(outbox.c.recipient) == candidate.email.lower(),
        )
        .values(recipient=erased_address(candidate.id))
    )
    result = await session.execute(
        update(outbox).where(where).values(subject="", raw=b"", last_error=ERASED_ERROR)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def _delete_recordings(
    session: AsyncSession, bookings: list[Booking], *, now: datetime, files: RecordingFiles
) -> int:
    """Files first, then rows: a failure between the two leaves rows whose file is gone,
    and erasing again finishes the job."""
    ends = {b.id: b.end_at for b in bookings}
    if not ends:
        return 0
    rows = list(
        await session.scalars(select(RoomRecording).where(RoomRecording.booking_id.in_(ends)))
    )
    for row in rows:
        open_room = row.ended_at is None and now < ends[row.booking_id] + files.room_closes_after
        if open_room or files.in_progress(row.id):
            raise Conflict("a recording of this candidate is in progress; erase once it ended")
    await delete_recordings(session, rows, files.folder)
    return len(rows)


async def delete_recordings(session: AsyncSession, rows: list[RoomRecording], folder: Path) -> None:
    """Each file, then the rows (in the caller's transaction): an erasure's and a
    retention run's way, like a single recording's deletion. A failure between the two
    leaves rows whose file is gone, which the next attempt deletes."""
    _unlink(rows, folder)
    if rows:
        await session.execute(
            delete(RoomRecording).where(RoomRecording.id.in_([r.id for r in rows]))
        )


def _unlink(rows: list[RoomRecording], folder: Path) -> None:
    folder = folder.resolve()
    for row in rows:
        path = (folder / row.file).resolve()
        if not path.is_relative_to(folder):
            continue  # never delete outside the recordings folder, whatever a row says
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # the booking's folder, once empty
