"""The evaluator's assessment of an interview: a draft saved as typed, submitted once, then
changed only by the organisation, with a reason, in the booking's history.

The rules (what a scheme is, what marks are valid, which outcomes have no assessment) are
pure, in scheduler.scheme; this module applies them to the rows, inside the caller's write
transaction. Each writer locks the booking's row first, so two saves of one assessment (two
tabs, or a save racing the submit) run one after the other on PostgreSQL as on SQLite.

`submitted` is what the results (issue 13, part B) read: a submitted assessment, with the
scheme it was given on, or None.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.models import load_state
from scheduler import history
from scheduler.errors import Conflict, NotFound
from scheduler.history import Actor
from scheduler.models import Assessment, Booking, Organisation
from scheduler.scheme import (
    DEFAULT,
    Marks,
    Scheme,
    checked_marks,
    checked_scheme,
    kept_on,
    no_assessment_reason,
)

State = Literal["none", "draft", "submitted"]


class NoAssessment(Conflict):
    """The interview ended in a way that leaves nothing to assess."""

    title = "This interview has no assessment"


class AlreadySubmitted(Conflict):
    title = "The assessment is already submitted"


@dataclass(frozen=True)
class SubmittedAssessment:
    """A submitted assessment, as the results read it."""

    booking_id: uuid.UUID
    levels: dict[str, str]
    overall_level: str | None
    comment: str
    submitted_at: datetime
    scheme: Scheme


@dataclass(frozen=True)
class AssessmentView:
    """An interview's assessment as the room's form and the API show it.

    `reason` is set (and the rest empty) when the interview has no assessment; a draft is
    shown on the organisation's current scheme, a submitted one on its own copy."""

    booking_id: uuid.UUID
    state: State
    scheme: Scheme
    marks: Marks
    submitted_at: datetime | None
    updated_at: datetime | None
    reason: str | None = None


def scheme_of(org: Organisation) -> Scheme:
    return Scheme.from_json(org.assessment_scheme) if org.assessment_scheme else DEFAULT


def set_scheme(org: Organisation, scheme: Scheme) -> Scheme:
    """Replace the organisation's scheme; submitted assessments keep their own copy, and
    drafts follow the new one (keeping the marks that still fit it)."""
    org.assessment_scheme = checked_scheme(scheme).to_json()
    return scheme


def marks_json(marks: Marks) -> dict[str, Any]:
    """The marks as the history and the export show them."""
    return {
        "levels": dict(marks.levels),
        "overall_level": marks.overall_level,
        "comment": marks.comment,
    }


def _marks(row: Assessment) -> Marks:
    return Marks(dict(row.levels), row.overall_level, row.comment)


async def reason_for(session: AsyncSession, booking: Booking) -> str | None:
    """Why this booking's interview has no assessment, or None."""
    state = await load_state(session, booking.id)
    return no_assessment_reason(booking.status, state.outcome)


async def view(session: AsyncSession, booking: Booking) -> AssessmentView:
    org = await session.get(Organisation, booking.organisation_id)
    if org is None:
        raise NotFound("no such organisation")
    current = scheme_of(org)
    reason = await reason_for(session, booking)
    if reason is not None:
        return AssessmentView(booking.id, "none", current, Marks(), None, None, reason)
    row = await session.get(Assessment, booking.id)
    if row is None:
        return AssessmentView(booking.id, "none", current, Marks(), None, None)
    if row.submitted_at is not None:
        return AssessmentView(
            booking.id,
            "submitted",
            Scheme.from_json(row.scheme),
            _marks(row),
            row.submitted_at,
            row.updated_at,
        )
    return AssessmentView(
        booking.id, "draft", current, kept_on(current, _marks(row)), None, row.updated_at
    )


async def _locked(
    session: AsyncSession, booking_id: uuid.UUID
) -> tuple[Booking, Organisation, Assessment | None]:
    """The booking (row-locked), its organisation and its assessment row, if any; refused
    when the interview has nothing to assess."""
    booking = await session.get(Booking, booking_id, with_for_update=True)
    org = await session.get(Organisation, booking.organisation_id) if booking else None
    if booking is None or org is None:
        raise NotFound("no such booking")
    reason = await reason_for(session, booking)
    if reason is not None:
        raise NoAssessment(f"this interview ended as {reason}: it has no assessment", reason=reason)
    row = await session.scalar(
        select(Assessment).where(Assessment.booking_id == booking_id).with_for_update()
    )
    return booking, org, row


async def save_draft(
    session: AsyncSession, booking_id: uuid.UUID, marks: Marks, *, now: datetime
) -> AssessmentView:
    """The evaluator's marks so far, on the organisation's current scheme. Not in the
    history: a draft changes with every keystroke, and only the submission counts."""
    booking, org, row = await _locked(session, booking_id)
    if row is not None and row.submitted_at is not None:
        raise AlreadySubmitted("only the organisation can change a submitted assessment")
    scheme = scheme_of(org)
    checked_marks(scheme, marks, complete=False)
    if row is None:
        row = Assessment(booking_id=booking.id, organisation_id=booking.organisation_id)
        session.add(row)
    row.scheme = scheme.to_json()
    row.levels = dict(marks.levels)
    row.overall_level = marks.overall_level
    row.comment = marks.comment
    row.updated_at = now
    await session.flush()
    return await view(session, booking)


async def submit(
    session: AsyncSession,
    booking_id: uuid.UUID,
    marks: Marks | None,
    *,
    actor: Actor,
    now: datetime,
) -> AssessmentView:
    """Submit the assessment, once: every criterion has a level and there is an overall
    level. `marks`: the last ones typed (saved with the submission), or None for the draft
    as saved. The scheme is copied into the row for good."""
    booking, org, row = await _locked(session, booking_id)
    if row is not None and row.submitted_at is not None:
        raise AlreadySubmitted("this assessment was already submitted")
    scheme = scheme_of(org)
    if marks is None:
        marks = kept_on(scheme, _marks(row)) if row is not None else Marks()
    checked_marks(scheme, marks, complete=True)
    if row is None:
        row = Assessment(booking_id=booking.id, organisation_id=booking.organisation_id)
        session.add(row)
    row.scheme = scheme.to_json()
    row.levels = dict(marks.levels)
    row.overall_level = marks.overall_level
    row.comment = marks.comment
    row.submitted_at = row.updated_at = now
    await session.flush()
    await history.record(
        session,
        booking,
        actor=actor,
        action="assessment_submitted",
        now=now,
        after=marks_json(marks),
    )
    return await view(session, booking)


async def amend(
    session: AsyncSession,
    booking_id: uuid.UUID,
    marks: Marks,
    *,
    reason: str,
    actor: Actor,
    now: datetime,
) -> AssessmentView:
    """The organisation changes a submitted assessment, on the scheme it was given on; the
    history keeps what it said before, what it says now, and why."""
    booking, _, row = await _locked(session, booking_id)
    if row is None or row.submitted_at is None:
        raise Conflict("the evaluator has not submitted this assessment yet")
    scheme = Scheme.from_json(row.scheme)
    checked_marks(scheme, marks, complete=True)
    before = marks_json(_marks(row))
    if before == marks_json(marks):
        return await view(session, booking)  # nothing changes, nothing to record
    row.levels = dict(marks.levels)
    row.overall_level = marks.overall_level
    row.comment = marks.comment
    row.updated_at = now
    await session.flush()
    await history.record(
        session,
        booking,
        actor=actor,
        action="assessment_changed",
        now=now,
        before=before,
        after=marks_json(marks),
        reason=reason,
    )
    return await view(session, booking)


async def start_over(session: AsyncSession, booking_id: uuid.UUID) -> None:
    """A moved booking's interview starts over (rooms.models.restart), and so does its
    assessment: marks given on an interview that did not count must not stand for the new
    one. A submitted assessment's marks stay in the history (`assessment_submitted`)."""
    await session.execute(delete(Assessment).where(Assessment.booking_id == booking_id))


async def submitted(session: AsyncSession, booking_id: uuid.UUID) -> SubmittedAssessment | None:
    """The booking's submitted assessment, or None: not submitted yet, or an interview
    that has none (no-show, interrupted, identity refused, cancelled)."""
    row = await session.get(Assessment, booking_id)
    if row is None or row.submitted_at is None:
        return None
    booking = await session.get(Booking, booking_id)
    if booking is None or await reason_for(session, booking) is not None:
        return None
    return SubmittedAssessment(
        booking_id=row.booking_id,
        levels=dict(row.levels),
        overall_level=row.overall_level,
        comment=row.comment,
        submitted_at=row.submitted_at,
        scheme=Scheme.from_json(row.scheme),
    )
