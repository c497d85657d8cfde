"""The app's Prometheus figures; `GET /metrics` serves them (scheduler/web/metrics.py).

One `Metrics` per app, with its own `CollectorRegistry` (several apps share a test process,
and a global registry would add their figures together). Counters and histograms move where
things happen (the booking edge in scheduler/web/metrics.py, the timers, the mail worker,
the rooms); the figures that are a state of the database or of the rooms (outbox depth,
pending timers, live rooms) are read when Prometheus scrapes, so they are never stale and
cost nothing in between.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from sqlalchemy import func, select

from mailer.models import OUTBOX_STATUSES
from mailer.models import outbox_messages as outbox
from rooms.signaling import RoomServer
from scheduler.contention import Contention
from scheduler.db import Database
from scheduler.models import Timer

log = logging.getLogger("viva.metrics")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_LAG_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600)


class Metrics:
    """Every figure of one app. Other modules count through the attributes; the ones that
    cannot import the scheduler (mailer, rooms) get a callback wired in by the app."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        # Bookings, measured at the HTTP edge (middleware `booking_edge`).
        self.bookings = Counter(
            "viva_bookings",
            "Booking confirmations answered, by outcome: booked, conflict (slot taken, already "
            "booked, deadline), busy (503: the database could not take the write), refused "
            "(other 4xx), error (5xx).",
            ["outcome"],
            registry=r,
        )
        self.booking_seconds = Histogram(
            "viva_booking_seconds",
            "Time to answer a booking confirmation, in seconds, whatever the outcome.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        # Timers (scheduler.timers).
        self.timer_lag = Histogram(
            "viva_timer_lag_seconds",
            "How late a timer's action ran after its due time, in seconds (by Viva's clock).",
            ["kind"],
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.timer_retries = Counter(
            "viva_timer_retries",
            "Timer actions that raised and were planned again (a transient error).",
            ["kind"],
            registry=r,
        )
        self.timer_failures = Counter(
            "viva_timer_failures",
            "Timer actions given up for good (their deadline passed while they kept failing).",
            ["kind"],
            registry=r,
        )
        self.state_read = Gauge(
            "viva_state_read",
            "1 if the figures read from the database at this scrape (outbox, timers) are "
            "current; 0 if the database did not answer, and they are those of the last scrape "
            "that could read them.",
            registry=r,
        )
        self.timers_pending = Gauge(
            "viva_timers_pending", "Timers not yet acted on (read at scrape).", registry=r
        )
        self.timers_overdue = Gauge(
            "viva_timers_overdue_seconds",
            "How long the oldest due, not yet acted on timer has been waiting (read at "
            "scrape; 0 when none is due).",
            registry=r,
        )
        self.timers_failed = Gauge(
            "viva_timers_failed", "Timers whose outcome is failed (read at scrape).", registry=r
        )
        # Mail (mailer.outbox).
        self.outbox_messages = Gauge(
            "viva_outbox_messages",
            "Outbox messages by status (read at scrape): pending and sending are the depth.",
            ["status"],
            registry=r,
        )
        self.outbox_errors = Gauge(
            "viva_outbox_messages_with_error",
            "Outbox messages whose last attempt failed, by status (read at scrape): pending "
            "ones will be retried, failed ones need a resend.",
            ["status"],
            registry=r,
        )
        self.mail_failed = Counter(
            "viva_mail_failed",
            "Messages this process marked failed for good (no more automatic attempts).",
            registry=r,
        )
        self.mail_leases_lost = Counter(
            "viva_mail_leases_lost",
            "Sends stopped because their lease could not be extended (another worker took the "
            "message, or the database did not answer).",
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "viva_webhook_deliveries",
            "Webhook delivery attempts this process finished, by outcome: delivered, retry "
            "(will be tried again), failed (for good).",
            ["outcome"],
            registry=r,
        )
        # Rooms (rooms.signaling).
        self.rooms_live = Gauge(
            "viva_rooms_live", "Rooms with someone connected in this process.", registry=r
        )
        self.room_participants = Gauge(
            "viva_room_participants", "People connected to this process's rooms.", registry=r
        )
        self.websocket_errors = Counter(
            "viva_websocket_errors",
            "Errors sent to room WebSocket clients, by code (malformed, forbidden, internal...).",
            ["code"],
            registry=r,
        )
        self.room_leases_lost = Counter(
            "viva_room_leases_lost",
            "Rooms this process stopped serving because it lost their lease.",
            registry=r,
        )

    def watch_contention(self, contention: Contention) -> None:
        """Expose the database's refusals, which the booking code counts in `Contention`."""
        self.registry.register(_ContentionCollector(contention))

    async def collect_state(self, db: Database, rooms: RoomServer, now: datetime) -> None:
        """Read the figures that are a state, just before they are exposed.

        A database that does not answer does not take the process's own figures down with
        it (busy writers, retries, rooms): those are what an operator needs then. The
        database's figures keep their last values, and `viva_state_read` says 0."""
        live = [room for room in rooms.rooms.values() if room.connections]
        self.rooms_live.set(len(live))
        self.room_participants.set(sum(len(room.connections) for room in live))
        try:
            await self._read_state(db, now)
        except Exception:
            log.warning("metrics: the database's figures could not be read", exc_info=True)
            self.state_read.set(0)
        else:
            self.state_read.set(1)

    async def _read_state(self, db: Database, now: datetime) -> None:
        t = Timer.__table__
        async with db.read() as session:
            by_status: dict[str, int] = dict(
                (
                    await session.execute(
                        select(outbox.c.status, func.count()).group_by(outbox.c.status)
                    )
                ).all()
            )
            with_error: dict[str, int] = dict(
                (
                    await session.execute(
                        select(outbox.c.status, func.count())
                        .where(outbox.c.last_error.is_not(None))
                        .group_by(outbox.c.status)
                    )
                ).all()
            )
            pending = await session.scalar(
                select(func.count()).select_from(t).where(t.c.done_at.is_(None))
            )
            overdue = await session.scalar(
                select(func.min(func.coalesce(t.c.retry_at, t.c.due_at))).where(
                    t.c.done_at.is_(None), t.c.due_at <= now
                )
            )
            failed = await session.scalar(
                select(func.count()).select_from(t).where(t.c.outcome == "failed")
            )
        for status in OUTBOX_STATUSES:
            self.outbox_messages.labels(status=status).set(by_status.get(status, 0))
            self.outbox_errors.labels(status=status).set(with_error.get(status, 0))
        self.timers_pending.set(pending or 0)
        # func.min loses the column type: SQLite then gives back text, PostgreSQL a datetime.
        if isinstance(overdue, str):
            overdue = datetime.fromisoformat(overdue).replace(tzinfo=UTC)
        lag = (now - overdue).total_seconds() if overdue is not None else 0.0
        self.timers_overdue.set(max(lag, 0.0))
        self.timers_failed.set(failed or 0)


class _ContentionCollector:
    """Reads the counts when Prometheus scrapes: the booking code keeps one owner of them."""

    def __init__(self, contention: Contention) -> None:
        self._contention = contention

    def describe(self) -> list[Metric]:
        return []  # no fixed description: the families are built at each collect

    def collect(self) -> list[Metric]:
        c = self._contention
        retries = CounterMetricFamily(
            "viva_booking_retries",
            "Booking transactions PostgreSQL refused and Viva ran again, by reason "
            "(deadlock, serialization).",
            labels=["reason"],
        )
        retries.add_metric(["deadlock"], c.deadlock_retries)
        retries.add_metric(["serialization"], c.serialization_retries)
        gave_up = CounterMetricFamily(
            "viva_booking_conflicts_given_up",
            "Booking transactions still refused after the last retry (they answered 503).",
            value=c.gave_up,
        )
        busy = CounterMetricFamily(
            "viva_database_busy",
            "Writers turned away because SQLite's write lock stayed taken past the busy "
            "timeout, or no pooled connection came free (they answered 503).",
            value=c.busy,
        )
        return [retries, gave_up, busy]
