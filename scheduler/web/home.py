"""The site's root and its favicon: what a person typing the bare address meets first.

In dev mode `/` is a launch pad (the demo's candidate links, the mailbox, the API
reference). Otherwise it names the organisation's Viva and nothing else: personal links
are secrets that only their owners' e-mails carry, so the root never lists one.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from babel import Locale
from sqlalchemy import select

from scheduler import keys
from scheduler.demo import demo_links
from scheduler.i18n import TEMPLATES, negotiate
from scheduler.models import Organisation
from scheduler.web import pages
from scheduler.web.calendar_view import read_choices

FAVICON = TEMPLATES / "static" / "favicon.svg"


async def home(request: web.Request) -> web.Response:
    app = request.app
    reader = read_choices(request.query, negotiate(request.headers.get("Accept-Language")), "UTC")
    dev = app[keys.SETTINGS].server.dev_mode
    context: dict[str, Any] = {"dev": dev, "demo": None, "org_name": None}
    async with app[keys.DB].read() as session:
        if dev:
            found = await demo_links(session, app[keys.LINKS])
            if found is not None:
                languages = Locale.parse(reader.locale).languages
                context["org_name"] = found[0]
                context["demo"] = [
                    {
                        "name": c.name,
                        "url": c.url,
                        "exam": languages.get(c.language, c.language),
                        "pages": languages.get(c.locale, c.locale),
                    }
                    for c in found[1]
                ]
        else:
            # One organisation: the site is its Viva. Several: no name is more right than another.
            names = list(await session.scalars(select(Organisation.name).limit(2)))
            if len(names) == 1:
                context["org_name"] = names[0]
    return pages.render(request, "home.html", reader, context)


async def favicon(request: web.Request) -> web.Response:
    """Browsers ask for /favicon.ico whatever the pages link; answer rather than log a 404."""
    return web.Response(
        body=FAVICON.read_bytes(),
        content_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/", home)
    app.router.add_get("/favicon.ico", favicon)
