"""GET /feeds/{token}.ics: an evaluator's calendar feed (scheduler.feeds), with conditional GET.

Subscribed calendars ask every few minutes to hours; answering 304 when nothing changed
keeps that cheap for both sides. A token that resolves to nothing counts as a failed
look-up (scheduler.web.throttle), like a candidate or room link.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from aiohttp import web

from scheduler import keys
from scheduler.feeds import evaluator_feed
from scheduler.web import throttle

__all__ = ["setup"]


async def calendar_feed(request: web.Request) -> web.StreamResponse:
    app = request.app
    async with app[keys.DB].read() as session:
        evaluator = await app[keys.LINKS].resolve_feed(session, request.match_info["token"])
        if evaluator is None:
            await throttle.lookup_failed()
            raise web.HTTPNotFound(text="no such calendar feed")
        feed = await evaluator_feed(
            session,
            evaluator,
            notifier=app[keys.NOTIFIER],
            env=app[keys.JINJA],
            catalogs=app[keys.CATALOGS],
            now=app[keys.CLOCK].now(),
        )
    last_modified = feed.last_modified.astimezone(UTC).replace(microsecond=0)
    headers = {"ETag": feed.etag, "Last-Modified": format_datetime(last_modified, usegmt=True)}
    if _not_modified(request, feed.etag, last_modified):
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=feed.body,
        content_type="text/calendar",
        charset="utf-8",
        headers={**headers, "Content-Disposition": 'inline; filename="viva.ics"'},
    )


def _not_modified(request: web.Request, etag: str, last_modified: datetime) -> bool:
    """RFC 9110 section 13.2.2: If-None-Match decides when present, else If-Modified-Since."""
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or etag in tags
    since = request.headers.get("If-Modified-Since")
    if since is None:
        return False
    try:
        when = parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False
    if when.tzinfo is None:
        return False
    return last_modified <= when


def setup(app: web.Application) -> None:
    app.router.add_get("/feeds/{token:[A-Za-z0-9_-]+}.ics", calendar_feed)
