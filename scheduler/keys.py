"""Every object the app shares, under one typed key each (aiohttp's web.AppKey).

The value types are annotations only (imported for the type checker, never at run time), so
`app[keys.DB]` is a `Database` to mypy while the modules holding those types may import this
one without a cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    import jinja2

    from rooms.signaling import RoomServer
    from scheduler.booking_service import BookingService
    from scheduler.clock import Clock
    from scheduler.config import Settings
    from scheduler.contention import Contention
    from scheduler.credentials import CredentialBox
    from scheduler.db import Database
    from scheduler.external_calendars import CalendarSync
    from scheduler.free_times import FreeTimes
    from scheduler.i18n import Catalogs
    from scheduler.links import Links
    from scheduler.mail_worker import MailWorker
    from scheduler.metrics import Metrics
    from scheduler.notify import Notifier
    from scheduler.policy import Policy
    from scheduler.result_notify import ResultMailer
    from scheduler.retention_runs import RetentionJob
    from scheduler.room_wiring import BookingTickets
    from scheduler.timers import TimerService
    from scheduler.verification import CodeMaker
    from scheduler.web.throttle import Throttle
    from scheduler.webhooks.wiring import Webhooks

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
POLICY: web.AppKey[Policy] = web.AppKey("policy")
DB: web.AppKey[Database] = web.AppKey("db")
# Retried conflicts, busy writers.
CONTENTION: web.AppKey[Contention] = web.AppKey("contention")
LINKS: web.AppKey[Links] = web.AppKey("links")
JINJA: web.AppKey[jinja2.Environment] = web.AppKey("jinja")
CATALOGS: web.AppKey[Catalogs] = web.AppKey("catalogs")
NOTIFIER: web.AppKey[Notifier] = web.AppKey("notifier")
# Results (issue 13): their e-mails, and the verification codes (scheduler.verification).
RESULT_MAILER: web.AppKey[ResultMailer] = web.AppKey("result_mailer")
CODES: web.AppKey[CodeMaker] = web.AppKey("codes")
MAIL: web.AppKey[MailWorker] = web.AppKey("mail")
# Every booking change goes through it.
BOOKINGS: web.AppKey[BookingService] = web.AppKey("bookings")
# The free times this process computed, keyed by each organisation's calendar version.
FREE_TIMES: web.AppKey[FreeTimes] = web.AppKey("free_times")
TIMERS: web.AppKey[TimerService] = web.AppKey("timers")
ROOMS: web.AppKey[RoomServer] = web.AppKey("rooms")
ROOM_TICKETS: web.AppKey[BookingTickets] = web.AppKey("room_tickets")
ORIGINS: web.AppKey[frozenset[str]] = web.AppKey("origins")
THROTTLE: web.AppKey[Throttle] = web.AppKey("throttle")
# The app's Prometheus figures; other modules count through it,
# e.g. `app[keys.METRICS].bookings.labels(outcome="booked").inc()`.
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
# The daily retention runs (scheduler.retention_runs); tests call `run_due` on it.
RETENTION: web.AppKey[RetentionJob] = web.AppKey("retention")
# External calendars' passwords, sealed and opened (scheduler.credentials).
CREDENTIALS: web.AppKey[CredentialBox] = web.AppKey("credentials")
# Fetches evaluators' own calendars on a schedule and on demand.
CALENDAR_SYNC: web.AppKey[CalendarSync] = web.AppKey("calendar_sync")
# Webhooks: settings and the secret box the API seals secrets with (scheduler.webhooks).
WEBHOOKS: web.AppKey[Webhooks] = web.AppKey("webhooks")
