"""The room page: `GET /r/{token}`, the shell a participant's browser runs the interview in,
and `GET /r/{token}/info`, the facts it renders before joining (docs/rooms.md).

The page is rendered in the participant's language and time zone (the ticket's, or `?lang=`
and `?tz=`), then the modules of `templates/static/room/` do the rest against the room protocol
(docs/rooms.md): the device check, the countdown to the room's window, the WebSocket, the
peer connection, the lobby and, for the evaluator, the interview's panel.

What the page holds depends on who opens it and when:

* a link that does not resolve (unknown, mistyped, revoked, cancelled, or the candidate's
  once the booking is held: no_show, completed) gets the same "not found" page as any other
  bad link, revealing nothing;
* outside the window, the page has the date, a countdown and the device check, never the
  call: when the window opens, the script fetches this page again and takes the call from it;
* the evaluator's controls (admission, ID check, steps, notes, end) are rendered only into
  the evaluator's page, never into the candidate's.

Every sentence lives in the templates (templates/rooms/, French in rooms.po), including the
ones the script shows, which travel in a JSON data block (no inline script: the CSP is strict).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from rooms.models import load_state, record_consent
from rooms.room import Ticket
from rooms.signaling import room_info
from scheduler import keys
from scheduler.i18n import LOCALES, zone_label
from scheduler.web import pages, security
from scheduler.web.calendar_view import LANGUAGE_NAMES, read_choices
from scheduler.web.problems import problem

log = logging.getLogger("viva.rooms.page")

ROOM_PAGE = "room.page"
# `?ice=relay`: the browser may reach the server through TURN relays only, so a test can
# prove media crosses the TURN server (tests/test_deployment.py). Dev mode only: elsewhere
# the page refuses it (400).
RELAY_SWITCH = ("ice", "relay")


def _lang_links(request: web.Request, locale: str) -> list[dict[str, Any]]:
    return [
        {
            "code": code,
            "label": LANGUAGE_NAMES[code],
            "url": str(request.rel_url.update_query(lang=code)),
            "current": code == locale,
        }
        for code in LOCALES
    ]


async def _ended(app: web.Application, ticket: Ticket) -> bool:
    """Whether the interview has ended (its stored room state); False when unsure."""
    try:
        async with app[keys.DB].read() as session:
            state = await load_state(session, ticket.booking_id)
    except Exception:
        log.exception("could not read the room state of a booking")
        return False
    return state.ended_at is not None


# The recording notice a participant consents to, as the room page shows it.
NOTICE = (
    "This interview is recorded.",
    "The video and sound of both participants are recorded from the moment the candidate "
    "is let in.",
)


def notice_version(app: web.Application, locale: str) -> str:
    """The SHA-256 of the notice in `locale`: what a consent row says was agreed to, so a
    changed text is told apart from the one a participant saw."""
    catalog = app[keys.CATALOGS].get(locale)
    text = " ".join(catalog.gettext(sentence) for sentence in NOTICE)
    return hashlib.sha256(text.encode()).hexdigest()


async def consent_handler(request: web.Request) -> web.Response:
    """`POST /r/{token}/consent` `{"notice": "<version>"}`: the page's checkbox, stored
    before the page connects (a recorded room seats nobody without it)."""
    app = request.app
    ticket = await app[keys.ROOM_TICKETS].resolve(request.match_info["token"])
    if ticket is None:
        return problem(404, "This link is not valid.")
    try:
        body = await request.json()
    except ValueError:
        body = None
    notice = body.get("notice") if isinstance(body, dict) else None
    if notice not in {notice_version(app, locale) for locale in LOCALES}:
        return problem(422, "Consent to the notice shown on the room page (`notice`).")
    async with app[keys.DB].write() as session:
        await record_consent(
            session,
            ticket.booking_id,
            ticket.role,
            ticket.display_name,
            notice,
            app[keys.CLOCK].now(),
        )
    return web.Response(status=204)


def _minutes(start: datetime, end: datetime) -> int:
    return round((end - start).total_seconds() / 60)


async def room_page(request: web.Request) -> web.Response:
    app = request.app
    token = request.match_info["token"]
    try:
        ticket = await app[keys.ROOM_TICKETS].resolve(token)
    except Exception:
        log.exception("could not resolve a room link")
        return pages.error_page(request, 500, "generic")
    if ticket is None:
        # The very page any other bad link gets (headers included): nothing tells why.
        return pages.error_page(request, 404, "not_found")

    reader = read_choices(request.query, ticket.locale, ticket.timezone)
    relay_only = request.query.get(RELAY_SWITCH[0])
    if relay_only is not None and (
        relay_only != RELAY_SWITCH[1] or not app[keys.SETTINGS].server.dev_mode
    ):
        # A test switch in production: refused, so nobody can be tricked into a room that
        # behaves differently from the one the organisation configured.
        return pages.error_page(request, 400, "test_switch", reader)
    now = app[keys.CLOCK].now()
    settings = app[keys.SETTINGS].rooms
    info = room_info(ticket, settings, now, token)
    # Only the candidate is turned away once the interview ended; the evaluator may still
    # come back to finish the notes until the room closes.
    window = info["window"]
    if ticket.role == "candidate":
        if ticket.held == "no_show":
            window = "missed"
        elif ticket.held is not None or await _ended(app, ticket):
            window = "ended"
    page_path = str(app.router[ROOM_PAGE].url_for(token=token))
    data = {
        **{key: info[key] for key in ("role", "start", "end", "opens_at", "closes_at", "now")},
        "window": window,
        "interview": info["interview"],
        "recording": info["recording"],
        "notice": notice_version(app, reader.locale),
        # "relay": the browser uses TURN relays only (RTCConfiguration.iceTransportPolicy).
        "ice_transport_policy": "relay" if relay_only else "all",
        "name": ticket.display_name,
        "other_name": ticket.other_name,
        "locale": reader.locale,
        "timezone": reader.tz,
        "urls": {
            "page": page_path,
            "info": f"{page_path}/info",
            "websocket": info["websocket"],
            # The connection test: the server sends the page's own media back.
            "echo": f"{page_path}/echo",
            "consent": f"{page_path}/consent",
            # The evaluator's assessment form (scheduler/web/assessment_pages.py).
            **({"assessment": f"{page_path}/assessment"} if ticket.role == "evaluator" else {}),
        },
    }
    context = {
        **pages.translations(app, reader.locale),
        "reader": reader,
        "tz": reader.tz,
        "zone_label": zone_label(
            reader.tz, reader.locale, ticket.start, app[keys.CATALOGS].get(reader.locale)
        ),
        "lang_links": _lang_links(request, reader.locale),
        "notice_tz": reader.rejected_tz,
        "ticket": ticket,
        "role": ticket.role,
        "evaluator": ticket.role == "evaluator",
        "window": window,
        # Nothing left to prepare: the device check and the "how it goes" advice step aside.
        "over": window in ("ended", "missed", "too_late"),
        "call": window == "open",
        "start": ticket.start,
        "end": ticket.end,
        "opens_at": datetime.fromisoformat(info["opens_at"]),
        "closes_at": datetime.fromisoformat(info["closes_at"]),
        "minutes": _minutes(ticket.start, ticket.end),
        "open_before": settings.open_before_minutes,
        "target_minutes": settings.interview_target_minutes,
        "recording": info["recording"],
        "steps": info["interview"]["steps"],
        "data": data,
    }
    response = aiohttp_jinja2.render_template("rooms/room.html", request, context)
    # Its CSP (the WebSocket origins) and device permissions: scheduler.web.security.
    response[security.POLICY] = security.ROOM_POLICY
    return response


async def room_info_handler(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    try:
        ticket = await request.app[keys.ROOM_TICKETS].resolve(token)
    except Exception:
        log.exception("could not resolve a room link")
        return problem(500, "The server could not answer; try again.")
    if ticket is None:
        return problem(404, "This link is not valid.")
    now = request.app[keys.CLOCK].now()
    body = room_info(ticket, request.app[keys.SETTINGS].rooms, now, token)
    # No headers of its own: the link is a secret in the URL, and scheduler.web.security
    # gives every /r/ answer `no-store` and `no-referrer`.
    return web.json_response(body)


def setup(app: web.Application) -> None:
    app.router.add_get("/r/{token}", room_page, name=ROOM_PAGE)
    app.router.add_get("/r/{token}/info", room_info_handler, name="room.info")
    app.router.add_post("/r/{token}/consent", consent_handler, name="room.consent")
