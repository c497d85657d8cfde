"""An evaluator's calendars: their feed's link, and their own calendars read for busy times."""

from __future__ import annotations

from scheduler import keys
from scheduler.errors import FieldError, ValidationFailed
from scheduler.external_calendars import NewCalendar, replace_calendars, statuses
from scheduler.feeds import reissue
from scheduler.models import Evaluator
from scheduler.web.api.people import evaluator_out
from scheduler.web.api.routing import Call, endpoint
from scheduler.web.calendar_schemas import CalendarOut, CalendarsIn, CalendarsOut
from scheduler.web.schemas import EvaluatorOut


@endpoint(
    "POST",
    "/evaluators/{id}/calendar_feed",
    "Re-issue an evaluator's calendar feed link (the previous one stops working)",
    response=EvaluatorOut,
    write=True,
)
async def reissue_feed(call: Call) -> EvaluatorOut:
    ev = await call.owned(Evaluator, "evaluator")
    reissue(ev)
    await call.session.flush()
    return evaluator_out(call, ev)


async def _out(call: Call, ev: Evaluator) -> CalendarsOut:
    return CalendarsOut(
        calendars=[
            CalendarOut(
                id=s.id,
                type=s.kind,  # type: ignore[arg-type]
                url=s.url,
                username=s.username,
                has_password=s.has_password,
                write_back=s.write_back,
                last_attempt_at=s.last_attempt_at,
                last_success_at=s.last_success_at,
                last_error=s.last_error,
                busy_count=s.busy_count,
            )
            for s in await statuses(call.session, ev.id)
        ]
    )


@endpoint(
    "PUT",
    "/evaluators/{id}/calendars",
    "Replace an evaluator's own calendars, read for busy times",
    body=CalendarsIn,
    response=CalendarsOut,
    write=True,
)
async def put_calendars(call: Call) -> CalendarsOut:
    ev = await call.owned(Evaluator, "evaluator")
    app = call.request.app
    most = app[keys.SETTINGS].calendars.max_per_evaluator
    if len(call.body.calendars) > most:
        raise ValidationFailed([FieldError("calendars", f"at most {most} per evaluator")])
    for i, item in enumerate(call.body.calendars):
        if item.type == "ics" and (item.username or item.password or item.write_back):
            raise ValidationFailed(
                [
                    FieldError(
                        f"calendars.{i}",
                        "an ics URL is read-only: no user name, password or write_back",
                    )
                ]
            )
    await replace_calendars(
        call.session,
        ev,
        [
            NewCalendar(c.type, c.url, c.username, c.password, c.write_back)
            for c in call.body.calendars
        ],
        app[keys.CREDENTIALS],
        app[keys.CLOCK].now(),
    )
    return await _out(call, ev)


@endpoint(
    "GET",
    "/evaluators/{id}/calendars",
    "An evaluator's own calendars and how their last fetches went",
    response=CalendarsOut,
)
async def get_calendars(call: Call) -> CalendarsOut:
    return await _out(call, await call.owned(Evaluator, "evaluator"))


@endpoint(
    "POST",
    "/evaluators/{id}/calendars/refresh",
    "Fetch an evaluator's own calendars now",
    response=CalendarsOut,
)
async def refresh_calendars(call: Call) -> CalendarsOut:
    ev = await call.owned(Evaluator, "evaluator")
    app = call.request.app
    # Fetched and stored in sessions of its own: this call's snapshot predates the fetch.
    await app[keys.CALENDAR_SYNC].refresh_evaluator(ev.id)
    async with app[keys.DB].read() as session:
        fresh = await session.get(Evaluator, ev.id)
        assert fresh is not None
        return await _out(
            Call(call.request, call.org, call.key_name, session, key_id=call.key_id), fresh
        )
