"""Results: what the organisation certifies per candidate, published, corrected, revoked
(scheduler.results). Writes run in their own transaction, so the mail worker is woken
only once the e-mail they wrote is committed."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler import keys, results
from scheduler.errors import NotFound
from scheduler.models import Assessment, Booking, Candidate, Result
from scheduler.results import PartInput, ResultInput
from scheduler.web.api.routing import Call, endpoint
from scheduler.web.result_schemas import (
    BatchPublishIn,
    BatchPublishOut,
    PartOut,
    PublishOutcome,
    ResultIn,
    ResultList,
    ResultListItem,
    ResultOut,
    ResultsQuery,
    ResultVersionOut,
    RevokeIn,
)


async def result_out(call: Call, session: AsyncSession, result: Result) -> ResultOut:
    """The result as the API shows it (also in the candidate's export)."""
    app = call.request.app
    mailer = app[keys.RESULT_MAILER]
    published = result.published_at is not None
    code = app[keys.CODES].code(result.id) if published else None
    status: Literal["draft", "published", "revoked"] = (
        "revoked" if result.revoked_at else "published" if published else "draft"
    )
    return ResultOut(
        candidate_id=result.candidate_id,
        booking_id=result.booking_id,
        status=status,
        version=result.version,
        oral_level=result.oral_level,
        parts=[PartOut.model_validate(p) for p in result.parts],
        overall_level=result.overall_level,
        target_level=result.target_level,
        target_reached=result.target_reached,
        updated_at=result.updated_at,
        published_at=result.published_at,
        revoked_at=result.revoked_at,
        revoke_reason=result.revoke_reason,
        results_url=mailer.results_url(result) if published else None,
        verification_code=code,
        verification_url=mailer.verify_url(code) if code else None,
        versions=[
            ResultVersionOut(
                version=v.version,
                oral_level=v.data.get("oral_level"),
                parts=[PartOut.model_validate(p) for p in v.data.get("parts", [])],
                overall_level=v.data["overall_level"],
                target_level=v.data.get("target_level"),
                target_reached=v.data["target_reached"],
                replaced_at=v.replaced_at,
                replaced_by=v.actor_name,
                reason=v.reason,
            )
            for v in await results.versions(session, result.id)
        ],
    )


async def _result_of(call: Call, session: AsyncSession) -> tuple[Candidate, Result]:
    candidate = await call.owned(Candidate, "candidate", session=session)
    result = await results.of_candidate(session, candidate.id)
    if result is None:
        raise NotFound("this candidate has no result yet")
    return candidate, result


@endpoint(
    "GET",
    "/candidates/{id}/result",
    "A candidate's result: the current version, its state, the results link and the "
    "verification code once published, and the published versions corrections replaced",
    response=ResultOut,
    errors=(401, 404),
)
async def get_result(call: Call) -> ResultOut:
    _, result = await _result_of(call, call.session)
    return await result_out(call, call.session, result)


@endpoint(
    "PUT",
    "/candidates/{id}/result",
    "Record or correct the result the organisation certifies. Until publication it is "
    "corrected freely; after, a correction needs a reason, keeps the former version in the "
    "history and sends the candidate an 'updated results' e-mail. Refused once revoked",
    body=ResultIn,
    response=ResultOut,
    errors=(401, 404, 409, 422),
)
async def put_result(call: Call) -> ResultOut:
    body: ResultIn = call.body
    data = ResultInput(
        overall_level=body.overall_level,
        target_reached=body.target_reached,
        oral_level=body.oral_level,
        parts=[PartInput(p.name, p.level, p.score) for p in body.parts],
        target_level=body.target_level,
        reason=body.reason,
    )
    app = call.request.app
    async with app[keys.DB].write() as session:
        candidate = await call.owned(Candidate, "candidate", session=session)
        result = await results.save(
            session,
            candidate,
            data,
            actor_name=call.key_name,
            now=app[keys.CLOCK].now(),
            effects=app[keys.RESULT_MAILER],
        )
        out = await result_out(call, session, result)
    app[keys.MAIL].wake()
    return out


@endpoint(
    "POST",
    "/candidates/{id}/result/publish",
    "Publish a candidate's result: they receive an e-mail in their language with the link "
    "to their results (and certificate, if the target is reached). Publishing again sends "
    "nothing",
    response=ResultOut,
    errors=(401, 404, 409),
)
async def publish_result(call: Call) -> ResultOut:
    app = call.request.app
    async with app[keys.DB].write() as session:
        candidate, result = await _result_of(call, session)
        await results.publish(
            session,
            result,
            candidate,
            codes=app[keys.CODES],
            now=app[keys.CLOCK].now(),
            effects=app[keys.RESULT_MAILER],
        )
        out = await result_out(call, session, result)
    app[keys.MAIL].wake()
    return out


@endpoint(
    "POST",
    "/results/publish",
    "Publish several candidates' results; each id gets its own outcome (another "
    "organisation's candidate is `not_found`, like one that never existed)",
    body=BatchPublishIn,
    response=BatchPublishOut,
    errors=(401, 422),
)
async def publish_many(call: Call) -> BatchPublishOut:
    body: BatchPublishIn = call.body
    app = call.request.app
    outcomes = []
    for candidate_id in dict.fromkeys(body.candidate_ids):
        # One transaction each: one candidate's refusal does not undo another's e-mail.
        async with app[keys.DB].write() as session:
            candidate = await session.get(Candidate, candidate_id)
            if (
                candidate is None
                or candidate.organisation_id != call.org.id
                or candidate.erased_at is not None
            ):
                outcomes.append(PublishOutcome(candidate_id=candidate_id, outcome="not_found"))
                continue
            result = await results.of_candidate(session, candidate.id)
            if result is None:
                outcomes.append(PublishOutcome(candidate_id=candidate_id, outcome="no_result"))
                continue
            if result.revoked_at is not None:
                outcomes.append(PublishOutcome(candidate_id=candidate_id, outcome="revoked"))
                continue
            done = await results.publish(
                session,
                result,
                candidate,
                codes=app[keys.CODES],
                now=app[keys.CLOCK].now(),
                effects=app[keys.RESULT_MAILER],
            )
        outcomes.append(
            PublishOutcome(
                candidate_id=candidate_id, outcome="published" if done else "already_published"
            )
        )
    app[keys.MAIL].wake()
    return BatchPublishOut(outcomes=outcomes)


@endpoint(
    "POST",
    "/candidates/{id}/result/revoke",
    "Revoke a published result's certificate, with a reason: its verification page says "
    "'revoked on …' from then on. Revoking again keeps the first date",
    body=RevokeIn,
    response=ResultOut,
    errors=(401, 404, 409, 422),
)
async def revoke_result(call: Call) -> ResultOut:
    body: RevokeIn = call.body
    app = call.request.app
    async with app[keys.DB].write() as session:
        _, result = await _result_of(call, session)
        await results.revoke(session, result, reason=body.reason, now=app[keys.CLOCK].now())
        return await result_out(call, session, result)


@endpoint(
    "POST",
    "/candidates/{id}/result/link",
    "Re-issue the candidate's results link: the old one stops working, the new one is "
    "e-mailed to them",
    response=ResultOut,
    errors=(401, 404, 409),
)
async def reissue_results_link(call: Call) -> ResultOut:
    app = call.request.app
    async with app[keys.DB].write() as session:
        candidate, result = await _result_of(call, session)
        await results.new_link(
            session, result, candidate, now=app[keys.CLOCK].now(), effects=app[keys.RESULT_MAILER]
        )
        out = await result_out(call, session, result)
    app[keys.MAIL].wake()
    return out


@endpoint(
    "GET",
    "/results",
    "Interviews by result state: `to_review` (a submitted assessment, no published result "
    "yet) or `published`; `from`/`to` (UTC days) bound the interview's start or the "
    "publication",
    query=ResultsQuery,
    response=ResultList,
    errors=(401, 422),
)
async def list_results(call: Call) -> ResultList:
    q: ResultsQuery = call.query
    lo = datetime.combine(q.from_, time(0), UTC) if q.from_ else None
    hi = datetime.combine(q.to + timedelta(days=1), time(0), UTC) if q.to else None
    if q.status == "published":
        stmt = (
            select(Result, Candidate, Booking)
            .join(Candidate, Candidate.id == Result.candidate_id)
            .outerjoin(Booking, Booking.id == Result.booking_id)
            .where(Result.organisation_id == call.org.id, Result.published_at.is_not(None))
        )
        if lo is not None:
            stmt = stmt.where(Result.published_at >= lo)
        if hi is not None:
            stmt = stmt.where(Result.published_at < hi)
        stmt = stmt.order_by(Result.published_at, Result.id)
    else:
        stmt = (
            select(Result, Candidate, Booking)
            .select_from(Assessment)
            .join(Booking, Booking.id == Assessment.booking_id)
            .join(Candidate, Candidate.id == Booking.candidate_id)
            .outerjoin(Result, Result.candidate_id == Candidate.id)
            .where(
                Assessment.organisation_id == call.org.id,
                Assessment.submitted_at.is_not(None),
                Candidate.erased_at.is_(None),
                # No result row (outer join) reads as null too.
                Result.published_at.is_(None),
            )
        )
        if lo is not None:
            stmt = stmt.where(Booking.start_at >= lo)
        if hi is not None:
            stmt = stmt.where(Booking.start_at < hi)
        stmt = stmt.order_by(Booking.start_at, Booking.id)
    rows = (await call.session.execute(stmt.limit(5000))).all()
    return ResultList(
        results=[
            ResultListItem(
                candidate_id=candidate.id,
                candidate_name=candidate.name,
                booking_id=booking.id if booking is not None else None,
                interview_start=booking.start_at if booking is not None else None,
                status=q.status,
                overall_level=result.overall_level if result is not None else None,
                published_at=result.published_at if result is not None else None,
            )
            for result, candidate, booking in rows
        ]
    )
