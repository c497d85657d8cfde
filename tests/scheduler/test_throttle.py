"""Throttling guessers (issue 9 §5): failed look-ups per client address, 429 past the limit.

The app here allows 3 failures per window. A second client is a real second address: a
connection made from 127.0.0.2 (any 127/8 address is the loopback on Linux).
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from scheduler import keys
from scheduler.config import ConfigError, Settings, load_settings
from tests.conftest import Org, app_environ
from tests.rooms.room_support import Booked, book_interview

PROBLEM = "application/problem+json"
LIMIT = 3
NO_LINK = "AQGSK8DTeOxOCrTyqzi5K-LR0Qe8lsZuf-k8HwvxnoCgyw"  # well-formed, resolves to nothing


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return load_settings(
        environ=app_environ(db_url, tmp_path / "data", VIVA_SECURITY_MAX_FAILURES=str(LIMIT))
    )


@pytest.fixture
async def other_client(client: TestClient) -> AsyncIterator[aiohttp.ClientSession]:
    """Another client on another address, talking to the same server."""
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(str(client.make_url("")), connector=connector) as session:
        yield session


@pytest.fixture
async def booked(make_org: Any) -> Booked:
    return await book_interview(await make_org())


async def assert_blocked(resp: aiohttp.ClientResponse, *, page: bool) -> None:
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) >= 1
    if page:
        assert resp.content_type == "text/html"
        assert "Too many" in await resp.text()
    else:
        assert resp.content_type == PROBLEM
        assert (await resp.json(content_type=None))["status"] == 429


async def test_candidate_link_guessing_is_throttled_per_address(
    client: TestClient, booked: Booked, other_client: aiohttp.ClientSession
) -> None:
    link = booked.candidate_link
    for path in (f"/c/{NO_LINK}", f"/c/{NO_LINK}/slots", f"/c/{NO_LINK}x"):
        assert (await client.get(path)).status == 404, path
    # Past the limit even the valid link waits, as a page or as JSON...
    await assert_blocked(
        await client.get(f"/c/{link}", headers={"Accept-Language": "en"}), page=True
    )
    await assert_blocked(await client.get(f"/c/{link}/slots"), page=False)
    # ...while another address is not slowed.
    async with other_client.get(f"/c/{link}") as resp:
        assert resp.status == 200
    async with other_client.get(f"/c/{link}/slots") as resp:
        assert resp.status == 200


async def test_successful_look_ups_count_nothing(client: TestClient, booked: Booked) -> None:
    for _ in range(3 * LIMIT):
        assert (await client.get(f"/c/{booked.candidate_link}/slots")).status == 200
        assert (await client.get(f"/r/{booked.candidate_token}/info")).status == 200


@pytest.mark.parametrize("failing", ["page", "info", "ws", "echo"])
async def test_room_link_guessing_is_throttled_on_every_route(
    client: TestClient, booked: Booked, other_client: aiohttp.ClientSession, failing: str
) -> None:
    for _ in range(LIMIT):
        if failing in ("ws", "echo"):
            ws = await client.ws_connect(f"/r/{NO_LINK}/{failing}")
            message = await ws.receive_json(timeout=10)
            assert message["code"] == "not_found"
            await ws.close()
        else:
            path = f"/r/{NO_LINK}" if failing == "page" else f"/r/{NO_LINK}/info"
            assert (await client.get(path)).status == 404
    token = booked.evaluator_token
    await assert_blocked(await client.get(f"/r/{token}/info"), page=False)
    await assert_blocked(
        await client.get(f"/r/{token}", headers={"Accept-Language": "en"}), page=True
    )
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(f"/r/{token}/ws")
    assert refused.value.status == 429
    async with other_client.get(f"/r/{token}/info") as resp:
        assert resp.status == 200


async def test_api_key_guessing_is_throttled(
    client: TestClient, make_org: Any, other_client: aiohttp.ClientSession
) -> None:
    org: Org = await make_org()
    for _ in range(LIMIT):
        resp = await client.get(
            "/api/v1/organisation", headers={"Authorization": "Bearer viva_guess"}
        )
        assert resp.status == 401
    await assert_blocked(await client.get("/api/v1/organisation", headers=org.headers), page=False)
    async with other_client.get("/api/v1/organisation", headers=org.headers) as resp:
        assert resp.status == 200


async def test_forwarded_for_counts_only_from_a_trusted_proxy(
    client: TestClient, booked: Booked
) -> None:
    throttle = client.app[keys.THROTTLE]
    link = booked.candidate_link

    def via(address: str, spoofed: str = "192.0.2.1") -> dict[str, str]:
        # What the client claimed, the address the outer proxy saw, and that proxy itself.
        return {"X-Forwarded-For": f"{spoofed}, {address}, 198.51.100.1"}

    # Behind trusted proxies (the test client's address and 198.51.100.1), the client is the
    # first address from the right that no trusted proxy holds; whatever the client wrote
    # left of it does not change who it is.
    throttle.proxies = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("198.51.100.1"))
    for attempt in range(LIMIT):
        resp = await client.get(
            f"/c/{NO_LINK}/slots", headers=via("203.0.113.7", f"10.9.9.{attempt}")
        )
        assert resp.status == 404
    await assert_blocked(
        await client.get(f"/c/{link}/slots", headers=via("203.0.113.7")), page=False
    )
    assert (await client.get(f"/c/{link}/slots", headers=via("203.0.113.8"))).status == 200
    assert (await client.get(f"/c/{link}/slots")).status == 200  # the proxy itself

    # From a peer that is not a trusted proxy, the header is the client's say-so: ignored.
    throttle.proxies = ()
    for attempt in range(LIMIT):
        resp = await client.get(
            f"/c/{NO_LINK}/slots", headers={"X-Forwarded-For": f"203.0.113.{20 + attempt}"}
        )
        assert resp.status == 404
    resp = await client.get(f"/c/{link}/slots", headers={"X-Forwarded-For": "203.0.113.99"})
    await assert_blocked(resp, page=False)


def test_security_settings_are_validated(db_url: str, tmp_path: Path) -> None:
    settings = load_settings(
        environ=app_environ(
            db_url, tmp_path, VIVA_SECURITY_TRUSTED_PROXIES="10.0.0.1, 192.168.0.0/16"
        )
    )
    assert settings.security.trusted_proxies == ["10.0.0.1", "192.168.0.0/16"]
    assert settings.security.storage_uri == "memory://"
    for bad in (
        {"VIVA_SECURITY_TRUSTED_PROXIES": "proxy.example"},
        {"VIVA_SECURITY_STORAGE_URI": "mongodb://db"},
        {"VIVA_SECURITY_MAX_FAILURES": "0"},
    ):
        with pytest.raises(ConfigError):
            load_settings(environ=app_environ(db_url, tmp_path, **bad))


def test_an_ipv6_host_is_counted_by_its_64() -> None:
    from scheduler.web.throttle import bucket

    assert bucket("2001:db8:1:2:aaaa::1") == bucket("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert bucket("2001:db8:1:3::1") != bucket("2001:db8:1:2::1")
    assert bucket("::ffff:203.0.113.7") == bucket("203.0.113.7") == "203.0.113.7"


def test_a_storage_without_its_driver_is_a_configuration_error(db_url: str, tmp_path: Path) -> None:
    """`viva serve` prints it (ConfigError) instead of a traceback at the first request."""
    from limits.util import get_dependency

    from scheduler.app import create_app

    if get_dependency("coredis")[1] is not None:
        pytest.skip("the async Redis driver is installed here")
    settings = load_settings(
        environ=app_environ(db_url, tmp_path, VIVA_SECURITY_STORAGE_URI="redis://127.0.0.1:6379")
    )
    with pytest.raises(ConfigError, match="storage_uri"):
        create_app(settings)
