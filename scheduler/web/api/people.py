"""Evaluators (and their availability) and candidates (and their links)."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler import keys
from scheduler.availability import Availability, AvailabilityError
from scheduler.bookings import active_booking
from scheduler.errors import (
    Conflict,
    FieldError,
    ValidationFailed,
)
from scheduler.history import Actor
from scheduler.models import (
    ACTIVE_STATUSES,
    Booking,
    Candidate,
    Evaluator,
)
from scheduler.people import NewCandidate, NewEvaluator, examined_languages
from scheduler.people import create_candidate as create_candidate_row
from scheduler.people import create_evaluator as create_evaluator_row
from scheduler.privacy_evaluators import erase_evaluator
from scheduler.web.api.routing import (
    Call,
    endpoint,
)
from scheduler.web.schemas import (
    ApiWarning,
    AvailabilityDoc,
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
    HoldOut,
)
from scheduler.web.schemas_privacy import EvaluatorErasureIn

log = logging.getLogger(__name__)

# --- evaluators ----------------------------------------------------------------------------


async def _evaluator(call: Call) -> Evaluator:
    return await call.owned(Evaluator, "evaluator")


def evaluator_out(call: Call, ev: Evaluator) -> EvaluatorOut:
    """The evaluator with their calendar feed's links (https and webcal)."""
    feed = call.request.app[keys.LINKS].feed_url(ev)
    webcal = None if feed is None else "webcal://" + feed.split("://", 1)[1]
    return EvaluatorOut.model_validate(ev).model_copy(
        update={"calendar_feed": feed, "calendar_feed_webcal": webcal}
    )


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
    return evaluator_out(call, ev)


@endpoint("GET", "/evaluators", "List evaluators", response=EvaluatorList)
async def list_evaluators(call: Call) -> EvaluatorList:
    rows = await call.session.scalars(
        select(Evaluator)
        .where(Evaluator.organisation_id == call.org.id, Evaluator.deleted_at.is_(None))
        .order_by(Evaluator.name, Evaluator.id)
    )
    return EvaluatorList(evaluators=[evaluator_out(call, e) for e in rows])


@endpoint("GET", "/evaluators/{id}", "Get an evaluator", response=EvaluatorOut)
async def get_evaluator(call: Call) -> EvaluatorOut:
    return evaluator_out(call, await _evaluator(call))


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
    return evaluator_out(call, ev)


@endpoint(
    "DELETE",
    "/evaluators/{id}",
    "Remove an evaluator from scheduling (refused while they have interviews ahead). With "
    '`{"mode": "erase"}`, also erase their personal data everywhere (their right to '
    "erasure): their past interviews keep an anonymous evaluator, their links stop working",
    body=EvaluatorErasureIn,
    body_optional=True,
    status=204,
    errors=(401, 404, 409, 422),
)
async def delete_evaluator(call: Call) -> None:
    # Its own write transaction (the call's session reads), so that the rooms are told of
    # the dead links only once the change has committed.
    app = call.request.app
    call.path_id()
    now = app[keys.CLOCK].now()
    async with app[keys.DB].write() as session:
        ev = await call.owned(Evaluator, "evaluator", session=session)
        if call.body is None:
            await _refuse_interviews_ahead(session, ev.id, now)
            ev.deleted_at = now
            return None
        done = await erase_evaluator(
            session, ev, actor=Actor("organisation", call.key_name), now=now
        )
    # Counts and ids only: the log must not keep what was just erased.
    log.info("evaluator %s erased: %d bookings, %d messages", ev.id, done.bookings, done.messages)
    for booking_id in done.booking_ids:
        await app[keys.BOOKINGS].after_commit.links_changed(booking_id)
    return None


async def _refuse_interviews_ahead(
    session: AsyncSession, evaluator_id: uuid.UUID, now: datetime
) -> None:
    ahead = await session.scalar(
        select(Booking.id)
        .where(
            Booking.evaluator_id == evaluator_id,
            Booking.status.in_(ACTIVE_STATUSES),
            Booking.end_at > now,
        )
        .limit(1)
    )
    if ahead is not None:
        raise Conflict("this evaluator has interviews ahead; move or cancel them first")


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
        hold=HoldOut(reason=cand.hold_reason, since=cand.held_at)
        if cand.hold_reason is not None and cand.held_at is not None
        else None,
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
    stmt = select(Candidate).where(
        Candidate.organisation_id == call.org.id, Candidate.erased_at.is_(None)
    )
    if q.unservable is True:
        stmt = stmt.where(Candidate.language.not_in(examined))
    elif q.unservable is False:
        stmt = stmt.where(Candidate.language.in_(examined))
    rows = await call.session.scalars(stmt.order_by(Candidate.created_at, Candidate.id))
    return CandidateList(candidates=[await candidate_out(call, c, examined) for c in rows])


@endpoint("GET", "/candidates/{id}", "Get a candidate", response=CandidateOut)
async def get_candidate(call: Call) -> CandidateOut:
    return await candidate_out(call, await call.owned(Candidate, "candidate"))


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
