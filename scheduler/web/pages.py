"""The candidate's pages behind the personal link (server-rendered, work without JavaScript).

The candidate books in two steps, as the CLOE guide describes: pick a green slot (a plain link),
then confirm it (a plain form). Both are ordinary HTML so that any browser, a screen reader or
a phone with JavaScript off can book; viva.js only *offers* the browser's time zone.

Until the lock (change_lock_hours before the start) the booked page offers the same two steps to
move the interview (the calendar with `?change=1`, then a confirm step posting to /reschedule)
and a confirm step to cancel it (posting to /cancel). The lock is decided again on every request,
whatever the page showed: inside it the answer is a 403 page explaining the lock, with the
organisation's contact for force majeure.

Every user-facing sentence lives in the templates (so the i18n test can prove each one has a
French translation); this module only decides which page to show and builds the view data.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler import keys
from scheduler.bookings import SlotView, active_booking
from scheduler.calendars import load_calendars
from scheduler.errors import (
    AlreadyBooked,
    Busy,
    DeadlinePassed,
    Locked,
    NoBooking,
    SlotTaken,
    VivaError,
)
from scheduler.i18n import (
    LOCALES,
    negotiate,
    zone_label,
)
from scheduler.models import Booking, Candidate, Organisation
from scheduler.policy import Policy, is_locked, lock_time
from scheduler.slots import find_slots
from scheduler.web import portal
from scheduler.web.calendar_view import (
    BOOK,
    CANCEL,
    CONFIRM,
    LANGUAGE_NAMES,
    PAGE,
    RESCHEDULE,
    Reader,
    calendar_context,
    deadline,
    iso_utc,
    parse_start,
    read_choices,
)
from scheduler.web.problems import is_json_path

log = logging.getLogger("viva.pages")


# One-shot notices after a form's 303, named by the query flag that asks for them.
FLASH_BOOKED = "booked"
FLASH_CHANGED = "changed"
FLASH_CANCELLED = "cancelled"


def _link(request: web.Request, name: str, reader: Reader, **query: str | None) -> str:
    """A URL on this candidate's link keeping the reader's explicit choices."""
    params = {**reader.carry, **{k: v for k, v in query.items() if v is not None}}
    url = request.app.router[name].url_for(token=request.match_info["token"])
    return str(url.with_query(params) if params else url)


def _calendar(
    request: web.Request,
    reader: Reader,
    slots: list[SlotView],
    now: datetime,
    current: Booking | None = None,
) -> dict[str, Any]:
    """The calendar's view data (scheduler.web.calendar_view) for this request."""
    app = request.app
    return calendar_context(
        functools.partial(_link, request),
        reader,
        slots,
        now,
        horizon=app[keys.POLICY].horizon,
        week=request.query.get("week"),
        offer_zone="tz" not in request.query,
        translations=app[keys.CATALOGS].get(reader.locale),
        current=current,
    )


def _lang_links(request: web.Request, reader: Reader) -> list[dict[str, Any]]:
    """The same page in each language; a POST answer links to the calendar instead."""
    out = []
    for code in LOCALES:
        if request.method in ("GET", "HEAD"):
            url = str(request.rel_url.update_query(lang=code))
        else:
            url = _link(request, PAGE, Reader(code, reader.tz, {**reader.carry, "lang": code}))
        out.append(
            {
                "code": code,
                "label": LANGUAGE_NAMES[code],
                "url": url,
                "current": code == reader.locale,
            }
        )
    return out


# --- rendering ---------------------------------------------------------------------------


def translations(app: web.Application, locale: str) -> dict[str, Any]:
    return app[keys.CATALOGS].context(locale)


def render(
    request: web.Request,
    template: str,
    reader: Reader,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
) -> web.Response:
    ctx: dict[str, Any] = {
        **translations(request.app, reader.locale),
        "reader": reader,
        "tz": reader.tz,
        "zone_label": zone_label(
            reader.tz,
            reader.locale,
            # The offset of the time the page is about (a booking, a week), else today's.
            (context or {}).get("zone_at") or request.app[keys.CLOCK].now(),
            request.app[keys.CATALOGS].get(reader.locale),
        ),
        "lang_links": _lang_links(request, reader),
        "org": None,
        **(context or {}),
    }
    # No-store, no-referrer, the CSP that forbids framing: scheduler.web.security, for every page.
    return aiohttp_jinja2.render_template(f"pages/{template}", request, ctx, status=status)


def error_page(
    request: web.Request,
    status: int,
    kind: str,
    reader: Reader | None = None,
    **context: Any,
) -> web.Response:
    """A readable error in the reader's language; without a reader, Accept-Language decides."""
    if reader is None:
        fallback = negotiate(request.headers.get("Accept-Language"))
        reader = read_choices(request.query, fallback, "UTC")
    return render(
        request, "error.html", reader, {"kind": kind, "status": status, **context}, status=status
    )


async def _organisation(session: AsyncSession, candidate: Candidate) -> Organisation | None:
    return await session.get(Organisation, candidate.organisation_id)


def _locked(booking: Booking, now: datetime, policy: Policy) -> bool:
    """Inside the lock, by the clock; a stored "locked" status counts too, never the reverse."""
    return booking.status == "locked" or is_locked(booking.start_at, now, policy)


def _changing(reader: Reader) -> Reader:
    """The reader, with change mode carried by every calendar and confirm link."""
    return replace(reader, carry={**reader.carry, "change": "1"})


def _minutes(start: datetime, end: datetime) -> int:
    return round((end - start).total_seconds() / 60)


async def _change_slots(
    request: web.Request,
    session: AsyncSession,
    candidate: Candidate,
    booking: Booking,
    lo: datetime,
    hi: datetime,
) -> list[SlotView]:
    """The times the booking could move to: the slot engine with the booking itself set aside
    (as the reschedule transaction does), so its neighbouring times are offered too; its own
    time is left out, since moving there would change nothing."""
    app = request.app
    calendars = await load_calendars(
        session, candidate.organisation_id, candidate.language, lo, hi, exclude=booking.id
    )
    found = find_slots(
        calendars, app[keys.POLICY], app[keys.CLOCK].now(), lo, hi, candidate.book_by
    )
    return [SlotView(s.start, s.end) for s in found if s.start != booking.start_at]


def locked_page(
    request: web.Request,
    reader: Reader,
    org: Organisation | None,
    booking: Booking | None,
) -> web.Response:
    """403: changes are closed; only the organisation can still act, for force majeure."""
    policy = request.app[keys.POLICY]
    return error_page(
        request,
        403,
        "locked",
        reader,
        org=org,
        calendar_url=_link(request, PAGE, reader),
        lock_hours=policy.change_lock_hours,
        lock_at=lock_time(booking.start_at, policy) if booking is not None else None,
    )


def slot_taken_page(
    request: web.Request,
    reader: Reader,
    org: Organisation | None,
    start: datetime,
    booking: Booking | None,
) -> web.Response:
    """409 while changing: the chosen time went; the booking stays where it was."""
    week = start.astimezone(ZoneInfo(reader.tz)).date().isoformat()
    return error_page(
        request,
        409,
        "slot_taken_change",
        reader,
        org=org,
        calendar_url=_link(request, PAGE, _changing(reader), week=week),
        page_url=_link(request, PAGE, reader),
        current=booking,
    )


# --- handlers ----------------------------------------------------------------------------


async def candidate_page(request: web.Request) -> web.Response:
    app = request.app
    now = app[keys.CLOCK].now()
    policy = app[keys.POLICY]
    async with app[keys.DB].read() as session:
        state = await portal.state(request, session)
        candidate = state.candidate
        reader = read_choices(request.query, candidate.locale, candidate.timezone)
        org = await _organisation(session, candidate)
        booking = state.booking
        flashes = (FLASH_BOOKED, FLASH_CHANGED) if booking else (FLASH_CANCELLED,)
        base = {
            "org": org,
            "candidate": candidate,
            "deadline": deadline(candidate.book_by, reader.tz, reader.locale),
            "notice_tz": reader.rejected_tz,
            "flash": next((f for f in flashes if request.query.get(f) == "1"), None),
        }
        if booking is not None:
            locked = _locked(booking, now, policy)
            if request.query.get("change") == "1" and not locked:
                slots = await _change_slots(
                    request, session, candidate, booking, now, now + policy.horizon
                )
                nav = _changing(reader)
                return render(
                    request,
                    "calendar.html",
                    reader,
                    {
                        **base,
                        **_calendar(request, nav, slots, now, current=booking),
                        "minutes": policy.interview_minutes,
                        "change": True,
                        "booking": booking,
                        "page_url_back": _link(request, PAGE, reader),
                        "slot_count": len(slots),
                    },
                )
            return render(
                request,
                "booked.html",
                reader,
                {
                    **base,
                    "booking": booking,
                    "zone_at": booking.start_at,
                    "minutes": _minutes(booking.start_at, booking.end_at),
                    "room_url": app[keys.LINKS].room_url(booking, "candidate"),
                    "locked": locked,
                    "lock_at": lock_time(booking.start_at, policy),
                    "lock_hours": policy.change_lock_hours,
                    "change_url": None if locked else _link(request, PAGE, _changing(reader)),
                    "cancel_url": None if locked else _link(request, CANCEL, reader),
                },
            )
        if state.held:
            return render(request, "unavailable.html", reader, {**base, "reason": "held"})
        if state.closed:
            return render(request, "unavailable.html", reader, {**base, "reason": "deadline"})
        # One slot search over the whole horizon feeds the week, the month counts and the
        # "nothing available" decision alike.
        slots = await portal.slots_between(request, session, candidate, now, now + policy.horizon)
    if not slots:
        return render(request, "unavailable.html", reader, {**base, "reason": "no_slots"})
    return render(
        request,
        "calendar.html",
        reader,
        {
            **base,
            **_calendar(request, reader, slots, now),
            "minutes": policy.interview_minutes,
            "change": False,
        },
    )


async def confirm_page(request: web.Request) -> web.Response:
    """The second step, before booking or before moving the booking (`?change=1`)."""
    app = request.app
    now = app[keys.CLOCK].now()
    policy = app[keys.POLICY]
    async with app[keys.DB].read() as session:
        state = await portal.state(request, session)
        candidate = state.candidate
        booking = state.booking
        reader = read_choices(request.query, candidate.locale, candidate.timezone)
        # Changing needs a booking; without one (cancelled in another tab) this is a booking.
        change = booking is not None and request.query.get("change") == "1"
        if (booking is not None and not change) or (
            booking is None and (state.closed or state.held)
        ):
            raise web.HTTPSeeOther(_link(request, PAGE, reader))
        org = await _organisation(session, candidate)
        if booking is not None and _locked(booking, now, policy):
            return locked_page(request, reader, org, booking)
        nav = _changing(reader) if change else reader
        start = parse_start(request.query.get("start"))
        calendar_url = _link(request, PAGE, nav)
        if start is None:
            return error_page(
                request, 400, "bad_request", reader, org=org, calendar_url=calendar_url
            )
        if booking is not None and start == booking.start_at:
            raise web.HTTPSeeOther(_link(request, PAGE, reader))  # nothing to change
        day = start.astimezone(ZoneInfo(reader.tz)).date().isoformat()
        week_url = _link(request, PAGE, nav, week=day)
        # A window of one microsecond: the slot engine answers "is this exact start free".
        window = (start, start + timedelta(microseconds=1))
        if booking is not None:
            free = await _change_slots(request, session, candidate, booking, *window)
        else:
            free = await portal.slots_between(request, session, candidate, *window)
    if not free:
        if booking is not None:
            return slot_taken_page(request, reader, org, start, booking)
        return error_page(request, 409, "slot_taken", reader, org=org, calendar_url=week_url)
    action = RESCHEDULE if booking is not None else BOOK
    return render(
        request,
        "confirm.html",
        reader,
        {
            "org": org,
            "slot": free[0],
            "zone_at": free[0].start,
            "current": booking,
            "start_value": iso_utc(start),
            "minutes": policy.interview_minutes,
            "action_url": _link(request, action, Reader(reader.locale, reader.tz)),
            "calendar_url": week_url,
            "page_url": _link(request, PAGE, reader),
            "notice_tz": reader.rejected_tz,
            # Booking or moving into the lock window closes changes at once: say so first.
            "lock_warning": is_locked(free[0].start, now, policy),
            "lock_hours": policy.change_lock_hours,
        },
    )


_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def _form(request: web.Request) -> Mapping[str, Any]:
    return await request.post() if request.content_type in _FORM_TYPES else {}


@dataclass(frozen=True)
class _Posted:
    """What every form handler starts from: who posted, their organisation, their active
    booking (when the form acts on it), the form, and the reader's choices in it."""

    candidate: Candidate
    org: Organisation | None
    booking: Booking | None
    form: Mapping[str, Any]
    reader: Reader


async def _posted(request: web.Request, *, with_booking: bool) -> _Posted:
    async with request.app[keys.DB].read() as session:
        candidate = await portal.resolve(request, session)
        org = await _organisation(session, candidate)
        booking = await active_booking(session, candidate.id) if with_booking else None
    form = await _form(request)
    reader = read_choices(form, candidate.locale, candidate.timezone)
    return _Posted(candidate, org, booking, form, reader)


async def book_form(request: web.Request) -> web.Response:
    posted = await _posted(request, with_booking=False)
    candidate, org, form, reader = posted.candidate, posted.org, posted.form, posted.reader
    calendar_url = _link(request, PAGE, reader)
    start = parse_start(form.get("start"))
    if start is None:
        return error_page(request, 400, "bad_request", reader, org=org, calendar_url=calendar_url)
    week = start.astimezone(ZoneInfo(reader.tz)).date().isoformat()
    try:
        await portal.make_booking(request, candidate, start)
    except SlotTaken:
        url = _link(request, PAGE, reader, week=week)
        return error_page(request, 409, "slot_taken", reader, org=org, calendar_url=url)
    except AlreadyBooked:
        return error_page(
            request, 409, "already_booked", reader, org=org, calendar_url=calendar_url
        )
    except DeadlinePassed:
        return error_page(request, 409, "deadline", reader, org=org, calendar_url=calendar_url)
    raise web.HTTPSeeOther(_link(request, PAGE, reader, **{FLASH_BOOKED: "1"}))


async def reschedule_form(request: web.Request) -> web.Response:
    """Move the booking. The new time is secured before the old one is released (one
    transaction in scheduler.bookings), so every refusal leaves the booking as it was."""
    app = request.app
    posted = await _posted(request, with_booking=True)
    candidate, org, booking, reader = posted.candidate, posted.org, posted.booking, posted.reader
    page_url = _link(request, PAGE, reader)
    if booking is None:
        raise web.HTTPSeeOther(page_url)  # nothing to move: the page offers the calendar
    start = parse_start(posted.form.get("start"))
    if start is None:
        calendar_url = _link(request, PAGE, _changing(reader))
        return error_page(request, 400, "bad_request", reader, org=org, calendar_url=calendar_url)
    if start == booking.start_at:
        # Moving to the same time changes nothing, but the lock still answers first.
        if _locked(booking, app[keys.CLOCK].now(), app[keys.POLICY]):
            return locked_page(request, reader, org, booking)
        raise web.HTTPSeeOther(page_url)
    try:
        await portal.change_booking(request, candidate, start)
    except Locked:
        return locked_page(request, reader, org, booking)
    except SlotTaken:
        return slot_taken_page(request, reader, org, start, booking)
    except NoBooking:
        raise web.HTTPSeeOther(page_url) from None
    raise web.HTTPSeeOther(_link(request, PAGE, reader, **{FLASH_CHANGED: "1"}))


async def cancel_page(request: web.Request) -> web.Response:
    """The confirm step before cancelling: restates the time and what cancelling means."""
    app = request.app
    now = app[keys.CLOCK].now()
    async with app[keys.DB].read() as session:
        state = await portal.state(request, session)
        candidate = state.candidate
        booking = state.booking
        reader = read_choices(request.query, candidate.locale, candidate.timezone)
        if booking is None:
            raise web.HTTPSeeOther(_link(request, PAGE, reader))
        org = await _organisation(session, candidate)
    if _locked(booking, now, app[keys.POLICY]):
        return locked_page(request, reader, org, booking)
    return render(
        request,
        "cancel.html",
        reader,
        {
            "org": org,
            "booking": booking,
            "zone_at": booking.start_at,
            "minutes": _minutes(booking.start_at, booking.end_at),
            "deadline": deadline(candidate.book_by, reader.tz, reader.locale),
            # Whether a new time could still be booked once this one is given up.
            "can_rebook": not (state.closed or state.held),
            "action_url": _link(request, CANCEL, Reader(reader.locale, reader.tz)),
            "page_url": _link(request, PAGE, reader),
            "change_url": _link(request, PAGE, _changing(reader)),
            "notice_tz": reader.rejected_tz,
        },
    )


async def cancel_form(request: web.Request) -> web.Response:
    posted = await _posted(request, with_booking=True)
    candidate, org, booking, reader = posted.candidate, posted.org, posted.booking, posted.reader
    page_url = _link(request, PAGE, reader)
    try:
        await portal.cancel_booking(request, candidate)
    except Locked:
        return locked_page(request, reader, org, booking)
    except NoBooking:
        raise web.HTTPSeeOther(page_url) from None
    raise web.HTTPSeeOther(_link(request, PAGE, reader, **{FLASH_CANCELLED: "1"}))


async def to_page(request: web.Request) -> web.Response:
    """A reloaded or bookmarked form target: send the reader to their page, not to a 405."""
    raise web.HTTPSeeOther(_link(request, PAGE, read_choices(request.query, "", "UTC")))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """People get a page in their language, never a traceback or aiohttp's plain text.

    Only for /c/… pages: the API and the candidate JSON endpoints keep problem+json
    (scheduler.web.problems). A 404 says nothing about why, so a revoked link and a mistyped one
    look the same.
    """
    if not request.path.startswith("/c/") or is_json_path(request.path):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_page(request, exc.status, "not_found" if exc.status == 404 else "generic")
    except Busy as exc:
        page = error_page(request, exc.status, "busy")
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    except VivaError as exc:
        kind = {404: "not_found", 400: "bad_request", 422: "bad_request"}.get(exc.status)
        return error_page(request, exc.status, kind or "generic")
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_page(request, 500, "generic")


def static_url(app: web.Application, filename: str) -> str:
    """A versioned /static/ URL, so browsers refetch CSS and JS when they change."""
    return str(app.router["static"].url_for(filename=filename))


def setup(app: web.Application) -> None:
    portal.setup(app)
    app.router.add_get("/c/{token}", candidate_page, name=PAGE)
    app.router.add_get("/c/{token}/confirm", confirm_page, name=CONFIRM)
    app.router.add_post("/c/{token}/book", book_form, name=BOOK)
    app.router.add_get("/c/{token}/book", to_page)
    app.router.add_post("/c/{token}/reschedule", reschedule_form, name=RESCHEDULE)
    app.router.add_get("/c/{token}/reschedule", to_page)
    app.router.add_get("/c/{token}/cancel", cancel_page, name=CANCEL)
    app.router.add_post("/c/{token}/cancel", cancel_form)
    app[keys.JINJA].globals["static_url"] = functools.partial(static_url, app)
