"""The mail delivery worker's life in the app: started with it, woken after a commit,
stopped cleanly.

The worker is the mailer's `Outbox`; this module gives it the app's database, clock and
metrics. The dev mailbox that shows what it kept is HTTP (scheduler/web/mailbox.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from mailer.outbox import FailedMessage, Outbox
from scheduler import keys
from scheduler.config import Settings
from scheduler.leases import lease_clock
from scheduler.webhooks import sources

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


async def _tell_webhooks(session: AsyncSession, failed: FailedMessage) -> None:
    """A message failed for good: the organisation's webhooks hear it, in that transaction."""
    await sources.message_failed(
        session,
        organisation_id=failed.organisation_id,
        message_id=failed.id,
        booking_id=failed.booking_id,
        kind=failed.kind,
        attempts=failed.attempts,
        error=failed.error,
        now=failed.at,
    )


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
        on_failed_in_transaction=_tell_webhooks,
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
