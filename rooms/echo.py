"""The connection test: a participant's own media, sent straight back by the server.

The room page's device check shows the camera and plays the microphone locally; only a
round trip through the server proves that WebRTC gets through the participant's network
(UDP blocked, a strict firewall, a TURN server needed). `EchoPeer` is that round trip: one
server peer connection whose senders carry what its receivers get, forwarded encoded like
in a room (`rooms.forwarding`), so the test costs the server as little as a real call.

`EchoService` runs the tests at `/r/{token}/echo` once the room server has checked the
link: one test per link at a time (a newer tab replaces an older one), each for at most
`seconds`, and at most `max_per_organisation` at once per organisation, so that a link
holder cannot turn the server into a media reflector, and one organisation's busy day never
turns another's candidates away. A test is not attendance, and it never touches the room.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Callable, Collection, Coroutine, Mapping
from datetime import timedelta
from typing import Any

from aiohttp import web
from aiortc import RTCConfiguration, RTCIceCandidate, RTCPeerConnection, RTCSessionDescription

from rooms.forwarding import EncodedSource, watch_sender
from rooms.protocol import (
    PROTOCOL_VERSION,
    CloseCode,
    Connection,
    CountError,
    ProtocolError,
    answer_sdp,
    ice_servers,
    parse,
    receive,
    refuse,
    report,
    trickled,
)
from rooms.relay import KINDS, Outlet, Role, codec_preferences, rtc_configuration
from rooms.room import Clock, Ticket
from rooms.settings import RoomsSettings

__all__ = ["ECHO_SECONDS", "MAX_ECHOES", "EchoPeer", "EchoService"]

log = logging.getLogger("viva.rooms")

# Long enough to see and hear oneself, short enough that forgotten tabs do not hold server
# peer connections; and the bound on tests at once, per organisation.
ECHO_SECONDS = 60.0
MAX_ECHOES = 20


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


class EchoService:
    """The connection tests running in this process, one per link (booking and role)."""

    def __init__(
        self,
        settings: RoomsSettings,
        clock: Clock,
        *,
        room_types: Collection[str],
        spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
        count: CountError,
    ) -> None:
        self._settings = settings
        self._clock = clock
        # The room's message types: refused here as `forbidden` rather than `unknown_type`.
        self._room_types = room_types
        self._spawn = spawn
        self._count = count
        self.seconds = ECHO_SECONDS
        self.max_per_organisation = MAX_ECHOES
        self._live: dict[tuple[uuid.UUID, Role], Connection] = {}

    def of(self, booking_id: uuid.UUID, roles: Collection[Role] | None = None) -> list[Connection]:
        """The tests running with a booking's links (of `roles`, or all)."""
        return [
            connection
            for (booking, role), connection in self._live.items()
            if booking == booking_id and (roles is None or role in roles)
        ]

    def stop_all(self) -> None:
        for connection in tuple(self._live.values()):
            connection.kick(CloseCode.GOING_AWAY, "shutdown", "server restarting")

    async def serve(self, ws: web.WebSocketResponse, ticket: Ticket, token: str) -> None:
        """Run one test on `ws`, whose link was just checked.

        The test is registered before the first await, so a cancellation that comes after
        the link was resolved finds it (`RoomServer.booking_changed`).
        """
        key = (ticket.booking_id, ticket.role)
        share = sum(
            1
            for other in self._live.values()
            if other.ticket.organisation_id == ticket.organisation_id
        )
        if key not in self._live and share >= self.max_per_organisation:
            await refuse(
                ws, "busy", "too many tests at once; retry soon", CloseCode.TRY_AGAIN_LATER
            )
            return
        connection = Connection(ws, ticket, token=token)
        previous = self._live.get(key)
        self._live[key] = connection
        if previous is not None:
            await previous.send({"type": "replaced"})
            previous.kick(CloseCode.REPLACED, "replaced", "replaced")
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.seconds, self._time_up, connection)
        peer: EchoPeer | None = None
        try:
            peer = await self._begin(connection)
            on_text = functools.partial(self._on_text, peer, connection)
            await receive(connection, on_text, self._count)
        except Exception:
            log.exception("a connection test failed")
            await connection.close(CloseCode.INTERNAL_ERROR, "disconnected", "server error")
        finally:
            timer.cancel()
            if self._live.get(key) is connection:
                del self._live[key]
            if peer is not None:
                await asyncio.shield(self._spawn(peer.close()))

    async def _begin(self, connection: Connection) -> EchoPeer:
        """Say hello and make the offer; the peer is closed by the caller."""
        ticket = connection.ticket
        # The test runs any day: its TURN credentials last as long as the test itself.
        until = self._clock.now() + timedelta(seconds=self.seconds + 60)
        ident = f"{ticket.booking_id}-{ticket.role}-echo"
        peer = EchoPeer(
            rtc_configuration(self._settings, until, ident),
            max_video_bitrate=self._settings.max_video_bitrate or None,
        )
        await connection.send(
            {
                "type": "hello",
                "protocol": PROTOCOL_VERSION,
                "mode": "echo",
                "role": ticket.role,
                "ice_servers": ice_servers(self._settings, until, ident),
                "seconds": self.seconds,
            }
        )
        offer = await peer.offer()
        connection.offered = True
        await connection.send({"type": "offer", "sdp": offer["sdp"]})
        return peer

    def _time_up(self, connection: Connection) -> None:
        async def time_up() -> None:
            await connection.send(
                {"type": "error", "code": "time_limit", "message": "the test is over"}
            )
            connection.kick(CloseCode.TIME_LIMIT, "time_limit", "time_limit")

        self._spawn(time_up())

    async def _on_text(self, peer: EchoPeer, connection: Connection, data: str) -> None:
        message = await parse(connection, data, self._count)
        if message is None:
            return
        kind: str = message["type"]
        try:
            if kind == "answer":
                sdp = answer_sdp(connection, message)
                try:
                    await peer.answer({"type": "answer", "sdp": sdp})
                except Exception as exc:
                    raise ProtocolError("invalid", f"the answer was refused: {exc}"[:200]) from exc
                connection.answered = True
            elif kind == "candidate":
                candidate = trickled(connection, message)
                try:
                    await peer.add_ice_candidate(candidate)
                except Exception as exc:
                    raise ProtocolError(
                        "invalid", f"the candidate was refused: {exc}"[:200]
                    ) from exc
            elif kind == "ping":
                await connection.send({"type": "pong"})
            elif kind == "leave":
                await connection.close(CloseCode.NORMAL, "left", "bye")
            elif kind == "offer":
                raise ProtocolError("out_of_order", "the server makes the offers; send an answer")
            elif kind in self._room_types:
                raise ProtocolError("forbidden", f"{kind} has no meaning in a connection test")
            else:
                unknown = "unknown message type"
                await report(connection, "unknown_type", unknown, kind[:40], self._count)
        except ProtocolError as exc:
            await report(connection, exc.code, exc.message, kind, self._count)
