"""Every object the app shares, under one typed key each (aiohttp's web.AppKey)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    pass

SETTINGS = web.AppKey("settings", "Settings")
CLOCK = web.AppKey("clock", "Clock")
POLICY = web.AppKey("policy", "Policy")
DB = web.AppKey("db", "Database")
CONTENTION = web.AppKey("contention", "Contention")  # retried conflicts, busy writers
LINKS = web.AppKey("links", "Links")
JINJA = web.AppKey("jinja", "jinja2.Environment")
CATALOGS = web.AppKey("catalogs", "Catalogs")
NOTIFIER = web.AppKey("notifier", "Notifier")
MAIL = web.AppKey("mail", "MailWorker")
BOOKINGS = web.AppKey("bookings", "BookingService")  # every booking change goes through it
TIMERS = web.AppKey("timers", "TimerService")
ROOMS = web.AppKey("rooms", "RoomServer")
ROOM_TICKETS = web.AppKey("room_tickets", "BookingTickets")
ORIGINS = web.AppKey("origins", "frozenset[str]")
THROTTLE = web.AppKey("throttle", "Throttle")
# The app's Prometheus figures (scheduler.metrics.Metrics); other modules count through it,
# e.g. `app[keys.METRICS].bookings.labels(outcome="booked").inc()`.
METRICS = web.AppKey("metrics", "Metrics")
