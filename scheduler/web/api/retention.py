"""Retention (the organisation's periods, its runs) and legal holds on candidates."""

from __future__ import annotations

import logging

from scheduler import keys
from scheduler.errors import Conflict
from scheduler.leases import lease_clock
from scheduler.models import Candidate
from scheduler.retention import KINDS, days_for
from scheduler.retention_runs import next_due, pending_and_last
from scheduler.web.api.people import candidate_out
from scheduler.web.api.routing import Call, endpoint
from scheduler.web.schemas import CandidateOut
from scheduler.web.schemas_privacy import (
    HoldIn,
    RetentionIn,
    RetentionOut,
    RetentionRule,
    RetentionRunOut,
)

log = logging.getLogger(__name__)


async def _retention(call: Call) -> RetentionOut:
    app = call.request.app
    defaults = app[keys.SETTINGS].retention
    now = app[keys.CLOCK].now()
    own = call.org.retention or {}
    days = days_for(own, defaults)
    pending, last = await pending_and_last(call.session, call.org.id)
    # Whether its lease is live is read on the clock leases are written with (the
    # database's on PostgreSQL, scheduler.leases); when it is due, on the app's.
    lease_now = await lease_clock(app[keys.DB].sqlite, app[keys.CLOCK])(call.session)
    return RetentionOut(
        rules=[
            RetentionRule(
                kind=k.name,
                description=k.description,
                days=days[k.name],
                default_days=defaults.days(k.name),
                own=k.name in own,
            )
            for k in KINDS
        ],
        next_run_at=pending.due_at if pending else next_due(now, defaults.run_at_hour),
        running=pending is not None
        and pending.claimed_by is not None
        and pending.lease_until is not None
        and pending.lease_until > lease_now,
        last_run=RetentionRunOut.model_validate(last) if last is not None else None,
    )


@endpoint(
    "GET",
    "/organisation/retention",
    "How long each kind of personal data is kept, when the next daily run is due, and what "
    "the last one deleted",
    response=RetentionOut,
    errors=(401,),
)
async def get_retention(call: Call) -> RetentionOut:
    return await _retention(call)


@endpoint(
    "PUT",
    "/organisation/retention",
    "Set how long each kind of personal data is kept, in days (0: for ever; left out or "
    "null: the server's default). The next daily run applies it",
    body=RetentionIn,
    response=RetentionOut,
    write=True,
    errors=(401, 422),
)
async def put_retention(call: Call) -> RetentionOut:
    chosen = {k: v for k, v in call.body.model_dump().items() if v is not None}
    call.org.retention = chosen or None
    await call.session.flush()
    return await _retention(call)


@endpoint(
    "POST",
    "/candidates/{id}/hold",
    "Put a legal hold on a candidate (an appeal): retention deletes nothing of theirs and "
    "an erasure is refused until it is lifted. Holding again replaces the reason",
    body=HoldIn,
    response=CandidateOut,
    write=True,
    errors=(401, 404, 422),
)
async def hold_candidate(call: Call) -> CandidateOut:
    cand = await call.owned(Candidate, "candidate")
    if cand.hold_reason is None:
        cand.held_at = call.request.app[keys.CLOCK].now()
    cand.hold_reason = call.body.reason
    await call.session.flush()
    log.info("candidate %s: legal hold set", cand.id)
    return await candidate_out(call, cand)


@endpoint(
    "DELETE",
    "/candidates/{id}/hold",
    "Lift a candidate's legal hold: retention and erasure apply to them again",
    status=204,
    write=True,
    errors=(401, 404, 409),
)
async def release_candidate(call: Call) -> None:
    cand = await call.owned(Candidate, "candidate")
    if cand.hold_reason is None:
        raise Conflict("this candidate is not under a legal hold")
    cand.hold_reason = None
    cand.held_at = None
    log.info("candidate %s: legal hold lifted", cand.id)
