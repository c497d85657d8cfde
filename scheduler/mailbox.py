"""The mail delivery worker's life in the app, and the dev mailbox at /dev/mail.

The worker is the mailer's `Outbox`; this module starts it with the app, wakes it after a
booking commits, and stops it cleanly. In dev mode (no SMTP host) every message is kept and
shown at /dev/mail, so a person trying Viva reads each e-mail, opens its links and
downloads its invitation.
"""

from __future__ import annotations

import asyncio
import email
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.policy import default

import aiohttp_jinja2
from aiohttp import web

from mailer.outbox import Outbox, StoredMessage, get_message, list_messages
from scheduler import keys
from scheduler.config import Settings
from scheduler.leases import lease_clock

log = logging.getLogger("viva.mailer")


class MailWorker:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.outbox.run(self._stop, self._wake))

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


def worker_name(settings: Settings) -> str:
    """Who this process's mail worker is across restarts: its host and port (two processes
    on one host listen on different ports)."""
    return f"{socket.gethostname()}:{settings.server.port}"


async def mail_worker(app: web.Application) -> AsyncIterator[None]:
    db = app[keys.DB]
    metrics = app[keys.METRICS]
    outbox = Outbox(
        db.writer_sessions,
        app[keys.SETTINGS].smtp,
        app[keys.CLOCK],
        owner=worker_name(app[keys.SETTINGS]),
        lease_now=lease_clock(db.sqlite, app[keys.CLOCK]),
        on_failed=metrics.mail_failed.inc,
        on_lease_lost=metrics.mail_leases_lost.inc,
    )
    worker = MailWorker(outbox)
    app[keys.MAIL] = worker
    try:
        await outbox.reclaim_own()
    except Exception:  # the database may come later; leases then end on their own
        log.exception("mail: could not take back this worker's previous claims")
    worker.start()
    yield
    await worker.stop()


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
    # Shown inside a sandboxed iframe; the CSP forbids scripts and remote loads.
    return web.Response(
        text=html,
        content_type="text/html",
        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
    )


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
