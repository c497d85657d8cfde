"""GET /metrics: closed unless configured, then Prometheus text whose figures move."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scheduler import keys
from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.config import load_settings
from scheduler.orgs import create_organisation
from tests.conftest import Org, app_environ
from tests.support.unreachable import unreachable


def _figures(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def _client(aiohttp_client, db_url: str, tmp_path: Path, clock: FrozenClock, **env: str):
    settings = load_settings(environ=app_environ(db_url, tmp_path / "data", **env))
    return await aiohttp_client(create_app(settings, clock=clock))


async def test_closed_by_default(client) -> None:
    assert (await client.get("/metrics")).status == 404
    resp = await client.get("/metrics", headers={"Authorization": "Bearer anything"})
    assert resp.status == 404


async def test_open_to_a_token_or_to_configured_addresses(
    aiohttp_client, db_url: str, tmp_path: Path, clock: FrozenClock
) -> None:
    token = uuid.uuid4().hex
    by_token = await _client(
        aiohttp_client,
        db_url,
        tmp_path,
        clock,
        VIVA_METRICS_BEARER_TOKEN=token,
        VIVA_METRICS_ALLOW_FROM="10.0.0.0/8",
    )
    assert (await by_token.get("/metrics")).status == 403  # 127.0.0.1 is not in 10/8
    wrong = await by_token.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 403
    ok = await by_token.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert ok.status == 200
    assert ok.content_type == "text/plain"
    assert "viva_bookings_total" in await ok.text()

    by_address = await _client(
        aiohttp_client, db_url, tmp_path, clock, VIVA_METRICS_ALLOW_FROM="127.0.0.0/8"
    )
    assert (await by_address.get("/metrics")).status == 200


@pytest.fixture
async def open_client(aiohttp_client, db_url: str, tmp_path: Path, clock: FrozenClock):
    return await _client(
        aiohttp_client, db_url, tmp_path, clock, VIVA_METRICS_ALLOW_FROM="127.0.0.1"
    )


async def test_bookings_outbox_and_rooms_figures_move(open_client, clock: FrozenClock) -> None:
    client = open_client

    async def scrape() -> dict:
        resp = await client.get("/metrics")
        assert resp.status == 200
        return _figures(await resp.text())

    before = await scrape()
    assert before[("viva_outbox_messages", (("status", "pending"),))] == 0
    assert before[("viva_booking_seconds_count", ())] == 0
    assert before[("viva_rooms_live", ())] == 0

    async with client.app[keys.DB].write() as session:
        new = await create_organisation(
            session, name="CCI", contact_email="oral@cci.test", now=clock.now()
        )
    org = Org(client, new.organisation.id, new.api_key)
    await org.make_evaluator()
    first = await org.make_candidate()
    second = await org.make_candidate()
    start = {"start": "2026-12-01T09:00:00+01:00"}
    ok = await client.post(f"/c/{first['link'].rsplit('/', 1)[1]}/booking", json=start)
    assert ok.status == 201
    taken = await client.post(f"/c/{second['link'].rsplit('/', 1)[1]}/booking", json=start)
    assert taken.status == 409
    # A form post that is refused (no start) is counted too, by its answer.
    form = await client.post(f"/c/{second['link'].rsplit('/', 1)[1]}/book", data={})
    assert form.status == 400

    after = await scrape()
    assert after[("viva_bookings_total", (("outcome", "booked"),))] == 1
    assert after[("viva_bookings_total", (("outcome", "conflict"),))] == 1
    assert after[("viva_bookings_total", (("outcome", "refused"),))] == 1
    assert after[("viva_booking_seconds_count", ())] == 3
    # Two invitations written with the booking (dev mode is off and there is no SMTP host:
    # they wait, or are already kept as sent, depending on the worker's pass).
    depth = sum(
        after[("viva_outbox_messages", (("status", s),))]
        for s in ("pending", "sending", "sent", "failed")
    )
    assert depth == 2
    assert after[("viva_timers_pending", ())] > before[("viva_timers_pending", ())]
    # What the booking code counts when the database refuses a transaction is exposed.
    contention = client.app[keys.CONTENTION]
    contention.deadlock_retries += 2
    contention.busy += 1
    final = await scrape()
    assert final[("viva_booking_retries_total", (("reason", "deadlock"),))] == 2
    assert final[("viva_booking_retries_total", (("reason", "serialization"),))] == 0
    assert final[("viva_database_busy_total", ())] == 1


async def test_a_database_that_does_not_answer_leaves_the_process_figures_readable(
    open_client,
) -> None:
    """When the database is down, /metrics still answers with what the process counted (the
    busy writers, the retries: what an operator needs then), and says its database figures
    are not current."""
    client = open_client
    first = _figures(await (await client.get("/metrics")).text())
    assert first[("viva_state_read", ())] == 1
    async with unreachable(client.app[keys.DB]):
        resp = await client.get("/metrics")
        assert resp.status == 200
        figures = _figures(await resp.text())
    assert figures[("viva_state_read", ())] == 0
    assert ("viva_database_busy_total", ()) in figures
    assert (
        figures[("viva_outbox_messages", (("status", "pending"),))]
        == first[("viva_outbox_messages", (("status", "pending"),))]
    )
    again = _figures(await (await client.get("/metrics")).text())
    assert again[("viva_state_read", ())] == 1  # back with the database
