"""The HTTP layer's security rules in one place: who may post, and the headers every answer has.

Cross-site requests: the candidate's forms (book, reschedule, cancel) act on the secret in
their URL, with no cookie and no CSRF token. A page on another site that knows (or guesses,
or read in a leaked log) a link could make the candidate's browser post to it. Browsers say
where a request comes from: `Origin` on every state-changing request they send, and
`Sec-Fetch-Site` where Origin is withheld. A state-changing request is refused (403, nothing
done) when its Origin is present and is not one of this server's own origins
(`server.base_url`, and `rooms.public_url` when several processes serve), or when it has no
Origin and Sec-Fetch-Site says `cross-site` or `same-site` (a sibling subdomain is another
site's code too). `Origin: null` passes only with `Sec-Fetch-Site: same-origin`: it is what a
sandboxed frame sends, but also what browsers send for our own forms, because our pages'
referrer policy is no-referrer. Requests with neither header are not from a browser's page (curl, an
integrator's script, the API's clients) and pass: they hold the secret themselves.

Headers (`security_headers`, run as every response is prepared, errors and WebSockets
included): `Server` without versions, `X-Content-Type-Options: nosniff`, a no-referrer
policy and a strict CSP unless the page brings its own (the room page allows its sibling
processes' WebSockets, the dev mailbox its mails' inline styles), `Cache-Control: no-store`
on everything that carries a link or a key (/c/, /r/, /api/), and HSTS when the public URL
is https.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from scheduler import keys
from scheduler.web.pages import error_page
from scheduler.web.problems import is_json_path, problem

log = logging.getLogger("viva.security")

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Browsers label requests from a sibling subdomain `same-site`: still not our page.
FOREIGN_FETCH_SITES = frozenset({"cross-site", "same-site"})
# Paths whose answers carry a personal link, a room link or an API key's data: the dev
# mailbox shows the mailed links, and the home page lists the demo's links in dev mode.
SECRET_PREFIXES = ("/c/", "/r/", "/api/", "/dev/")
SECRET_PATHS = frozenset({"/"})
# The pages have no inline script or style; a page needing more sets its own policy.
DEFAULT_CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HSTS = "max-age=31536000"
SERVER_NAME = "Viva"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` as browsers send it in `Origin` (default ports left out)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    default = 443 if parts.scheme == "https" else 80
    port = f":{parts.port}" if parts.port is not None and parts.port != default else ""
    return f"{parts.scheme}://{host}{port}"


def own_origins(app: web.Application) -> frozenset[str]:
    settings = app[keys.SETTINGS]
    urls = (settings.server.base_url, settings.rooms.public_url)
    return frozenset(o for o in (origin_of(u) for u in urls if u) if o is not None)


def cross_site(request: web.Request, origins: frozenset[str]) -> bool:
    """Whether a state-changing request comes from another site's page."""
    if request.method not in STATE_CHANGING:
        return False
    origin = request.headers.get("Origin")
    fetch_site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
    if origin is not None and origin.strip() != "null":
        return origin_of(origin) not in origins
    if origin is not None:
        # "null": a sandboxed frame or an opaque redirect, but also our own pages' forms,
        # since they ask for `Referrer-Policy: no-referrer` and browsers then send a form
        # post's Origin as "null". Only the browser's own word that the request comes from
        # this origin lets it through; without Sec-Fetch-Site it is refused.
        return fetch_site != "same-origin"
    return fetch_site in FOREIGN_FETCH_SITES


@web.middleware
async def refuse_cross_site(request: web.Request, handler: Handler) -> web.StreamResponse:
    """403 before any handler runs, so nothing is read, looked up or changed."""
    if not cross_site(request, request.app[keys.ORIGINS]):
        return await handler(request)
    log.info(
        "refused a cross-site %s: Origin %r, Sec-Fetch-Site %r",
        request.method,
        request.headers.get("Origin"),
        request.headers.get("Sec-Fetch-Site"),
    )
    detail = "cross-site requests cannot change anything here"
    if is_json_path(request.path) or not request.path.startswith(("/c/", "/r/")):
        return problem(403, detail)
    return error_page(request, 403, "cross_site")


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers["Server"] = SERVER_NAME
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("Content-Security-Policy", DEFAULT_CSP)
    if request.path.startswith(SECRET_PREFIXES) or request.path in SECRET_PATHS:
        headers["Cache-Control"] = "no-store"
    if request.app[keys.SETTINGS].server.base_url.lower().startswith("https://"):
        headers["Strict-Transport-Security"] = HSTS


def setup(app: web.Application) -> None:
    """The headers' hook; `refuse_cross_site` is placed among the middlewares by create_app."""
    app[keys.ORIGINS] = own_origins(app)
    app.on_response_prepare.append(security_headers)
