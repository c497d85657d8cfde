"""Throttling guessers: failed look-ups of links and API keys, counted per client address.

A link is 128 bits of MAC and an API key 256 bits of randomness, so guessing cannot succeed;
but unthrottled it runs at hundreds of tries a second and costs a database look-up each. Every
look-up that finds nothing — a candidate link (`/c/…`), a room link (`/r/…` and its `/info`,
`/ws`, `/echo`), a results link (`/results/…`), a verification code (`/v/…`), an API key —
counts one failure against the client's address; a client past
`[security] max_failures` within `window_seconds` gets 429 with `Retry-After` on every such
path until its window frees up (its valid links too: a real person does not fail twenty times
a minute). Successful requests count nothing, so other clients are never slowed.

The counts live in a `limits` storage: in memory by default (one process), or shared
(`redis://…`, which needs limits' async Redis driver) when several processes serve. Behind a
reverse proxy, the address is taken from `X-Forwarded-For`, but only when the peer is one of
`trusted_proxies`; otherwise anybody could claim any address and never be throttled.

The look-ups report failures through `lookup_failed()` (scheduler.web.portal, scheduler.web.api,
scheduler.room_wiring): the guard puts the request's client in a context variable the
handler's task sees, so resolvers that have no request at hand (the rooms' ticket resolver)
still count against the right client.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any

from aiohttp import web
from limits import RateLimitItemPerSecond
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import ConfigurationError
from limits.storage import storage_from_string

from scheduler import keys
from scheduler.config import ConfigError
from scheduler.web.problems import is_json_path, problem

log = logging.getLogger("viva.throttle")

GUARDED_PREFIXES = ("/c/", "/r/", "/api/", "/feeds/", "/results/", "/v/")
_NAMESPACE = "viva-failed-lookups"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Throttle:
    """Failed look-ups per client in a moving window, in a `limits` storage."""

    def __init__(
        self,
        *,
        max_failures: int,
        window_seconds: int,
        storage_uri: str,
        trusted_proxies: Sequence[str] = (),
    ) -> None:
        uri = storage_uri if storage_uri.startswith("async+") else f"async+{storage_uri}"
        self.storage: Any = storage_from_string(uri)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.item = RateLimitItemPerSecond(max_failures, window_seconds)
        self.proxies: tuple[Network, ...] = tuple(
            ipaddress.ip_network(p, strict=False) for p in trusted_proxies
        )

    async def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try again, or None when it is not blocked."""
        if await self.limiter.test(self.item, _NAMESPACE, bucket(client)):
            return None
        stats = await self.limiter.get_window_stats(self.item, _NAMESPACE, bucket(client))
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def failed(self, client: str) -> None:
        await self.limiter.hit(self.item, _NAMESPACE, bucket(client))

    def client_of(self, request: web.Request) -> str:
        """The client's address: the peer, or what trusted proxies say they forwarded for."""
        peer = request.remote or ""
        if not self._trusted(peer):
            return peer
        hops = [
            hop.strip()
            for header in request.headers.getall("X-Forwarded-For", [])
            for hop in header.split(",")
            if hop.strip()
        ]
        # Right to left: each trusted proxy appended the address it received from; the first
        # address no trusted proxy holds is the client (anything left of it is its say-so).
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop if _is_address(hop) else peer
        return hops[0] if hops else peer

    def _trusted(self, address: str) -> bool:
        if not self.proxies or not _is_address(address):
            return False
        ip = ipaddress.ip_address(address)
        return any(ip in network for network in self.proxies)


def bucket(client: str) -> str:
    """What failures are counted under: the address, or an IPv6 address's /64.

    One IPv6 host usually holds a whole /64 and can pick a fresh address per try.
    """
    try:
        ip = ipaddress.ip_address(client)
    except ValueError:
        return client
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# The throttle and client of the request being handled, for `lookup_failed`.
_CURRENT: ContextVar[tuple[Throttle, str] | None] = ContextVar("viva_throttle", default=None)


async def lookup_failed() -> None:
    """Count a link or key that resolved to nothing against the current request's client."""
    current = _CURRENT.get()
    if current is None:
        return  # not inside a guarded request (a timer, a test calling a resolver)
    throttle, client = current
    try:
        await throttle.failed(client)
    except Exception:
        log.exception("could not count a failed look-up")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """429 for a client past its failures; otherwise note who is asking, for the resolvers."""
    if not request.path.startswith(GUARDED_PREFIXES):
        return await handler(request)
    throttle = request.app[keys.THROTTLE]
    client = throttle.client_of(request)
    try:
        wait = await throttle.retry_after(client)
    except Exception:
        # The storage is down (Redis gone): serve rather than refuse everybody.
        log.exception("could not read the failed look-ups")
        wait = None
    if wait is not None:
        return too_many(request, wait)
    reset = _CURRENT.set((throttle, client))
    try:
        return await handler(request)
    finally:
        _CURRENT.reset(reset)


def too_many(request: web.Request, wait: int) -> web.Response:
    headers = {"Retry-After": str(wait)}
    path = request.path
    page = not is_json_path(path) and (
        path.startswith(("/c/", "/v/", "/results/"))
        or (path.startswith("/r/") and path.count("/") == 2)
    )
    if page:
        from scheduler.web.pages import error_page  # pages -> portal -> this module

        response = error_page(request, 429, "throttled")
        response.headers.update(headers)
        return response
    return problem(
        429,
        f"too many failed attempts from this address; retry in {wait} s",
        title="Too many requests",
        headers=headers,
    )


def setup(app: web.Application) -> None:
    security = app[keys.SETTINGS].security
    try:
        app[keys.THROTTLE] = Throttle(
            max_failures=security.max_failures,
            window_seconds=security.window_seconds,
            storage_uri=security.storage_uri,
            trusted_proxies=security.trusted_proxies,
        )
    except ConfigurationError as exc:  # e.g. redis:// without its driver installed
        raise ConfigError(f"[security] storage_uri: {exc}") from exc
