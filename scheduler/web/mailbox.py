"""The dev mailbox at /dev/mail.

In dev mode (no SMTP host) every message is kept and shown at /dev/mail, so a person trying
Viva reads each e-mail, opens its links and downloads its invitation. The worker that sends
them lives in scheduler/mail_worker.py.
"""

from __future__ import annotations

import email
import uuid
from email.message import EmailMessage
from email.policy import default

import aiohttp_jinja2
from aiohttp import web

from mailer.outbox import StoredMessage, get_message, list_messages
from scheduler import keys
from scheduler.web import security


def _parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=default)  # type: ignore[return-value]


def _parts(message: EmailMessage) -> tuple[str, str, bytes | None]:
    text = html = ""
    ics: bytes | None = None
    for part in message.walk():
        ctype = part.get_content_type()
        if ctype == "text/plain" and not text:
            text = part.get_content()
        elif ctype == "text/html" and not html:
            html = part.get_content()
        elif part.get_filename() == "invite.ics":
            payload = part.get_payload(decode=True)
            ics = payload if isinstance(payload, bytes) else None
    return text, html, ics


async def mailbox(request: web.Request) -> web.Response:
    async with request.app[keys.DB].read() as session:
        messages = await list_messages(session, limit=200)
    return aiohttp_jinja2.render_template(
        "pages/dev_mail.html",
        request,
        {"messages": messages, "current": None, **request.app[keys.CATALOGS].context("en")},
    )


async def _stored(request: web.Request) -> tuple[StoredMessage, EmailMessage]:
    try:
        ident = uuid.UUID(request.match_info["id"])
    except ValueError as exc:
        raise web.HTTPNotFound() from exc
    async with request.app[keys.DB].read() as session:
        stored = await get_message(session, ident)
    if stored is None:
        raise web.HTTPNotFound()
    return stored, _parse(stored.raw)


async def message_page(request: web.Request) -> web.Response:
    stored, message = await _stored(request)
    text, html, ics = _parts(message)
    async with request.app[keys.DB].read() as session:
        messages = await list_messages(session, limit=200)
    return aiohttp_jinja2.render_template(
        "pages/dev_mail.html",
        request,
        {
            "messages": messages,
            "current": stored,
            "headers": list(message.items()),
            "text": text,
            "html": html,
            "has_ics": ics is not None,
            **request.app[keys.CATALOGS].context("en"),
        },
    )


async def message_html(request: web.Request) -> web.Response:
    _, message = await _stored(request)
    _, html, _ = _parts(message)
    # Shown inside a sandboxed iframe; its CSP (scheduler.web.security) forbids scripts and
    # remote loads.
    response = web.Response(text=html, content_type="text/html")
    response[security.POLICY] = security.MAIL_POLICY
    return response


async def message_ics(request: web.Request) -> web.Response:
    _, message = await _stored(request)
    _, _, ics = _parts(message)
    if ics is None:
        raise web.HTTPNotFound()
    return web.Response(
        body=ics,
        content_type="text/calendar",
        headers={"Content-Disposition": 'attachment; filename="invite.ics"'},
    )


async def message_eml(request: web.Request) -> web.Response:
    stored, _ = await _stored(request)
    return web.Response(
        body=stored.raw,
        content_type="message/rfc822",
        headers={"Content-Disposition": 'attachment; filename="message.eml"'},
    )


def setup_dev_mailbox(app: web.Application) -> None:
    app.router.add_get("/dev/mail", mailbox)
    # aiohttp tries routes in order and `{id}` matches "x.eml" too, so the .eml route must
    # come first (and `{id}` is limited to what an id looks like: no dot).
    app.router.add_get("/dev/mail/{id}.eml", message_eml)
    app.router.add_get("/dev/mail/{id:[^/.]+}", message_page)
    app.router.add_get("/dev/mail/{id}/html", message_html)
    app.router.add_get("/dev/mail/{id}/invite.ics", message_ics)
