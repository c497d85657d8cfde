"""/metrics shows the live rooms, the people in them and the errors sent over WebSockets."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from scheduler.config import Settings, load_settings
from tests.conftest import app_environ
from tests.rooms.room_support import Booked
from tests.rooms.test_signaling import enter


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return load_settings(
        environ=app_environ(db_url, tmp_path / "data", VIVA_METRICS_ALLOW_FROM="127.0.0.1")
    )


async def _scrape(client: TestClient) -> dict[tuple[str, tuple], float]:
    resp = await client.get("/metrics")
    assert resp.status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(await resp.text())
        for s in family.samples
    }


async def test_rooms_participants_and_websocket_errors_are_counted(
    client: TestClient, booked: Booked
) -> None:
    before = await _scrape(client)
    assert before[("viva_rooms_live", ())] == 0
    assert before[("viva_room_participants", ())] == 0
    evaluator = await enter(client, booked, "evaluator")
    candidate = await enter(client, booked, "candidate")
    during = await _scrape(client)
    assert during[("viva_rooms_live", ())] == 1
    assert during[("viva_room_participants", ())] == 2

    await candidate.ws.send_str("{not json")
    assert (await candidate.error())["code"] == "malformed"
    await candidate.send(type="admit")  # the evaluator's to give
    assert (await candidate.error())["code"] == "forbidden"
    after = await _scrape(client)
    assert after[("viva_websocket_errors_total", (("code", "malformed"),))] == 1
    assert after[("viva_websocket_errors_total", (("code", "forbidden"),))] == 1
    await candidate.close()
    await evaluator.close()
