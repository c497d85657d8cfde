"""The connection test: a participant's own media, sent straight back by the server.

The room page's device check shows the camera and plays the microphone locally; only a
round trip through the server proves that WebRTC gets through the participant's network
(UDP blocked, a strict firewall, a TURN server needed). `EchoPeer` is that round trip: one
server peer connection whose senders carry what its receivers get, forwarded encoded like
in a room (`rooms.forwarding`), so the test costs the server as little as a real call.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiortc import RTCConfiguration, RTCIceCandidate, RTCPeerConnection, RTCSessionDescription

from rooms.forwarding import EncodedSource, watch_sender
from rooms.relay import KINDS, Outlet, codec_preferences

__all__ = ["EchoPeer"]


class EchoPeer:
    """One server peer connection that returns each incoming stream to its sender."""

    def __init__(self, configuration: RTCConfiguration, *, max_video_bitrate: int | None) -> None:
        self.pc = RTCPeerConnection(configuration)
        self._outlets: list[Outlet] = []
        self._sources: list[EncodedSource] = []
        for kind in KINDS:
            outlet = Outlet(kind)
            transceiver = self.pc.addTransceiver(outlet, direction="sendrecv")
            transceiver.setCodecPreferences(codec_preferences(kind))
            source = EncodedSource(
                transceiver.receiver,
                kind,
                max_bitrate=max_video_bitrate if kind == "video" else None,
            )
            # The browser's keyframe requests and bandwidth reports go back to itself.
            watch_sender(
                transceiver.sender,
                on_keyframe_request=outlet.request_keyframe,
                on_bitrate=outlet.report_bitrate,
            )
            outlet.connect(source.subscribe())
            self._outlets.append(outlet)
            self._sources.append(source)

    async def offer(self) -> dict[str, str]:
        """A complete offer (aiortc gathers its candidates first), ready for JSON."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        description = self.pc.localDescription
        return {"type": description.type, "sdp": description.sdp}

    async def answer(self, answer: Mapping[str, str]) -> None:
        await self.pc.setRemoteDescription(
            RTCSessionDescription(sdp=answer["sdp"], type=answer["type"])
        )

    async def add_ice_candidate(self, candidate: RTCIceCandidate | None) -> None:
        await self.pc.addIceCandidate(candidate)

    async def close(self) -> None:
        for outlet in self._outlets:
            outlet.stop()
        for source in self._sources:
            await source.stop()
        await self.pc.close()
