"""The webhook worker's life in the app: started with it, woken after every commit that
wrote deliveries (the Database's after-commit hook), stopped cleanly; and what the API's
handlers need of webhooks (`Webhooks`, under keys.WEBHOOKS)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy.orm import Session

from scheduler import keys
from scheduler.clock import SystemClock
from scheduler.config import WebhookSettings, secret_key
from scheduler.leases import lease_clock
from scheduler.mail_worker import worker_name
from scheduler.webhooks.delivery import Deliverer
from scheduler.webhooks.secrets import SecretBox
from scheduler.webhooks.store import WAKE

__all__ = ["Webhooks", "webhooks_ctx"]

log = logging.getLogger("viva.webhooks")


@dataclass(frozen=True)
class Webhooks:
    """What the API needs: the settings, whether private targets are allowed, the box that
    seals secrets."""

    settings: WebhookSettings
    dev_mode: bool
    secrets: SecretBox

    @property
    def allow_private(self) -> bool:
        return self.dev_mode or self.settings.allow_private_targets


async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    db = app[keys.DB]
    metrics = app[keys.METRICS]
    box = SecretBox(secret_key(settings))
    app[keys.WEBHOOKS] = Webhooks(settings.webhooks, settings.server.dev_mode, box)
    deliverer = Deliverer(
        db.writer_sessions,
        settings.webhooks,
        app[keys.CLOCK],
        box,
        dev_mode=settings.server.dev_mode,
        signing_clock=SystemClock(),
        owner=worker_name(settings),
        lease_now=lease_clock(db.sqlite, app[keys.CLOCK]),
        on_outcome=lambda outcome: metrics.webhook_deliveries.labels(outcome=outcome).inc(),
    )
    stop, wake = asyncio.Event(), asyncio.Event()

    def after_commit(session: Session) -> None:
        if session.info.pop(WAKE, False):
            wake.set()

    db.after_commit.append(after_commit)
    try:
        await deliverer.reclaim_own()
    except Exception:  # the database may come later; leases then end on their own
        log.exception("webhooks: could not take back this worker's previous claims")
    task = asyncio.create_task(deliverer.run(stop, wake))
    yield
    db.after_commit.remove(after_commit)
    stop.set()
    await task
