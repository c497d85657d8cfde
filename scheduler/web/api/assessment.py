"""The organisation's assessment scheme and a booking's assessment (issue 13, part A)."""

from __future__ import annotations

from scheduler import assessments, keys
from scheduler.history import Actor
from scheduler.models import Booking
from scheduler.web.api.routing import Call, endpoint
from scheduler.web.assessment_schemas import AssessmentChange, AssessmentOut, AssessmentScheme


@endpoint(
    "GET",
    "/organisation/assessment",
    "The organisation's assessment scheme: the scale's levels (lowest first) and the criteria",
    response=AssessmentScheme,
    errors=(401,),
)
async def get_assessment_scheme(call: Call) -> AssessmentScheme:
    return AssessmentScheme.of(assessments.scheme_of(call.org))


@endpoint(
    "PUT",
    "/organisation/assessment",
    "Replace the assessment scheme (codes unique within the levels and within the criteria; "
    "French and English labels). Submitted assessments keep the scheme they were given on.",
    body=AssessmentScheme,
    response=AssessmentScheme,
    write=True,
    errors=(401, 422),
)
async def put_assessment_scheme(call: Call) -> AssessmentScheme:
    data: AssessmentScheme = call.body
    return AssessmentScheme.of(assessments.set_scheme(call.org, data.to_scheme()))


@endpoint(
    "GET",
    "/bookings/{id}/assessment",
    "The interview's assessment (draft or submitted), with its scheme; for an interview "
    "that has none (no-show, interrupted, identity refused, cancelled), `reason` says why",
    response=AssessmentOut,
)
async def get_booking_assessment(call: Call) -> AssessmentOut:
    b = await call.owned(Booking, "booking")
    return AssessmentOut.of(await assessments.view(call.session, b))


@endpoint(
    "PUT",
    "/bookings/{id}/assessment",
    "Change a submitted assessment (the fields sent replace the current ones), with a "
    "reason; the booking's history keeps the former and the new marks",
    body=AssessmentChange,
    response=AssessmentOut,
    write=True,
    errors=(401, 404, 409, 422),
)
async def put_booking_assessment(call: Call) -> AssessmentOut:
    b = await call.owned(Booking, "booking")
    data: AssessmentChange = call.body
    current = await assessments.view(call.session, b)
    found = await assessments.amend(
        call.session,
        b.id,
        data.marks(current.marks),
        reason=data.reason,
        actor=Actor("organisation", call.key_name),
        now=call.request.app[keys.CLOCK].now(),
    )
    return AssessmentOut.of(found)
