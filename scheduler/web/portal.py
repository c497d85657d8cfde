"""The candidate's personal link: resolving it, and its JSON endpoints.

The HTML pages (scheduler/web/pages.py) and the JSON below share these functions, so the page
and an integrator's script see the same slots and the same booking rules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler import keys
from scheduler.availability import from_us
from scheduler.bookings import (
    SlotView,
    active_booking,
    booking_closed,
    held_booking,
)
from scheduler.errors import NotFound, SlotTaken
from scheduler.free_times import Offer
from scheduler.models import ACTIVE_STATUSES, Booking, Candidate
from scheduler.policy import lock_time
from scheduler.web import throttle
from scheduler.web.api import day_range, json_body, parse
from scheduler.web.schemas import BookingIn, CandidateSlotsQuery

DEFAULT_DAYS = 7


@dataclass(frozen=True)
class Portal:
    """What the personal link shows right now."""

    candidate: Candidate
    booking: Booking | None
    closed: bool  # past the book-by deadline
    held: bool  # an interview took place or was missed: no self-service booking any more


async def resolve(request: web.Request, session: AsyncSession) -> Candidate:
    """The candidate behind /c/{token}, or NotFound that reveals nothing."""
    candidate = await request.app[keys.LINKS].resolve_candidate(
        session, request.match_info["token"]
    )
    if candidate is None:
        await throttle.lookup_failed()
        raise NotFound("this link is not valid")
    return candidate


async def resolve_and_version(request: web.Request, session: AsyncSession) -> tuple[Candidate, int]:
    """`resolve`, with the organisation's calendar version from the same statement."""
    found = await request.app[keys.LINKS].resolve_candidate_and_version(
        session, request.match_info["token"]
    )
    if found is None:
        await throttle.lookup_failed()
        raise NotFound("this link is not valid")
    return found


async def state(request: web.Request, session: AsyncSession) -> Portal:
    candidate = await resolve(request, session)
    now = request.app[keys.CLOCK].now()
    return Portal(
        candidate,
        await active_booking(session, candidate.id),
        booking_closed(candidate, request.app[keys.POLICY], now),
        await held_booking(session, candidate.id) is not None,
    )


async def offer_between(
    request: web.Request,
    session: AsyncSession,
    candidate: Candidate,
    lo: datetime,
    hi: datetime,
    version: int | None = None,
) -> Offer:
    """The candidate's starts in [lo, hi): the process's shared free times
    (scheduler.free_times) cut to this candidate's notice, horizon and deadline."""
    app = request.app
    return await app[keys.FREE_TIMES].offer(
        session,
        candidate.organisation_id,
        candidate.language,
        app[keys.CLOCK].now(),
        lo,
        hi,
        candidate.book_by,
        version,
    )


async def slots_between(
    request: web.Request, session: AsyncSession, candidate: Candidate, lo: datetime, hi: datetime
) -> list[SlotView]:
    offer = await offer_between(request, session, candidate, lo, hi)
    interview = request.app[keys.POLICY].interview
    return [SlotView(start, start + interview) for start in map(from_us, offer.starts())]


def local_today(request: web.Request, tz: ZoneInfo) -> date:
    return request.app[keys.CLOCK].now().astimezone(tz).date()


# Time zones whose renderings one cache entry keeps; a crowd uses one or two.
_RENDERED_ZONES = 8


def _rendered(offer: Offer, tz: str, interview: timedelta) -> list[str]:
    """Each start of the offer's whole entry as its JSON object in `tz`, rendered once per
    entry and zone: formatting times was most of a warm answer's CPU."""
    key = f"slots_json:{tz}"
    fragments: list[str] | None = offer.memo.get(key)
    if fragments is None:
        zone = ZoneInfo(tz)
        fragments = [
            json.dumps(
                {
                    "start": s.astimezone(zone).isoformat(),
                    "end": (s + interview).astimezone(zone).isoformat(),
                }
            )
            for s in map(from_us, offer.free.starts)
        ]
        if sum(k.startswith("slots_json:") for k in offer.memo) < _RENDERED_ZONES:
            offer.memo[key] = fragments
    return fragments


def offer_json(offer: Offer, tz: str, interview: timedelta) -> str:
    """The text `json.dumps(slots_json(...))` gives for the same slots, cut from the memo."""
    slots = ", ".join(_rendered(offer, tz, interview)[offer.first : offer.last])
    return f'{{"timezone": {json.dumps(tz)}, "slots": [{slots}]}}'


def slots_json(slots: list[SlotView], tz: str) -> dict[str, Any]:
    zone = ZoneInfo(tz)
    return {
        "timezone": tz,
        "slots": [
            {
                "start": s.start.astimezone(zone).isoformat(),
                "end": s.end.astimezone(zone).isoformat(),
            }
            for s in slots
        ],
    }


async def make_booking(
    request: web.Request, candidate: Candidate, start: datetime
) -> tuple[Booking, Candidate]:
    return await request.app[keys.BOOKINGS].book(candidate.id, start.astimezone(UTC))


async def change_booking(
    request: web.Request, candidate: Candidate, start: datetime
) -> tuple[Booking, Candidate]:
    return await request.app[keys.BOOKINGS].reschedule(candidate.id, start.astimezone(UTC))


async def cancel_booking(request: web.Request, candidate: Candidate) -> Booking:
    booking, _ = await request.app[keys.BOOKINGS].cancel(candidate.id)
    return booking


def booking_json(request: web.Request, booking: Booking, tz: str) -> dict[str, Any]:
    zone = ZoneInfo(tz)
    links = request.app[keys.LINKS]
    active = booking.status in ACTIVE_STATUSES
    return {
        "id": str(booking.id),
        "start": booking.start_at.astimezone(zone).isoformat(),
        "end": booking.end_at.astimezone(zone).isoformat(),
        "timezone": tz,
        "status": booking.status,
        # From this instant only the organisation can move or cancel it.
        "changes_close_at": lock_time(booking.start_at, request.app[keys.POLICY])
        .astimezone(zone)
        .isoformat(),
        "room": links.room_url(booking, "candidate") if active else None,
    }


# --- JSON endpoints --------------------------------------------------------------------------


async def get_slots(request: web.Request) -> web.Response:
    q: CandidateSlotsQuery = parse(CandidateSlotsQuery, dict(request.query))
    async with request.app[keys.DB].read() as session:
        candidate, version = await resolve_and_version(request, session)
        tz = q.tz or candidate.timezone
        zone = ZoneInfo(tz)
        start = q.from_ or local_today(request, zone)
        end = q.to or start + timedelta(days=DEFAULT_DAYS - 1)
        lo, hi = day_range(start, end, zone)
        offer = await offer_between(request, session, candidate, lo, hi, version)
    body = offer_json(offer, tz, request.app[keys.POLICY].interview)
    return web.Response(text=body, content_type="application/json")


async def _with_fresh_slots(
    request: web.Request, candidate: Candidate, start: datetime, exc: SlotTaken
) -> SlotTaken:
    """The same error, carrying the slots free now, so the client can offer another time."""
    zone = ZoneInfo(candidate.timezone)
    day = start.astimezone(zone).date()
    lo, hi = day_range(day, day + timedelta(days=DEFAULT_DAYS - 1), zone)
    async with request.app[keys.DB].read() as session:
        fresh = await slots_between(request, session, candidate, lo, hi)
    return SlotTaken(exc.detail, **slots_json(fresh, candidate.timezone))


async def post_booking(request: web.Request) -> web.Response:
    """Book: 201 with the booking, 409 with fresh slots, 404 for a link that is not valid.

    The link is checked on the candidate's row inside the booking's own transaction
    (scheduler.links.CandidateCheck): one connection and one read fewer per confirmation
    than resolving it first."""
    body: BookingIn = parse(BookingIn, await json_body(request))
    check = request.app[keys.LINKS].candidate_check(request.match_info["token"])
    if check is None:
        await throttle.lookup_failed()
        raise NotFound("this link is not valid")
    try:
        booking, candidate = await request.app[keys.BOOKINGS].book(
            check.candidate_id, body.start.astimezone(UTC), accepts=check.accepts
        )
    except NotFound:
        await throttle.lookup_failed()
        raise
    except SlotTaken as exc:
        async with request.app[keys.DB].read() as session:
            candidate = await resolve(request, session)
        raise await _with_fresh_slots(request, candidate, body.start, exc) from exc
    return web.json_response(booking_json(request, booking, candidate.timezone), status=201)


async def put_booking(request: web.Request) -> web.Response:
    """Reschedule: 200 with the moved booking, 409 with fresh slots, 403 inside the lock."""
    body: BookingIn = parse(BookingIn, await json_body(request))
    async with request.app[keys.DB].read() as session:
        candidate = await resolve(request, session)
    try:
        booking, candidate = await change_booking(request, candidate, body.start)
    except SlotTaken as exc:
        raise await _with_fresh_slots(request, candidate, body.start, exc) from exc
    return web.json_response(booking_json(request, booking, candidate.timezone))


async def delete_booking(request: web.Request) -> web.Response:
    async with request.app[keys.DB].read() as session:
        candidate = await resolve(request, session)
    booking = await cancel_booking(request, candidate)
    return web.json_response(booking_json(request, booking, candidate.timezone))


def setup(app: web.Application) -> None:
    app.router.add_get("/c/{token}/slots", get_slots)
    app.router.add_post("/c/{token}/booking", post_booking)
    app.router.add_put("/c/{token}/booking", put_booking)
    app.router.add_delete("/c/{token}/booking", delete_booking)
