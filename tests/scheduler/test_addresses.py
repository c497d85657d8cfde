"""The one rule for where Viva may connect on an organisation's behalf (webhooks, calendars)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from scheduler.addresses import is_public
from scheduler.busy_fetch import FetchError, Limits, Source, fetch_busy
from scheduler.webhooks.targets import Refused, check_address

NOT_PUBLIC = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # the usual cloud metadata address
    "100.100.100.200",  # another cloud's, in the shared (carrier-grade NAT) range
    "100.64.0.1",
    "192.0.0.8",
    "198.18.0.1",  # benchmarking
    "192.0.2.1",  # documentation
    "0.0.0.0",
    "224.0.0.1",
    "::1",
    "fe80::1%eth0",
    "fc00::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "2002:a00:1::",  # 6to4 of 10.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_addresses_that_reach_a_private_network_are_not_public(address: str) -> None:
    assert not is_public(address)
    with pytest.raises(Refused):  # webhooks
        check_address(address, allow_private=False)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are(address: str) -> None:
    assert is_public(address)
    check_address(address, allow_private=False)


@pytest.mark.parametrize("address", ["100.100.100.200", "[::ffff:169.254.169.254]"])
async def test_a_calendar_at_such_an_address_is_refused_before_any_connection(
    address: str,
) -> None:
    """Calendars follow the same rule as webhooks (they used to let 100.64.0.0/10 through)."""
    source = Source("ics", f"http://{address}/cal.ics", None, None)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    with pytest.raises(FetchError, match="private address"):
        await fetch_busy(source, start, start, ZoneInfo("Europe/Paris"), Limits())
