"""Where a webhook may be delivered: the guard against server-side request forgery.

An organisation names a URL and Viva's server calls it, from inside the operator's
network. Unless private targets are allowed (dev mode, or `[webhooks]
allow_private_targets`), every address the host resolves to must be a public one: no
loopback, private, link-local (cloud metadata at 169.254.169.254), shared, multicast,
reserved or unspecified address, IPv4-mapped IPv6 included. The URL is checked when the
webhook is saved (a clear 422) and again at each delivery, where the check happens in the
resolver the HTTP client connects with (`GuardedResolver`): the addresses checked are the
addresses connected to, so a DNS answer that changes between check and connection
(rebinding) gains nothing. Redirects are never followed (delivery.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from scheduler.addresses import is_public

__all__ = ["GuardedResolver", "Refused", "check_address", "check_url", "resolve_checked"]

MAX_URL = 2000
RESOLVE_SECONDS = 5  # a webhook being saved waits no longer for its host's addresses
_LOCAL_NAMES = ("localhost", "localhost.localdomain")


class Refused(ValueError):
    """The URL or its addresses may not be called; the message says why."""


def check_address(host: str, allow_private: bool) -> None:
    """Refuse a non-public address (unless private targets are allowed)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError as exc:
        raise Refused(f"not an IP address: {host!r}") from exc
    if not allow_private and not is_public(address):
        raise Refused(f"{address} is not a public address")


def _is_loopback_host(host: str) -> bool:
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, dev_mode: bool, allow_private: bool) -> tuple[str, int]:
    """The URL's host and port, or Refused: https (http only in dev mode or to loopback),
    no credentials in it, a host; a literal address must be public."""
    if len(url) > MAX_URL:
        raise Refused(f"at most {MAX_URL} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        raise Refused("an https:// URL")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise Refused("not a valid URL") from exc
    if not host:
        raise Refused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise Refused("no credentials in the URL (the signature authenticates Viva)")
    if parts.scheme == "http" and not dev_mode and not _is_loopback_host(host):
        raise Refused("an https:// URL (http only in dev mode or to a loopback address)")
    if _is_loopback_host(host) and not allow_private:
        raise Refused("a loopback address is not a public address")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        check_address(host, allow_private)
    return host, port or (443 if parts.scheme == "https" else 80)


async def resolve_checked(host: str, port: int, allow_private: bool) -> list[str]:
    """Every address `host` resolves to, each checked; Refused if any is not allowed (one
    private address among public ones is enough to refuse: the client might pick it)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_SECONDS):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError as exc:
        raise Refused(f"{host} did not resolve within {RESOLVE_SECONDS} s") from exc
    except OSError as exc:
        raise Refused(f"cannot resolve {host}: {exc}") from exc
    addresses = sorted({str(info[4][0]) for info in infos})
    if not addresses:
        raise Refused(f"{host} has no address")
    for address in addresses:
        check_address(address, allow_private)
    return addresses


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver with every answer checked: the client connects only to
    addresses that passed."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not results:
            raise OSError(f"{host} has no address")
        for result in results:
            try:
                check_address(result["host"], self._allow_private)
            except Refused as exc:
                raise OSError(f"refused {host}: {exc}") from exc
        return results

    async def close(self) -> None:
        await self._inner.close()
