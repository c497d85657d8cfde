"""The guard against server-side request forgery, with private targets NOT allowed (the
default outside dev mode): loopback, private, link-local and other non-public addresses
are refused when a webhook is saved and again when it is delivered, and a receiver on
loopback gets nothing. Each check here fails if its guard is removed."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from scheduler import keys
from scheduler.models import WebhookDelivery, WebhookEndpoint
from scheduler.webhooks.secrets import new_secret
from scheduler.webhooks.targets import GuardedResolver, Refused, check_url, resolve_checked
from tests.conftest import token_of
from tests.scheduler.test_webhooks import START
from tests.scheduler.webhook_support import Receiver
from tests.support.polling import eventually


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    await found.start()
    yield found
    await found.stop()


def _local_name() -> str:
    """This machine's name: it resolves to a loopback or private address, never a public
    one (checked, so that the test proves what it says)."""
    name = socket.gethostname()
    import ipaddress

    addresses = {info[4][0] for info in socket.getaddrinfo(name, 443)}
    assert addresses and not any(ipaddress.ip_address(a).is_global for a in addresses)
    return name


REFUSED = [
    "http://127.0.0.1:8080/hook",
    "https://127.0.0.1/hook",
    "https://localhost/hook",
    "https://10.1.2.3/hook",
    "https://192.168.0.10/hook",
    "https://172.16.5.4/hook",
    "https://169.254.169.254/latest/meta-data",
    "https://100.64.0.1/hook",
    "https://0.0.0.0/hook",
    "https://[::1]/hook",
    "https://[fe80::1]/hook",
    "https://[fd00::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://224.0.0.1/hook",
    "http://93.184.216.34/hook",  # public, but http outside dev mode
    "https://user:secret@93.184.216.34/hook",
    "ftp://93.184.216.34/hook",
    "https:///hook",
]


async def test_saving_a_webhook_to_a_non_public_target_is_refused(make_org) -> None:
    org = await make_org()
    for url in [*REFUSED, f"https://{_local_name()}/hook"]:
        status, problem = await org.call(
            "POST", "/webhooks", json={"url": url, "events": ["booking.created"]}
        )
        assert status == 422, (url, problem)
        assert problem["errors"][0]["field"] == "url", problem
    assert (await org.ok("GET", "/webhooks"))["webhooks"] == []
    # A public literal address passes (no DNS needed); then it cannot be moved inside.
    hook = await org.ok(
        "POST",
        "/webhooks",
        json={"url": "https://93.184.216.34/hook", "events": ["booking.created"]},
    )
    status, problem = await org.call(
        "PATCH", f"/webhooks/{hook['id']}", json={"url": "https://10.0.0.1/hook"}
    )
    assert status == 422, problem
    assert (await org.ok("GET", f"/webhooks/{hook['id']}"))["url"] == "https://93.184.216.34/hook"


async def test_a_stored_loopback_target_is_refused_at_delivery(
    make_org, clock, receiver: Receiver
) -> None:
    """A row that names loopback (saved under other rules, or a name whose address
    changed) is refused by the worker, and the receiver there gets nothing."""
    org = await make_org()
    app = org.client.app
    async with app[keys.DB].write() as session:
        session.add(
            WebhookEndpoint(
                id=uuid.uuid4(),
                organisation_id=org.id,
                url=receiver.url,
                events=["booking.created"],
                enabled=True,
                secret=app[keys.WEBHOOKS].secrets.seal(new_secret()),
                created_at=clock.now(),
                updated_at=clock.now(),
            )
        )
    await org.make_evaluator()
    token = token_of((await org.make_candidate())["link"])
    resp = await org.client.post(f"/c/{token}/booking", json={"start": START.isoformat()})
    assert resp.status == 201

    async def attempted() -> WebhookDelivery | None:
        async with app[keys.DB].read() as session:
            row = await session.scalar(select(WebhookDelivery))
        return row if row is not None and row.status == "pending" and row.attempts else None

    row = await eventually(attempted, "the delivery attempted")
    assert row.last_error is not None and row.last_error.startswith("refused:"), row.last_error
    assert row.last_status_code is None
    assert receiver.received == [] and receiver.refused == 0


async def test_every_resolved_address_is_checked_by_the_resolver_the_client_uses() -> None:
    name = _local_name()
    with pytest.raises(Refused):
        await resolve_checked(name, 443, allow_private=False)
    with pytest.raises(OSError, match="refused"):
        await GuardedResolver(allow_private=False).resolve(name, 443)
    # Allowed explicitly (dev mode, or [webhooks] allow_private_targets): they pass.
    assert await resolve_checked(name, 443, allow_private=True)
    assert await GuardedResolver(allow_private=True).resolve(name, 443)
    assert check_url("http://127.0.0.1:9/x", dev_mode=False, allow_private=True) == ("127.0.0.1", 9)
