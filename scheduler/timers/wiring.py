"""The app's timer service: built from the app's shared objects, started after the
database and the mail worker, stopped before them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from aiohttp import web

from scheduler import keys
from scheduler.config import Settings
from scheduler.timers.service import TimerService

__all__ = ["no_show_after", "timers_ctx"]


def no_show_after(settings: Settings) -> timedelta:
    """How long after the start a candidate who has not joined is marked absent."""
    return timedelta(minutes=settings.rooms.no_show_after_minutes)


async def timers_ctx(app: web.Application) -> AsyncIterator[None]:
    """The app's timers: started after the database and the mail worker, stopped before."""
    # Viva logs each timer's outcome; APScheduler's own lines (added, running, executed, for
    # every job) would triple that at INFO. An operator's explicit level is left alone.
    aps_logger = logging.getLogger("apscheduler")
    if aps_logger.level == logging.NOTSET:
        aps_logger.setLevel(logging.WARNING)
    service = TimerService(
        app[keys.DB],
        clock=app[keys.CLOCK],
        policy=app[keys.POLICY],
        reminders=app[keys.SETTINGS].reminders,
        notifier=app[keys.NOTIFIER],
        no_show_after=no_show_after(app[keys.SETTINGS]),
        # An evaluator waiting in the room learns the candidate was marked absent.
        on_no_show=app[keys.ROOMS].marked_no_show,
        candidate_arrived=app[keys.ROOMS].candidate_arrived,
        wake_mail=app[keys.MAIL].wake,
        metrics=app[keys.METRICS],
    )
    app[keys.TIMERS] = service
    await service.start()
    yield
    await service.stop()
