"""`GET /metrics` (Prometheus text format, docs/operations.md) and the booking edge's counts.

`/metrics` is closed unless `[metrics]` opens it: to client addresses (`allow_from`) or to a
bearer token. Nobody configured: 404, as if there were no such page. The figures themselves
are the app's `scheduler.metrics.Metrics`.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from scheduler import keys

__all__ = ["BOOKING_ROUTES", "booking_edge", "metrics_handler", "setup"]

# The routes that confirm a booking: the candidate's JSON API and the page's form.
BOOKING_ROUTES = frozenset({"/c/{token}/booking", "/c/{token}/book"})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def booking_edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every booking confirmation by the answer it got.

    At the edge, on purpose: whatever `scheduler.bookings.book` becomes, a confirmation is
    this request and its status code.
    """
    route = request.match_info.route.resource
    if request.method != "POST" or route is None or route.canonical not in BOOKING_ROUTES:
        return await handler(request)
    metrics = request.app[keys.METRICS]
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics.booking_seconds.observe(time.perf_counter() - started)
        metrics.bookings.labels(outcome=_outcome(status)).inc()


def _outcome(status: int) -> str:
    if status in (200, 201, 303):
        return "booked"
    if status == 409:
        return "conflict"
    if status == 503:
        return "busy"
    if 400 <= status < 500:
        return "refused"
    return "error"


def _allowed(request: web.Request) -> bool | None:
    """True: may read; False: configured, not allowed; None: /metrics is closed."""
    settings = request.app[keys.SETTINGS].metrics
    if not settings.allow_from and not settings.bearer_token:
        return None
    if settings.bearer_token:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), settings.bearer_token.encode()
        ):
            return True
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if peer and settings.allow_from:
        try:
            address = ipaddress.ip_address(peer[0])
        except ValueError:
            return False
        return any(
            address in ipaddress.ip_network(net, strict=False) for net in settings.allow_from
        )
    return False


async def metrics_handler(request: web.Request) -> web.Response:
    allowed = _allowed(request)
    if allowed is None:
        raise web.HTTPNotFound()
    if not allowed:
        raise web.HTTPForbidden(text="metrics are open to configured addresses or a token only")
    metrics = request.app[keys.METRICS]
    app = request.app
    await metrics.collect_state(app[keys.DB], app[keys.ROOMS], app[keys.CLOCK].now())
    body = generate_latest(metrics.registry)
    return web.Response(
        body=body,
        headers={"Content-Type": CONTENT_TYPE_LATEST},  # no-store: scheduler.web.security
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics_handler)
