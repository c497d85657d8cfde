"""The media core of a 1:1 room: each participant's audio and video go to the other one.

Each participant's browser holds one peer connection to the server; `MediaBridge` wires the
two server-side peer connections together. Every server peer gets a sendrecv transceiver per
kind before the offer/answer exchange, and each sender holds an `Outlet` for its whole life:
a track that waits (sending nothing) while the other participant is absent and switches to
their media when they arrive. Arrivals, departures and reconnections therefore need no
renegotiation, and a sender never sees its track end (aiortc stops a sender for good when its
track raises `MediaStreamError`).

Two relay modes (`[rooms] relay`):

* "forward": encoded VP8/Opus frames go from one participant's receiver to the other's
  sender untouched (`rooms.forwarding`), with keyframe requests and bandwidth estimates
  going the other way.
* "transcode": aiortc's `MediaRelay` decodes every frame and each sender re-encodes it;
  kept to compare CPU cost and quality.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import Literal, Protocol, get_args

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceCandidate,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from av import Packet
from av.frame import Frame

from rooms.forwarding import EncodedSource, EncodedTrack, watch_sender
from rooms.settings import RelayMode, RoomsSettings
from rooms.turn import ice_servers_until

__all__ = [
    "KINDS",
    "Kind",
    "MediaBridge",
    "MediaSink",
    "Outlet",
    "Role",
    "codec_preferences",
    "rtc_configuration",
]

Role = Literal["evaluator", "candidate"]
Kind = Literal["audio", "video"]
KINDS: tuple[Kind, ...] = ("audio", "video")

# Forwarding needs both legs to agree on the codec, so the server only ever negotiates these
# (every WebRTC browser must support both, RFC 7742 and RFC 7874).
_FORWARDED_MIME_TYPES = {"audio": ("audio/opus",), "video": ("video/vp8", "video/rtx")}


def rtc_configuration(
    settings: RoomsSettings, expires_at: datetime | None = None, ident: str = "server"
) -> RTCConfiguration:
    """The configuration of every server-side peer connection.

    With no ICE server configured aiortc must get an explicit empty list: `None` would make
    it use a public STUN server, a lookup that has no business leaving the machine. With a
    shared-secret TURN server (`[rooms] turn_urls`) and an expiry (the room's window end),
    the server relays through it too, with credentials of its own (`rooms.turn`).
    """
    servers = (
        ice_servers_until(settings, expires_at, ident)
        if expires_at is not None
        else settings.ice_servers
    )
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=server.urls, username=server.username, credential=server.credential)
            for server in servers
        ]
    )


def codec_preferences(kind: Kind) -> list[RTCRtpCodecCapability]:
    """The codecs the server negotiates for `kind`, in both relay modes (for fair comparison)."""
    wanted = _FORWARDED_MIME_TYPES[kind]
    return [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType.lower() in wanted]


class _Retimer:
    """Keeps an outlet's timestamps moving forward across upstream switches.

    Each upstream starts its own timeline at 0 (aiortc maps the first RTP timestamp it
    receives to 0), so a reconnecting participant would send the other browser timestamps
    that jump backwards. On a switch, the new upstream is shifted to continue where the
    previous one stopped, plus the wall-clock time that passed in between.
    """

    def __init__(self) -> None:
        self._upstream: MediaStreamTrack | None = None
        self._offset = 0
        self._last_pts: int | None = None
        self._last_time_base: Fraction | None = None
        self._last_at = 0.0

    def retime(self, upstream: MediaStreamTrack, item: Frame | Packet) -> None:
        pts, time_base = item.pts, item.time_base
        if pts is None or time_base is None:
            return
        time_base = Fraction(time_base.numerator, time_base.denominator)
        now = asyncio.get_running_loop().time()
        if upstream is not self._upstream:
            self._upstream = upstream
            if self._last_pts is None or self._last_time_base is None:
                self._offset = 0
            else:
                last = int(self._last_pts * self._last_time_base / time_base)
                gap = max(1, round((now - self._last_at) / time_base))
                self._offset = last + gap - pts
        if self._offset:
            # Frames from MediaRelay are shared with its other subscribers; rewriting is only
            # needed (and only done) after a switch.
            item.pts = pts + self._offset
        self._last_pts, self._last_time_base, self._last_at = item.pts, time_base, now


class Outlet(MediaStreamTrack):
    """The track a server-side sender holds for its whole life; its upstream can change.

    While there is no upstream, `recv()` waits and the sender sends nothing. When the
    upstream ends or is replaced, `recv()` moves on to the next one instead of raising, so
    the sender survives the other participant leaving and coming back.
    """

    def __init__(self, kind: Kind) -> None:
        super().__init__()
        self.kind = kind
        self.packets = 0
        self.frames = 0
        self._upstream: MediaStreamTrack | None = None
        self._changed = asyncio.Event()
        self._retimer = _Retimer()

    @property
    def upstream(self) -> MediaStreamTrack | None:
        return self._upstream

    def connect(self, upstream: MediaStreamTrack | None) -> None:
        """Switch to `upstream` (None: go idle); the previous upstream is stopped."""
        previous = self._upstream
        if previous is upstream:
            return
        self._upstream = upstream
        self._changed.set()
        if previous is not None:
            previous.stop()

    async def recv(self) -> Frame | Packet:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            upstream = self._upstream
            if upstream is None:
                self._changed.clear()
                await self._changed.wait()
                continue
            try:
                item = await upstream.recv()
            except MediaStreamError:
                if self._upstream is upstream:
                    self._upstream = None  # the other participant left; wait for the next
                continue
            if self._upstream is not upstream:
                continue  # switched while waiting: the old upstream's media is stale
            self._retimer.retime(upstream, item)
            if isinstance(item, Packet):
                self.packets += 1
            else:
                self.frames += 1
            return item

    def stop(self) -> None:
        super().stop()
        self.connect(None)
        self._changed.set()

    def request_keyframe(self) -> None:
        """A keyframe request from this outlet's receiver, for whoever feeds it."""
        if isinstance(self._upstream, EncodedTrack):
            self._upstream.request_keyframe()

    def report_bitrate(self, bitrate: int) -> None:
        """A bandwidth estimate from this outlet's receiver, for whoever feeds it."""
        if isinstance(self._upstream, EncodedTrack):
            self._upstream.report_bitrate(bitrate)


class _RelayedTrack(MediaStreamTrack):
    """A `MediaRelay` subscription whose `stop()` also ends a pending `recv()`.

    `RelayStreamTrack.stop()` leaves a pending `recv()` waiting forever, which would freeze
    the outlet (and its sender) on a departed participant.
    """

    def __init__(self, relayed: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = relayed.kind
        self._relayed = relayed
        self._stopped: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def recv(self) -> Frame | Packet:
        if self.readyState != "live":
            raise MediaStreamError
        pending = asyncio.ensure_future(self._relayed.recv())
        # If our caller is cancelled (its sender stopping) the inner recv() may still end
        # with MediaStreamError later; retrieve it so asyncio does not report it as lost.
        pending.add_done_callback(_retrieve)
        await asyncio.wait((pending, self._stopped), return_when=asyncio.FIRST_COMPLETED)
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
                await pending
            raise MediaStreamError
        return pending.result()

    def stop(self) -> None:
        if not self._stopped.done():
            self._stopped.set_result(None)
        super().stop()
        self._relayed.stop()


def _retrieve(task: asyncio.Future[Frame | Packet]) -> None:
    if not task.cancelled():
        task.exception()


class MediaSink(Protocol):
    """Where a decoded copy of each participant's media goes (the recorder)."""

    def attach(self, role: Role, kind: Kind, track: MediaStreamTrack) -> None: ...


@dataclass(eq=False)
class _Participant:
    role: Role
    pc: RTCPeerConnection
    transceivers: dict[Kind, RTCRtpTransceiver] = field(default_factory=dict)
    outlets: dict[Kind, Outlet] = field(default_factory=dict)
    sources: dict[Kind, EncodedSource] = field(default_factory=dict)
    # Whose media each outlet currently carries, so that wiring is idempotent.
    fed_by: dict[Kind, _Participant | None] = field(default_factory=dict)
    # The kinds whose decoded copy the current sink already has.
    sunk: set[Kind] = field(default_factory=set)


class MediaBridge:
    """Passes each participant's audio and video to the other one, in one relay mode.

    The bridge owns the peer connections given to `add`: `remove` and `close` close them.
    Call `add` on a fresh peer connection, before the offer/answer exchange (whichever side
    offers): it adds the server's transceivers, so the SDP carries them from the start.
    """

    def __init__(
        self,
        mode: RelayMode = "forward",
        *,
        max_video_bitrate: int | None = None,
        configuration: RTCConfiguration | None = None,
        linked: bool = True,
    ) -> None:
        if mode not in get_args(RelayMode):
            raise ValueError(f"unknown relay mode {mode!r}")
        self.mode: RelayMode = mode
        self._max_video_bitrate = max_video_bitrate
        self._configuration = configuration or RTCConfiguration(iceServers=[])
        self._participants: dict[Role, _Participant] = {}
        self._relay = MediaRelay() if mode == "transcode" else None
        self._linked = linked
        self._sink: MediaSink | None = None

    @classmethod
    def from_settings(
        cls,
        settings: RoomsSettings,
        *,
        linked: bool = True,
        turn_until: datetime | None = None,
        ident: str = "server",
    ) -> MediaBridge:
        """`turn_until`: when the TURN credentials of the server's legs expire (room's end)."""
        return cls(
            settings.relay,
            max_video_bitrate=settings.max_video_bitrate or None,
            configuration=rtc_configuration(settings, turn_until, ident),
            linked=linked,
        )

    @property
    def linked(self) -> bool:
        """Whether media passes between the participants (False: the room's lobby)."""
        return self._linked

    def link(self) -> None:
        """Start passing each participant's media to the other (the lobby is over).

        Until then both peer connections can be up, so that connection problems show while
        the candidate waits and media flows the moment the evaluator admits them; the
        outlets simply have no upstream, and nothing is forwarded either way.
        """
        self._linked = True
        self._wire()

    def record(self, sink: MediaSink | None) -> None:
        """Give `sink` a decoded copy of each participant's media, now and whenever one
        (re)joins; None stops handing copies (the sink stops the tracks it was given)."""
        self._sink = sink
        for participant in self._participants.values():
            participant.sunk.clear()
        self._wire()

    def peer(self, role: Role) -> RTCPeerConnection:
        """`role`'s server-side peer connection (KeyError when absent)."""
        return self._participants[role].pc

    async def add_ice_candidate(self, role: Role, candidate: RTCIceCandidate | None) -> None:
        """A candidate trickled by `role`'s browser, or None for the end of its candidates."""
        await self._participants[role].pc.addIceCandidate(candidate)

    async def offer(self, role: Role) -> dict[str, str]:
        """Open a server peer connection for `role` and return its offer, ready for JSON.

        The signaling layer relays it to the participant's browser and hands the browser's
        answer to `answer`. aiortc gathers its candidates before returning a description, so
        the offer is complete (no trickle ICE from the server).
        """
        pc = RTCPeerConnection(self._configuration)
        await self.add(role, pc)
        await pc.setLocalDescription(await pc.createOffer())
        description = pc.localDescription
        return {"type": description.type, "sdp": description.sdp}

    async def answer(self, role: Role, answer: Mapping[str, str]) -> None:
        """Apply the participant's answer to the offer made by `offer`."""
        pc = self._participants[role].pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))

    @property
    def roles(self) -> tuple[Role, ...]:
        return tuple(self._participants)

    async def add(self, role: Role, pc: RTCPeerConnection) -> None:
        """Bring `role`'s server-side peer connection into the room (replacing a previous one)."""
        if role not in get_args(Role):
            raise ValueError(f"unknown role {role!r}")
        if pc.getTransceivers():
            raise ValueError("add() needs a fresh peer connection, before negotiation")
        if role in self._participants:
            await self.remove(role)
        participant = _Participant(role, pc)
        for kind in KINDS:
            outlet = Outlet(kind)
            transceiver = pc.addTransceiver(outlet, direction="sendrecv")
            transceiver.setCodecPreferences(codec_preferences(kind))
            participant.transceivers[kind] = transceiver
            participant.outlets[kind] = outlet
            participant.fed_by[kind] = None
            if self.mode == "forward":
                max_bitrate = self._max_video_bitrate if kind == "video" else None
                participant.sources[kind] = EncodedSource(
                    transceiver.receiver, kind, max_bitrate=max_bitrate
                )
                watch_sender(
                    transceiver.sender,
                    on_keyframe_request=outlet.request_keyframe,
                    on_bitrate=outlet.report_bitrate,
                )
        # In transcode mode the receiver's track only exists once the remote description is
        # set; in forward mode wiring does not wait for it.
        pc.on("track", lambda _track: self._wire())
        self._participants[role] = participant
        self._wire()

    async def remove(self, role: Role) -> None:
        """Take `role` out of the room and close its peer connection; the other one waits."""
        participant = self._participants.pop(role, None)
        if participant is None:
            return
        for other in self._participants.values():
            for kind in KINDS:
                if other.fed_by[kind] is participant:
                    other.outlets[kind].connect(None)
                    other.fed_by[kind] = None
        for outlet in participant.outlets.values():
            outlet.stop()
        for source in participant.sources.values():
            await source.stop()
        await participant.pc.close()

    async def close(self) -> None:
        for role in tuple(self._participants):
            await self.remove(role)

    def outlet(self, role: Role, kind: Kind) -> Outlet:
        """What the server sends to `role` (for stats and tests)."""
        return self._participants[role].outlets[kind]

    def source(self, role: Role, kind: Kind) -> EncodedSource | None:
        """The tap on what `role` sends, in forward mode (for stats and tests)."""
        return self._participants[role].sources.get(kind)

    def decoded(self, role: Role, kind: Kind) -> MediaStreamTrack:
        """A decoded copy of what `role` sends, for the recorder; the only decoding in forward."""
        participant = self._participants[role]
        if self.mode == "forward":
            return participant.sources[kind].decoded()
        track = participant.transceivers[kind].receiver.track
        if track is None or self._relay is None:
            raise RuntimeError(f"{role} has not negotiated {kind} yet")
        return self._relay.subscribe(track)

    def _upstream(self, source: _Participant, kind: Kind) -> MediaStreamTrack | None:
        if self.mode == "forward":
            return source.sources[kind].subscribe()
        track = source.transceivers[kind].receiver.track
        if track is None or self._relay is None:
            return None
        # Unbuffered video: when encoding falls behind, skip to the latest decoded frame
        # rather than queue frames without bound (latency and memory grow by the second).
        return _RelayedTrack(self._relay.subscribe(track, buffered=kind == "audio"))

    def _wire(self) -> None:
        if not self._linked:
            return
        if self._sink is not None:
            for participant in self._participants.values():
                for kind in KINDS:
                    if kind not in participant.sunk:
                        try:
                            track = self.decoded(participant.role, kind)
                        except RuntimeError:
                            continue  # transcode: not negotiated yet; "track" wires it later
                        participant.sunk.add(kind)
                        self._sink.attach(participant.role, kind, track)
        for source, sink in itertools.permutations(self._participants.values(), 2):
            for kind in KINDS:
                if sink.fed_by[kind] is source:
                    continue
                upstream = self._upstream(source, kind)
                if upstream is not None:
                    sink.outlets[kind].connect(upstream)
                    sink.fed_by[kind] = source
