"""The candidate's pages behind the personal link (server-rendered, work without JavaScript)."""

from __future__ import annotations

from aiohttp import web

from scheduler import portal


def setup(app: web.Application) -> None:
    portal.setup(app)
