"""What retention deletes: one entry per kind of personal data, each a cutoff rule and a
batch that deletes or anonymises up to `limit` items past it.

An organisation keeps each kind for a number of days (its own, or the server's default,
`[retention]` in config.toml; 0 keeps it for ever). The daily run
(scheduler.retention_runs) calls each kind's batch until it returns fewer than `limit`,
each batch in its own transaction, so no lock is held long and a crash loses at most one
batch, which the next run does again. Every batch selects only what is still there (a
file still listed, notes not yet empty, a body not yet dropped), so running twice removes
nothing the second time, and two runs of one organisation (a lapsed lease taken over
while the first still works) do the same work at worst, never a wrong one.

A candidate under a legal hold (`candidates.hold_reason`) is skipped by every kind: their
bookings' recordings, notes, attendance and mails stay, and so do they.

Adding a kind (results, say) is one `Kind` in `KINDS` and its
default `<name>_days` in `RetentionSettings` (config.py) and config.toml; the API and the
run follow the registry. When results exist, the candidates' kind also waits for their
publication: append the condition to `CANDIDATE_IN_USE`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailer.models import outbox_messages as outbox
from rooms.models import RoomAttendance, RoomRecord, RoomRecording
from scheduler.config import RetentionSettings
from scheduler.errors import Conflict
from scheduler.history import Actor
from scheduler.models import Assessment, Booking, Candidate, Result
from scheduler.privacy import (
    RecordingFiles,
    delete_assessments,
    delete_recordings,
    erase_candidate,
)

__all__ = [
    "CANDIDATE_IN_USE",
    "KINDS",
    "RETENTION_ACTOR",
    "Kind",
    "Scope",
    "days_for",
    "kind_names",
]

# Who a retention erasure is, in the booking's history.
RETENTION_ACTOR = Actor("system", "retention")
# Message of an outbox row whose body retention dropped (mailer.store.requeue refuses an
# empty body: it cannot be sent again).
EXPIRED = "body removed by retention"


@dataclass
class Scope:
    """One organisation's run: whose data, what is past its date, and where files live."""

    organisation_id: uuid.UUID
    now: datetime
    cutoff: datetime  # items of this kind dated before it are due
    files: RecordingFiles
    # Items a batch could not handle in this run (a recording still being written): the
    # next batches leave them out, so the loop ends; the next run tries them again.
    skipped: set[uuid.UUID] = field(default_factory=set)


Batch = Callable[[AsyncSession, Scope, int], Awaitable[int]]


@dataclass(frozen=True)
class Kind:
    name: str  # the policy's key, the counts' key, and `<name>_days` in RetentionSettings
    description: str  # for the API: what is deleted, counted from when
    batch: Batch  # deletes or anonymises up to `limit` items due; returns how many


def _held_bookings() -> Any:
    """The bookings of candidates under a legal hold: no kind touches them."""
    return (
        select(Booking.id)
        .join(Candidate, Candidate.id == Booking.candidate_id)
        .where(Candidate.hold_reason.is_not(None))
    )


def _ended_bookings(scope: Scope) -> Any:
    """The organisation's bookings whose interview ended before the cutoff, not held."""
    return select(Booking.id).where(
        Booking.organisation_id == scope.organisation_id,
        Booking.end_at < scope.cutoff,
        Booking.id.not_in(_held_bookings()),
    )


async def _recordings(session: AsyncSession, scope: Scope, limit: int) -> int:
    """Files before rows (privacy.delete_recordings). A recording this process is still
    writing waits (it cannot be past any cutoff of a day or more, unless a room was left
    open: then it goes at the next run)."""
    stmt = (
        select(RoomRecording)
        .where(RoomRecording.booking_id.in_(_ended_bookings(scope)))
        .order_by(RoomRecording.started_at, RoomRecording.id)
        .limit(limit)
    )
    if scope.skipped:
        stmt = stmt.where(RoomRecording.id.not_in(scope.skipped))
    rows = list(await session.scalars(stmt))
    busy = {r.id for r in rows if scope.files.in_progress(r.id)}
    scope.skipped |= busy
    await delete_recordings(session, [r for r in rows if r.id not in busy], scope.files.folder)
    return len(rows) - len(busy)


async def _private_notes(session: AsyncSession, scope: Scope, limit: int) -> int:
    ids = list(
        await session.scalars(
            select(RoomRecord.booking_id)
            .where(
                RoomRecord.booking_id.in_(_ended_bookings(scope)),
                RoomRecord.evaluator_notes != "",
            )
            .limit(limit)
        )
    )
    if ids:
        await session.execute(
            update(RoomRecord).where(RoomRecord.booking_id.in_(ids)).values(evaluator_notes="")
        )
    return len(ids)


async def _assessments(session: AsyncSession, scope: Scope, limit: int) -> int:
    """Rows of interviews ended before the cutoff, drafts too, and the levels and comment
    the history copied (privacy.delete_assessments); the history keeps who did what when."""
    ids = list(
        await session.scalars(
            select(Assessment.booking_id)
            .where(Assessment.booking_id.in_(_ended_bookings(scope)))
            .limit(limit)
        )
    )
    if ids:
        await delete_assessments(session, ids)
    return len(ids)


async def _attendance(session: AsyncSession, scope: Scope, limit: int) -> int:
    ids = list(
        await session.scalars(
            select(RoomAttendance.id)
            .where(RoomAttendance.booking_id.in_(_ended_bookings(scope)))
            .limit(limit)
        )
    )
    if ids:
        await session.execute(delete(RoomAttendance).where(RoomAttendance.id.in_(ids)))
    return len(ids)


async def _outbox_bodies(session: AsyncSession, scope: Scope, limit: int) -> int:
    """Sent or failed messages written before the cutoff lose subject and body (a pending
    one is never touched: it is still owed). A message about a held candidate's booking,
    or to a held candidate's address, stays whole."""
    held_addresses = select(func.lower(Candidate.email)).where(
        Candidate.organisation_id == scope.organisation_id,
        Candidate.hold_reason.is_not(None),
    )
    ids = list(
        await session.scalars(
            select(outbox.c.id)
            .where(
                outbox.c.organisation_id == scope.organisation_id,
                outbox.c.created_at < scope.cutoff,
                outbox.c.status.in_(("sent", "failed")),
                func.length(outbox.c.raw) > 0,
                outbox.c.booking_id.is_(None) | outbox.c.booking_id.not_in(_held_bookings()),
                func.lower(outbox.c.recipient).not_in(held_addresses),
            )
            .limit(limit)
        )
    )
    if ids:
        await session.execute(
            update(outbox)
            .where(outbox.c.id.in_(ids))
            .values(subject="", raw=b"", last_error=EXPIRED)
        )
    return len(ids)


def _no_interview_since(scope: Scope) -> ColumnElement[bool]:
    """No booking of theirs (cancelled ones too) ends after the cutoff."""
    return ~exists().where(Booking.candidate_id == Candidate.id, Booking.end_at >= scope.cutoff)


def _no_result_since(scope: Scope) -> ColumnElement[bool]:
    """No result of theirs published (or corrected) after the cutoff: the period runs from
    the results, which come weeks after the interview."""
    return ~exists().where(
        Result.candidate_id == Candidate.id,
        Result.published_at.is_not(None),
        (Result.published_at >= scope.cutoff) | (Result.updated_at >= scope.cutoff),
    )


# Conditions that keep a candidate's data although their last interview is past the cutoff,
# each a function of the run's scope returning a clause on `Candidate`.
CANDIDATE_IN_USE: list[Callable[[Scope], ColumnElement[bool]]] = [
    _no_interview_since,
    _no_result_since,
]


async def _candidates(session: AsyncSession, scope: Scope, limit: int) -> int:
    """Erased as on request (privacy.erase_candidate): the same fields, everywhere. Counted
    from their last interview; one who never booked, from their invitation and deadline."""
    stmt = (
        select(Candidate)
        .where(
            Candidate.organisation_id == scope.organisation_id,
            Candidate.erased_at.is_(None),
            Candidate.hold_reason.is_(None),
            Candidate.created_at < scope.cutoff,
            Candidate.book_by.is_(None) | (Candidate.book_by < scope.cutoff),
            and_(*(rule(scope) for rule in CANDIDATE_IN_USE)),
        )
        .order_by(Candidate.created_at, Candidate.id)
        .limit(limit)
    )
    if scope.skipped:
        stmt = stmt.where(Candidate.id.not_in(scope.skipped))
    done = 0
    for cand in list(await session.scalars(stmt)):
        try:
            async with session.begin_nested():
                await erase_candidate(
                    session, cand, actor=RETENTION_ACTOR, now=scope.now, files=scope.files
                )
        except Conflict:
            scope.skipped.add(cand.id)  # a recording still being written: next run
            continue
        done += 1
    return done


KINDS: tuple[Kind, ...] = (
    Kind(
        "recordings",
        "room recordings (files, then rows), counted from the interview's end",
        _recordings,
    ),
    Kind(
        "private_notes",
        "the evaluator's private notes, counted from the interview's end",
        _private_notes,
    ),
    Kind(
        "assessments",
        "the evaluator's assessment (levels, comment, and their copies in the history), "
        "counted from the interview's end",
        _assessments,
    ),
    Kind(
        "attendance",
        "who opened the room when, counted from the interview's end",
        _attendance,
    ),
    Kind(
        "outbox_bodies",
        "the subject and body of sent or failed e-mails, counted from when they were written",
        _outbox_bodies,
    ),
    Kind(
        "candidates",
        "the candidate's personal data, erased as on request, counted from their last "
        "interview (or their invitation and deadline if they never booked)",
        _candidates,
    ),
)


def kind_names() -> list[str]:
    return [k.name for k in KINDS]


def days_for(overrides: dict[str, int] | None, defaults: RetentionSettings) -> dict[str, int]:
    """Each kind's period for an organisation: its own where it set one, else the server's."""
    own = overrides or {}
    return {k.name: own.get(k.name, defaults.days(k.name)) for k in KINDS}


def cutoff(now: datetime, days: int) -> datetime | None:
    """Items dated before it are due; None when the kind is kept for ever (0 days)."""
    return now - timedelta(days=days) if days > 0 else None
