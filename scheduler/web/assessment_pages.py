"""The evaluator's assessment form, from the room page: `GET` and `PUT /r/{token}/assessment`
(the draft, saved as typed) and `POST /r/{token}/assessment/submit` (once).

Only an evaluator's room link opens them: the candidate's link is refused (403), and a link
that does not resolve (unknown, revoked, the replaced evaluator's, a cancelled booking's) is
the same 404 as on the room page, counted by the throttle. Writes are taken while the room is
open, the evaluator's link working after the interview's end until the room closes, as for
the notes; after that the organisation changes the assessment through the API. Cross-site
posts are refused before these handlers run (scheduler.web.security), as for the consent.
"""

from __future__ import annotations

from aiohttp import web

from rooms.room import Ticket, Window
from scheduler import assessments, keys
from scheduler.errors import Conflict, Forbidden, NotFound
from scheduler.history import Actor
from scheduler.models import Booking
from scheduler.web.api.routing import json_body, parse
from scheduler.web.assessment_schemas import AssessmentOut, RoomMarks


async def _evaluator(request: web.Request, *, writing: bool) -> Ticket:
    ticket = await request.app[keys.ROOM_TICKETS].resolve(request.match_info["token"])
    if ticket is None:
        raise NotFound("This link is not valid.")
    if ticket.role != "evaluator":
        raise Forbidden("Only the evaluator assesses the interview.")
    if writing:
        window = Window.of(ticket, request.app[keys.SETTINGS].rooms)
        if window.status(request.app[keys.CLOCK].now()) != "open":
            raise Conflict(
                "The room is closed: the organisation can still change the assessment.",
                window=window.status(request.app[keys.CLOCK].now()),
            )
    return ticket


def _answer(found: assessments.AssessmentView) -> web.Response:
    return web.json_response(AssessmentOut.of(found).model_dump(mode="json"))


async def get_assessment(request: web.Request) -> web.Response:
    ticket = await _evaluator(request, writing=False)
    async with request.app[keys.DB].read() as session:
        booking = await session.get(Booking, ticket.booking_id)
        if booking is None:
            raise NotFound("This link is not valid.")
        return _answer(await assessments.view(session, booking))


async def put_assessment(request: web.Request) -> web.Response:
    ticket = await _evaluator(request, writing=True)
    marks: RoomMarks = parse(RoomMarks, await json_body(request))
    async with request.app[keys.DB].write() as session:
        found = await assessments.save_draft(
            session, ticket.booking_id, marks.marks(), now=request.app[keys.CLOCK].now()
        )
    return _answer(found)


async def submit_assessment(request: web.Request) -> web.Response:
    """The body is the form as it stands (so a last keystroke not yet saved is not lost),
    or empty for the draft as saved."""
    ticket = await _evaluator(request, writing=True)
    marks = (
        parse(RoomMarks, await json_body(request)).marks()
        if request.can_read_body and request.content_length != 0
        else None
    )
    async with request.app[keys.DB].write() as session:
        found = await assessments.submit(
            session,
            ticket.booking_id,
            marks,
            actor=Actor("evaluator", ticket.display_name),
            now=request.app[keys.CLOCK].now(),
        )
    return _answer(found)


def setup(app: web.Application) -> None:
    app.router.add_get("/r/{token}/assessment", get_assessment, name="room.assessment")
    app.router.add_put("/r/{token}/assessment", put_assessment, name="room.assessment.save")
    app.router.add_post(
        "/r/{token}/assessment/submit", submit_assessment, name="room.assessment.submit"
    )
