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
policy and a strict CSP unless the page names a policy of its own (`POLICY`: the room
page's allows its sibling processes' WebSockets and the devices a call needs, the dev
mailbox's its mails' inline styles), `Cache-Control: no-store` on everything that carries a
link or a key (/c/, /r/, /api/, /dev/) and on /metrics, a cache policy on static files, and
HSTS when the public URL is https. This module is the only one that writes them.
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
# Never cached either, though they hold no link: the live figures.
NO_STORE_PATHS = frozenset({"/metrics"})
# Calendar feeds (scheduler.web.feeds): secret links too, but revalidated, not refetched.
FEED_PREFIX = "/feeds/"
# The pages have no inline script or style; a page needing more sets its own policy.
DEFAULT_CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HSTS = "max-age=31536000"
# Static files: a versioned URL (`?v=`, as static_url writes them into pages) changes with its
# file, so browsers may keep it; the room page's modules import their siblings unversioned
# (no build step to stamp them), so those are revalidated on each load (ETag, then a 304).
STATIC_PREFIX = "/static/"
STATIC_VERSIONED = "public, max-age=31536000, immutable"
STATIC_UNVERSIONED = "no-cache"
SERVER_NAME = "Viva"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The room page's own headers, on top of everyone's (no-store, no-referrer, nosniff): the
# CSP a call needs, and the devices it may use. `connect-src`
# allows the page's own origin (fetch and, in CSP 3 browsers, ws/wss) and the WebSocket
# origin of the public URL spelled out for browsers whose 'self' does not cover ws/wss.
# Camera, microphone and speaker selection are allowed for this page only, never to frames.
_BASE_CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_ROOM_HEADERS = {
    "Permissions-Policy": (
        "camera=(self), microphone=(self), speaker-selection=(self), display-capture=(), "
        "geolocation=()"
    ),
}


def content_security_policy(base_url: str, room_host: str | None = None) -> str:
    """The page's CSP, with the public URL's WebSocket origin next to 'self'.

    With several room processes (`room_host`, this one's `[rooms] public_url`) the page may
    be sent to a sibling's WebSocket: the siblings are the other subdomains of its parent
    domain (rooms-1.viva.example, rooms-2.viva.example), or other ports of its host.
    """
    sources = ["'self'"]
    own = _ws_origin(base_url)
    if own is not None:
        sources.append(own)
    if room_host is not None:
        sources.append(_ws_siblings(room_host))
    return f"{_BASE_CSP}; connect-src {' '.join(dict.fromkeys(sources))}"


def _ws_origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}"


def _ws_siblings(url: str) -> str:
    parts = urlsplit(url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    host = parts.hostname or ""
    labels = host.split(".")
    if host.replace(".", "").isdigit() or ":" in host or len(labels) <= 2:
        return f"{scheme}://{host}:*"  # an address, or a bare domain: its other ports
    return f"{scheme}://*.{'.'.join(labels[1:])}:*"


def _room_headers(app: web.Application) -> dict[str, str]:
    settings = app[keys.SETTINGS]
    csp = content_security_policy(settings.server.base_url, settings.rooms.public_url or None)
    return {**_ROOM_HEADERS, "Content-Security-Policy": csp}


# A stored mail shown in the dev mailbox's sandboxed frame: its own inline styles, nothing
# else (no script, no remote load).
_MAIL_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}

# A handler whose answer needs a policy of its own names it on the response
# (`response[POLICY] = ROOM_POLICY`); `security_headers` writes it, and nothing else does.
POLICY = web.ResponseKey("security_policy", str)
ROOM_POLICY = "room"
MAIL_POLICY = "mail"
_POLICIES: dict[str, Callable[[web.Application], dict[str, str]]] = {
    ROOM_POLICY: _room_headers,
    MAIL_POLICY: lambda app: _MAIL_HEADERS,
}


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
    """Every answer's security headers, written here only (handlers set none of their own).

    A response hook rather than a middleware: it also sees the WebSocket handshakes, which
    are sent before their handler returns, and the error answers aiohttp makes itself.
    """
    headers = response.headers
    policy = response.get(POLICY)
    if policy is not None:
        headers.update(_POLICIES[policy](request.app))
    headers["Server"] = SERVER_NAME
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("Content-Security-Policy", DEFAULT_CSP)
    if request.path.startswith(SECRET_PREFIXES) or request.path in SECRET_PATHS | NO_STORE_PATHS:
        headers["Cache-Control"] = "no-store"
    elif request.path.startswith(FEED_PREFIX):
        # The subscriber's own client keeps it and revalidates (ETag); no shared cache may.
        headers["Cache-Control"] = "private, no-cache"
    if request.path.startswith(STATIC_PREFIX):
        cache = STATIC_VERSIONED if "v" in request.query else STATIC_UNVERSIONED
        headers.setdefault("Cache-Control", cache)
    if request.app[keys.SETTINGS].server.base_url.lower().startswith("https://"):
        headers["Strict-Transport-Security"] = HSTS


def setup(app: web.Application) -> None:
    """The headers' hook; `refuse_cross_site` is placed among the middlewares by create_app."""
    app[keys.ORIGINS] = own_origins(app)
    app.on_response_prepare.append(security_headers)
