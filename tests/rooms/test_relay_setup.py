"""Set-up rules of the media core that need no media: versions, configuration, misuse."""

from __future__ import annotations

import aiortc
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from pydantic import ValidationError

from rooms.forwarding import (
    AIORTC_TESTED,
    AiortcVersionError,
    EncodedSource,
    ForwardingError,
    check_aiortc_version,
    watch_sender,
)
from rooms.relay import MediaBridge, codec_preferences, rtc_configuration
from rooms.settings import RoomsSettings


def test_the_installed_aiortc_is_the_tested_minor_version() -> None:
    assert aiortc.__version__.split(".")[:2] == AIORTC_TESTED.split(".")[:2]
    check_aiortc_version("1.16.7")  # patch releases are fine


@pytest.mark.parametrize("version", ["1.17.0", "1.15.2", "2.16.0"])
def test_another_minor_version_is_refused_with_directions(version: str) -> None:
    with pytest.raises(AiortcVersionError, match=f"aiortc {version} is installed"):
        check_aiortc_version(version)


def test_no_ice_servers_means_an_explicit_empty_list() -> None:
    # None would make aiortc ask a public STUN server.
    assert rtc_configuration(RoomsSettings()).iceServers == []


def test_ice_servers_come_from_the_settings() -> None:
    settings = RoomsSettings.model_validate(
        {
            "ice_servers": [
                {"urls": ["stun:stun.example.org:3478"]},
                {
                    "urls": ["turn:turn.example.org:3478"],
                    "username": "u",
                    "credential": "s3cr3t-turn",
                },
            ]
        }
    )
    servers = rtc_configuration(settings).iceServers
    assert servers is not None
    assert [s.urls for s in servers] == [
        ["stun:stun.example.org:3478"],
        ["turn:turn.example.org:3478"],
    ]
    assert (servers[1].username, servers[1].credential) == ("u", "s3cr3t-turn")
    assert "s3cr3t-turn" not in repr(settings)


def test_settings_reject_unknown_modes_and_keys() -> None:
    assert RoomsSettings().relay == "forward"
    with pytest.raises(ValidationError):
        RoomsSettings.model_validate({"relay": "sfu"})
    with pytest.raises(ValidationError):
        RoomsSettings.model_validate({"relai": "forward"})


def test_only_forwardable_codecs_are_negotiated() -> None:
    assert [c.mimeType for c in codec_preferences("video")] == ["video/VP8", "video/rtx"]
    assert [c.mimeType for c in codec_preferences("audio")] == ["audio/opus"]


async def test_misuse_is_refused() -> None:
    with pytest.raises(ValueError, match="relay mode"):
        MediaBridge("sfu")  # type: ignore[arg-type]
    bridge = MediaBridge()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        with pytest.raises(ValueError, match="role"):
            await bridge.add("observer", pc)  # type: ignore[arg-type]
        transceiver = pc.addTransceiver("video")
        with pytest.raises(ValueError, match="fresh peer connection"):
            await bridge.add("evaluator", pc)
        EncodedSource(transceiver.receiver, "video")
        with pytest.raises(ForwardingError, match="already tapped"):
            EncodedSource(transceiver.receiver, "video")

        def ignore(*_: object) -> None:
            pass

        watch_sender(transceiver.sender, on_keyframe_request=ignore, on_bitrate=ignore)
        with pytest.raises(ForwardingError, match="already watched"):
            watch_sender(transceiver.sender, on_keyframe_request=ignore, on_bitrate=ignore)
    finally:
        await pc.close()
        await bridge.close()
