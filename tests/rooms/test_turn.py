"""TURN with short-lived credentials (coturn's shared-secret mode, rooms/turn.py).

The credential function is checked against a vector computed by another implementation
(`printf '1700000000:viva' | openssl dgst -sha1 -hmac north -binary | base64`); the room's
hello and the server's own peer connections are checked through the real server. That coturn
accepts them is proven end to end in tests/test_deployment.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from pydantic import ValidationError

from rooms.relay import rtc_configuration
from rooms.settings import RoomsSettings
from rooms.turn import ice_servers_until, turn_credential, turn_username
from scheduler import keys
from scheduler.config import Settings, load_settings
from tests.conftest import app_environ
from tests.rooms.room_support import Booked, Tab

TURN_SECRET = "turn-shared-secret-for-tests"
TURN_URLS = ["turn:127.0.0.1:3478?transport=udp", "turns:turn.example.org:443?transport=tcp"]


def test_the_credential_matches_an_independent_implementation() -> None:
    assert turn_credential("north", "1700000000:viva") == "VmgTk8Y4BMPkK1GPEO5bOZYZ8QM="


def test_the_user_name_is_the_expiry_then_the_id() -> None:
    expiry = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert turn_username(expiry, "abc-candidate") == "1796115600:abc-candidate"
    # coturn reads the expiry up to the first ':'; an id holding one would shift it.
    with pytest.raises(ValueError, match="':'"):
        turn_username(expiry, "a:b")


def test_turn_settings_go_together_and_are_checked() -> None:
    settings = load_settings(
        environ={
            "VIVA_ROOMS_TURN_URLS": ",".join(TURN_URLS),
            "VIVA_ROOMS_TURN_SECRET": TURN_SECRET,
        }
    ).rooms
    assert settings.turn_urls == TURN_URLS
    assert TURN_SECRET not in repr(settings)
    for bad in (
        {"turn_urls": TURN_URLS},  # no secret: nobody could log in
        {"turn_secret": TURN_SECRET},  # a secret for no server
        {"turn_urls": ["stun:127.0.0.1:3478"], "turn_secret": TURN_SECRET},
    ):
        with pytest.raises(ValidationError):
            RoomsSettings.model_validate(bad)


def test_static_servers_stay_and_the_turn_server_comes_last() -> None:
    settings = RoomsSettings.model_validate(
        {
            "ice_servers": [{"urls": ["stun:stun.example.org:3478"]}],
            "turn_urls": TURN_URLS,
            "turn_secret": TURN_SECRET,
        }
    )
    until = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    servers = ice_servers_until(settings, until, "b-evaluator")
    assert [s.urls for s in servers] == [["stun:stun.example.org:3478"], TURN_URLS]
    assert servers[1].username == "1796115600:b-evaluator"
    assert servers[1].credential == turn_credential(TURN_SECRET, "1796115600:b-evaluator")
    # Without TURN configured nothing is added, and nothing without an expiry either.
    assert ice_servers_until(RoomsSettings(), until, "x") == []
    assert rtc_configuration(settings).iceServers is not None
    assert len(rtc_configuration(settings).iceServers or []) == 1


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    environ = app_environ(
        db_url,
        tmp_path / "data",
        VIVA_ROOMS_TURN_URLS=",".join(TURN_URLS),
        VIVA_ROOMS_TURN_SECRET=TURN_SECRET,
    )
    return load_settings(environ=environ)


async def test_each_participant_gets_credentials_that_end_with_the_window(
    client: TestClient, booked: Booked
) -> None:
    closes_at = booked.end + timedelta(minutes=30)  # [rooms] close_after_minutes
    expiry = int(closes_at.timestamp())
    tabs = {}
    for role in ("evaluator", "candidate"):
        tab = tabs[role] = await Tab.open(client, booked.token(role))
        hello = await tab.next()
        assert hello["type"] == "hello"
        username = f"{expiry}:{booked.booking_id}-{role}"
        assert hello["ice_servers"] == [
            {
                "urls": TURN_URLS,
                "username": username,
                "credential": turn_credential(TURN_SECRET, username),
            }
        ]
        await tab.expect("offer")
    # The server's own legs relay through the same TURN server, on credentials of their own
    # that end with the window too.
    room = client.app[keys.ROOMS].rooms[booked.booking_id]
    servers = room.bridge._configuration.iceServers or []
    username = f"{expiry}:{booked.booking_id}-server"
    assert [(s.urls, s.username, s.credential) for s in servers] == [
        (TURN_URLS, username, turn_credential(TURN_SECRET, username))
    ]
    for tab in tabs.values():
        await tab.close()
