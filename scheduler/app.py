"""The one place the aiohttp application is assembled."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp_jinja2
from aiohttp import web

from mailer.models import seal_messages
from rooms.tokens import LinkSigner
from scheduler import keys, room_wiring, timers
from scheduler.booking_service import BookingService
from scheduler.clock import Clock, SystemClock
from scheduler.config import Settings, secret_key
from scheduler.confirmations import confirmations_sweeper
from scheduler.contention import Contention
from scheduler.credentials import CredentialBox, MessageBox
from scheduler.db import Database
from scheduler.effects import AfterCommit, MailAndTimers
from scheduler.external_calendars import calendar_sync
from scheduler.free_times import FreeTimes
from scheduler.i18n import TEMPLATES, Catalogs, create_env
from scheduler.links import Links
from scheduler.mail_worker import mail_worker
from scheduler.metrics import Metrics
from scheduler.notify import Notifier
from scheduler.result_notify import ResultMailer
from scheduler.retention_runs import retention_ctx
from scheduler.timers import replanner, timers_ctx
from scheduler.verification import CodeMaker
from scheduler.web import (
    api,
    assessment_pages,
    feeds,
    health,
    home,
    metrics,
    openapi,
    pages,
    result_pages,
    room_pages,
    security,
    throttle,
)
from scheduler.web.mailbox import setup_dev_mailbox
from scheduler.web.problems import api_errors
from scheduler.webhooks.wiring import webhooks_ctx


def create_app(settings: Settings, *, clock: Clock | None = None) -> web.Application:
    # Booking confirmations are measured outermost, on the answer people get; cross-site
    # posts are refused and guessers throttled before anything else runs; then JSON paths
    # get problem+json, people's pages get a readable page in their language.
    app = web.Application(
        middlewares=[
            metrics.booking_edge,
            security.refuse_cross_site,
            throttle.guard,
            api_errors,
            pages.error_pages,
        ],
        client_max_size=256 * 1024,
    )
    app[keys.SETTINGS] = settings
    app[keys.METRICS] = Metrics()
    security.setup(app)
    throttle.setup(app)
    app[keys.CLOCK] = clock or SystemClock()
    app[keys.POLICY] = settings.policy.to_policy()
    app[keys.CONTENTION] = Contention()
    app[keys.METRICS].watch_contention(app[keys.CONTENTION])
    app[keys.LINKS] = Links(LinkSigner(secret_key(settings)), settings.server.base_url)
    app[keys.CREDENTIALS] = CredentialBox(secret_key(settings))
    app[keys.CATALOGS] = Catalogs.load()
    env = create_env()
    app[keys.JINJA] = env
    aiohttp_jinja2.setup(app, loader=env.loader, autoescape=True)
    app[aiohttp_jinja2.APP_KEY] = env

    app[keys.NOTIFIER] = Notifier(
        env, app[keys.CATALOGS], app[keys.LINKS], app[keys.POLICY], settings.smtp
    )
    app[keys.RESULT_MAILER] = ResultMailer(env, app[keys.CATALOGS], app[keys.LINKS], settings.smtp)
    app[keys.CODES] = CodeMaker(secret_key(settings))
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(mail_worker)
    app.cleanup_ctx.append(webhooks_ctx)
    app.cleanup_ctx.append(confirmations_sweeper)
    app.cleanup_ctx.append(timers_ctx)
    app.cleanup_ctx.append(retention_ctx)
    app.cleanup_ctx.append(_booking_service)
    app.cleanup_ctx.append(calendar_sync)
    if settings.server.dev_mode:
        setup_dev_mailbox(app)
    health.setup(app)
    metrics.setup(app)
    app.router.add_get("/api/v1/openapi.json", openapi_json)
    app.router.add_get("/api/v1/docs", api_docs)
    app.router.add_static("/static", TEMPLATES / "static", append_version=True, name="static")
    api.setup(app)
    feeds.setup(app)
    pages.setup(app)
    room_wiring.setup(app, on_miss=throttle.lookup_failed)
    room_pages.setup(app)
    assessment_pages.setup(app)
    result_pages.setup(app)
    home.setup(app)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    db = Database(
        settings.database.url,
        pool_size=settings.database.pool_size,
        busy_timeout=settings.database.busy_timeout_seconds,
        contention=app[keys.CONTENTION],
    )
    seal_messages(db.engine, MessageBox(secret_key(settings)))
    app[keys.DB] = db
    app[keys.FREE_TIMES] = FreeTimes(app[keys.POLICY])
    yield
    await db.dispose()


async def _booking_service(app: web.Application) -> AsyncIterator[None]:
    """Once the database, the mail worker and the timers run: the one way bookings change."""
    settings = app[keys.SETTINGS]
    app[keys.BOOKINGS] = BookingService(
        app[keys.DB],
        app[keys.POLICY],
        app[keys.CLOCK],
        MailAndTimers(
            app[keys.NOTIFIER],
            replan=replanner(app[keys.POLICY], settings.reminders, timers.no_show_after(settings)),
        ),
        AfterCommit(app[keys.MAIL], app[keys.TIMERS], app[keys.ROOMS]),
    )
    yield


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi.document(request.app[keys.SETTINGS].server.base_url))


async def api_docs(request: web.Request) -> web.Response:
    doc = openapi.document(request.app[keys.SETTINGS].server.base_url)
    return aiohttp_jinja2.render_template(
        "pages/api_reference.html",
        request,
        {
            "doc": doc,
            "md": openapi.markdown,
            "md_inline": openapi.markdown_inline,
            "examples": openapi.example_requests(doc),
            **request.app[keys.CATALOGS].context("en"),
        },
    )
