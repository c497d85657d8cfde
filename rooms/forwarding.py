"""Forward encoded RTP media between aiortc peers, without decoding or re-encoding it.

This is the only module that reaches into aiortc internals, and it is pinned to the aiortc
minor version it was tested with (`AIORTC_TESTED`): importing it under any other minor
version raises `AiortcVersionError`, because the hooks below would otherwise fail silently
(media would stop flowing, or keyframe requests would vanish) rather than loudly.

How a video frame travels through aiortc 1.16, and where this module steps in:

* `RTCRtpReceiver._handle_rtp_packet` does NACKs, RTX unwrapping and depayloading, and its
  jitter buffer reassembles a complete encoded frame (`JitterFrame`: data, RTP timestamp
  mapped to start at 0). It then calls `self.__decoder_queue.put((codec, frame))`; a decoder
  thread decodes it into an `av.VideoFrame` for the receiver's `RemoteStreamTrack`.
* `RTCRtpSender._next_encoded_frame` calls `track.recv()`: for an `av.Frame` it runs the
  encoder in a thread; for an `av.Packet` it only calls `Encoder.pack(packet)` (the path
  `MediaPlayer(decode=False)` uses), which packetizes the bytes as they are.

The hooks, all per instance (no class or module of aiortc is patched, so other peers in the
same process, such as test clients, keep stock behaviour):

1. `RTCRtpReceiver._RTCRtpReceiver__decoder_queue` is replaced by `_DecoderQueueTap`, whose
   `put()` receives the reassembled encoded frames. They fan out to `EncodedTrack`
   subscribers as `av.Packet` (data, pts, time_base) and reach the decoder thread only while
   someone wants a decoded copy (`EncodedSource.decoded()`, e.g. the recorder). The stop
   sentinel (`None`) still goes through, so the decoder thread and the track end as usual.
2. `RTCRtpReceiver._send_rtcp_pli(ssrc)` (existing method) is called to ask the remote sender
   for a keyframe: nothing is re-encoded, so a keyframe can only come from the far end.
3. `RTCRtpReceiver._send_rtcp` is wrapped (video only) to lower the receiver's own REMB to the
   bandwidth the downstream receivers reported and the configured cap.
4. `RTCRtpSender._handle_rtcp_packet` is wrapped (`watch_sender`) to learn about PLI/FIR and
   REMB sent by the participant who receives the forwarded stream; aiortc's own handling
   (forcing a keyframe in, or retargeting, an encoder that `pack()` never uses) stays.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Generic, TypeVar

import aiortc
import av
from aiortc import MediaStreamTrack, RTCRtpReceiver, RTCRtpSender
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    pack_remb_fci,
    unpack_remb_fci,
)
from av.frame import Frame

__all__ = [
    "AIORTC_TESTED",
    "AiortcVersionError",
    "DecodedTrack",
    "EncodedFrame",
    "EncodedSource",
    "EncodedTrack",
    "ForwardingError",
    "SourceStats",
    "check_aiortc_version",
    "watch_sender",
]

logger = logging.getLogger(__name__)

AIORTC_TESTED = "1.16.x"
T = TypeVar("T")

# Name-mangled attribute of RTCRtpReceiver holding the queue.Queue read by its decoder thread.
_DECODER_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"

# A new keyframe request is sent at most this often upstream, however many ask for one:
# several consumers (and repeated PLIs from a browser) coalesce into one request.
PLI_MIN_INTERVAL = 0.25
# An unanswered request (lost PLI, or the sender not started yet) is repeated after this long,
# at most PLI_MAX_ATTEMPTS times, so that a joiner sees video within about a second.
PLI_RETRY_INTERVAL = 0.5
PLI_MAX_ATTEMPTS = 20
# A downstream REMB older than this no longer limits the upstream estimate: the receiver that
# sent it left or stopped reporting, and an old low value would throttle everyone forever.
REMB_FRESH_SECONDS = 5.0
# Queue bounds per consumer, in frames: beyond them the consumer is stalled and old media is
# worthless. Video then resynchronises on a keyframe; audio drops its oldest frame.
VIDEO_QUEUE_FRAMES = 90
AUDIO_QUEUE_FRAMES = 50
DECODED_QUEUE_FRAMES = 60


class AiortcVersionError(ImportError):
    """The installed aiortc is not the minor version the hooks were tested with."""


class ForwardingError(RuntimeError):
    """An aiortc object does not have the shape the hooks rely on."""


def check_aiortc_version(installed: str | None = None) -> None:
    """Refuse an aiortc whose minor version differs from AIORTC_TESTED.

    Patch releases are accepted, as pyproject.toml's `aiortc>=1.16,<1.17` does, so that
    fixes can be taken; tests/rooms exercises every hook and is what catches a patch release
    that reshapes an internal anyway.
    """
    version = aiortc.__version__ if installed is None else installed
    tested = AIORTC_TESTED.split(".")[:2]
    if version.split(".")[:2] != tested:
        raise AiortcVersionError(
            f"rooms.forwarding hooks into aiortc internals and was tested with aiortc "
            f"{AIORTC_TESTED}, but aiortc {version} is installed. Pin aiortc to "
            f"{'.'.join(tested)}.*, or re-check every hook listed in {__name__}'s docstring "
            f"against the new aiortc source, run tests/rooms, then update AIORTC_TESTED."
        )


check_aiortc_version()


def _is_keyframe(mime_type: str, data: bytes) -> bool:
    """Tell whether a frame can start decoding; only then may a new consumer get it.

    VP8 (RFC 6386 section 9.1): bit 0 of the first byte is 0 for a key frame. Audio frames
    stand alone. Other video codecs are not inspected and are let through as they come.
    """
    if mime_type == "video/vp8":
        return bool(data) and not data[0] & 0x01
    return True


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One complete encoded frame as reassembled by the receiver's jitter buffer.

    Kept as plain bytes so that every consumer can get its own `av.Packet` and rewrite its
    timestamps without touching what other consumers see.
    """

    data: bytes
    pts: int
    time_base: Fraction
    mime_type: str
    keyframe: bool

    def to_packet(self) -> av.Packet:
        packet = av.Packet(self.data)
        packet.pts = self.pts
        packet.time_base = self.time_base
        return packet


@dataclass
class SourceStats:
    """Counters for tests, benchmarks and metrics; `frames_to_decoder` stays 0 unless recorded."""

    frames: int = 0
    keyframes: int = 0
    frames_to_decoder: int = 0
    keyframe_requests: int = 0
    remb_clamped: int = 0


class _DecoderQueueTap:
    """Stands in for the receiver's decoder queue: the receiver calls `put`, its thread `get`.

    Both are called in the only ways aiortc 1.16 does: `put((codec, JitterFrame))` and
    `put(None)` from the event loop thread, `get()` from the decoder thread.
    """

    def __init__(self, inner: queue.Queue[Any], source: EncodedSource) -> None:
        self._inner = inner
        self._source = source

    def put(self, item: Any) -> None:
        if item is None:
            self._inner.put(None)
            self._source._receiver_ended()
        else:
            self._source._on_encoded(item)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        return self._inner.get(block, timeout)

    def pass_to_decoder(self, item: Any) -> None:
        self._inner.put(item)


class _Consumer(MediaStreamTrack, Generic[T]):
    """What both kinds of consumer share: `recv` waits for what the source pushes into the
    queue, and the consumer ends with its source."""

    def __init__(self, source: EncodedSource, frames: deque[T]) -> None:
        super().__init__()
        self.kind = source.kind
        self._source: EncodedSource | None = source
        self._queue = frames
        self._wakeup = asyncio.Event()
        self._source_ended = False

    async def _next(self) -> T:
        while not self._queue:
            if self.readyState != "live" or self._source_ended:
                raise MediaStreamError
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._queue.popleft()

    def _end(self) -> None:
        self._source_ended = True
        self._source = None
        self._wakeup.set()


class EncodedTrack(_Consumer[EncodedFrame]):
    """A consumer of an `EncodedSource`, yielding `av.Packet` for `RTCRtpSender.pack()`.

    It joins the source's fan-out on its first `recv()`, i.e. when a sender actually starts
    pulling, and asks for a keyframe then: frames before it could not be decoded by the new
    receiver anyway, so video frames are dropped until a keyframe arrives.
    """

    def __init__(self, source: EncodedSource) -> None:
        super().__init__(source, deque())
        self._limit = VIDEO_QUEUE_FRAMES if self.kind == "video" else AUDIO_QUEUE_FRAMES
        self._joined = False
        self._needs_keyframe = self.kind == "video"
        self.dropped = 0

    async def recv(self) -> av.Packet:
        if not self._joined and self._source is not None:
            self._joined = True
            self._source._join(self)
        return (await self._next()).to_packet()

    def request_keyframe(self) -> None:
        """Relay a keyframe request from this consumer's receiver to the far-end sender."""
        if self._source is not None:
            self._source.request_keyframe()

    def report_bitrate(self, bitrate: int) -> None:
        """Relay this consumer's receiver bandwidth estimate (bps) upstream."""
        if self._source is not None:
            self._source._report_bitrate(self, bitrate)

    def stop(self) -> None:
        super().stop()
        if self._source is not None:
            self._source._leave(self)
            self._source = None
        self._queue.clear()
        self._wakeup.set()

    def _push(self, frame: EncodedFrame) -> None:
        if len(self._queue) >= self._limit:
            self.dropped += len(self._queue) if self.kind == "video" else 1
            if self.kind == "video":
                # Dropping some frames of a GOP corrupts the rest: drop all, resync.
                self._queue.clear()
                self._needs_keyframe = True
                self.request_keyframe()
            else:
                self._queue.popleft()
        if self._needs_keyframe:
            if not frame.keyframe:
                self.dropped += 1
                return
            self._needs_keyframe = False
        self._queue.append(frame)
        self._wakeup.set()


class DecodedTrack(_Consumer[Frame]):
    """A decoded copy of an `EncodedSource` (for the recorder), fed by the receiver's decoder."""

    def __init__(self, source: EncodedSource) -> None:
        super().__init__(source, deque(maxlen=DECODED_QUEUE_FRAMES))

    async def recv(self) -> Frame:
        return await self._next()

    def stop(self) -> None:
        super().stop()
        if self._source is not None:
            self._source._decoded_left(self)
            self._source = None
        self._queue.clear()
        self._wakeup.set()

    def _push(self, frame: Frame) -> None:
        self._queue.append(frame)
        self._wakeup.set()


class EncodedSource:
    """Taps one server-side `RTCRtpReceiver` and hands its media on without decoding it.

    Create it right after the receiver exists (e.g. after `pc.addTransceiver`), before or
    after negotiation. Any number of `subscribe()` consumers get encoded frames; any number
    of `decoded()` consumers get decoded frames, and only while there is one does the
    receiver's decoder thread do any work.
    """

    def __init__(
        self, receiver: RTCRtpReceiver, kind: str, *, max_bitrate: int | None = None
    ) -> None:
        if kind not in ("audio", "video"):
            raise ValueError(f"unknown media kind {kind!r}")
        inner = getattr(receiver, _DECODER_QUEUE_ATTR, None)
        if isinstance(inner, _DecoderQueueTap):
            raise ForwardingError("this RTCRtpReceiver is already tapped")
        if not isinstance(inner, queue.Queue):
            raise ForwardingError(
                f"RTCRtpReceiver has no {_DECODER_QUEUE_ATTR} queue: aiortc internals changed"
            )
        self.kind = kind
        self.stats = SourceStats()
        self._receiver = receiver
        self._tap = _DecoderQueueTap(inner, self)
        self._max_bitrate = max_bitrate
        self._subscribers: set[EncodedTrack] = set()
        self._decoded: set[DecodedTrack] = set()
        self._decoding = False
        self._ended = False
        self._pump: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # keyframe requests
        self._keyframe_wanted = False
        self._pli_attempts = 0
        self._last_pli = -math.inf
        self._pli_timer: asyncio.TimerHandle | None = None
        # bandwidth
        self._downstream: dict[EncodedTrack, tuple[int, float]] = {}
        self._remb_ssrc: int | None = None
        self._remb_media: list[int] = []
        self._remb_sent: int | None = None

        setattr(receiver, _DECODER_QUEUE_ATTR, self._tap)
        if kind == "video":
            self._send_rtcp = receiver._send_rtcp
            receiver._send_rtcp = self._send_rtcp_hook  # type: ignore[method-assign]

    # --- consumers -----------------------------------------------------------------------

    def subscribe(self) -> EncodedTrack:
        """A new consumer of the encoded frames, to give to another peer's sender."""
        track = EncodedTrack(self)
        if self._ended:
            track._end()
        return track

    def decoded(self) -> DecodedTrack:
        """A new consumer of decoded frames: the only path on which this source decodes."""
        track = DecodedTrack(self)
        if self._ended:
            track._end()
            return track
        self._decoded.add(track)
        self.request_keyframe()  # decoding starts at the next keyframe
        return track

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def _join(self, track: EncodedTrack) -> None:
        if self._ended:
            track._end()
            return
        self._subscribers.add(track)
        self.request_keyframe()

    def _leave(self, track: EncodedTrack) -> None:
        self._subscribers.discard(track)
        self._downstream.pop(track, None)

    def _decoded_left(self, track: DecodedTrack) -> None:
        self._decoded.discard(track)

    # --- media from the receiver (event loop thread) -------------------------------------

    def _on_encoded(self, item: tuple[Any, Any]) -> None:
        if self._ended:
            return
        codec, jitter_frame = item
        mime_type = codec.mimeType.lower()
        frame = EncodedFrame(
            data=jitter_frame.data,
            pts=jitter_frame.timestamp,
            time_base=Fraction(1, codec.clockRate),
            mime_type=mime_type,
            keyframe=self.kind == "audio" or _is_keyframe(mime_type, jitter_frame.data),
        )
        self.stats.frames += 1
        if frame.keyframe and self.kind == "video":
            self.stats.keyframes += 1
            self._keyframe_arrived()
        for track in tuple(self._subscribers):
            track._push(frame)
        if self._decoded:
            if self._decoding or frame.keyframe:
                self._decoding = True
                self.stats.frames_to_decoder += 1
                self._tap.pass_to_decoder(item)
                self._ensure_pump()
        else:
            self._decoding = False

    def _ensure_pump(self) -> None:
        track = self._receiver.track
        if self._pump is None and track is not None:
            self._pump = asyncio.ensure_future(self._pump_decoded(track))

    async def _pump_decoded(self, track: MediaStreamTrack) -> None:
        """Move the decoder thread's frames to the decoded consumers (or drop them)."""
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                break
            for decoded in tuple(self._decoded):
                decoded._push(frame)  # type: ignore[arg-type]
        for decoded in tuple(self._decoded):
            decoded._end()
        self._decoded.clear()

    def _receiver_ended(self) -> None:
        """The receiver stopped (peer closed, BYE, transport lost): end the consumers."""
        self._finish()
        if self._pump is None:
            for decoded in tuple(self._decoded):
                decoded._end()
            self._decoded.clear()
        # else the pump ends them once the decoder thread has flushed.

    def _finish(self) -> None:
        self._ended = True
        if self._pli_timer is not None:
            self._pli_timer.cancel()
            self._pli_timer = None
        for track in tuple(self._subscribers):
            track._end()
        self._subscribers.clear()
        self._downstream.clear()

    async def stop(self) -> None:
        """Stop handing media on and end every consumer; the receiver itself is not stopped."""
        self._finish()
        for decoded in tuple(self._decoded):
            decoded._end()
        self._decoded.clear()
        pending = [*self._tasks, *([self._pump] if self._pump is not None else [])]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._pump = None

    # --- keyframe requests ---------------------------------------------------------------

    def request_keyframe(self) -> None:
        """Ask the far-end sender for a keyframe (RTCP PLI), coalesced and retried."""
        if self.kind != "video" or self._ended:
            return
        if not self._keyframe_wanted:
            self._keyframe_wanted = True
            self._pli_attempts = 0
        if self._pli_timer is None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, self._last_pli + PLI_MIN_INTERVAL - loop.time())
            self._pli_timer = loop.call_later(delay, self._pli_due)

    def _pli_due(self) -> None:
        self._pli_timer = None
        if not self._keyframe_wanted or self._ended:
            return
        if self._pli_attempts >= PLI_MAX_ATTEMPTS:
            logger.warning("no keyframe after %d requests; giving up", self._pli_attempts)
            self._keyframe_wanted = False
            return
        loop = asyncio.get_running_loop()
        # The media SSRC is only known from the packets received (RTX SSRCs included: a PLI
        # naming one is ignored by the far end, which is harmless). With none yet, the far
        # end has not started sending, and its first frame will be a keyframe anyway; keep
        # polling in case it starts mid-GOP (e.g. after a network switch).
        ssrcs = [source.source for source in self._receiver.getSynchronizationSources()]
        if ssrcs:
            self._pli_attempts += 1
            self._last_pli = loop.time()
            self.stats.keyframe_requests += 1
            self._spawn(self._send_plis(ssrcs))
        self._pli_timer = loop.call_later(PLI_RETRY_INTERVAL, self._pli_due)

    async def _send_plis(self, ssrcs: list[int]) -> None:
        for ssrc in ssrcs:
            await self._receiver._send_rtcp_pli(ssrc)

    def _keyframe_arrived(self) -> None:
        self._keyframe_wanted = False
        if self._pli_timer is not None:
            self._pli_timer.cancel()
            self._pli_timer = None

    # --- bandwidth -----------------------------------------------------------------------

    def _bitrate_limit(self, now: float) -> int | None:
        limits = [bps for bps, at in self._downstream.values() if now - at <= REMB_FRESH_SECONDS]
        if self._max_bitrate is not None:
            limits.append(self._max_bitrate)
        return min(limits) if limits else None

    def _report_bitrate(self, track: EncodedTrack, bitrate: int) -> None:
        if self.kind != "video" or self._ended or track not in self._subscribers:
            return
        now = asyncio.get_running_loop().time()
        self._downstream[track] = (bitrate, now)
        limit = self._bitrate_limit(now)
        # Tell the far end at once when the path got narrower; wider waits for the next REMB
        # of the receiver's own estimator, which this hook then clamps.
        if (
            limit is not None
            and self._remb_ssrc is not None
            and self._remb_sent is not None
            and limit < self._remb_sent
        ):
            packet = RtcpPsfbPacket(
                fmt=RTCP_PSFB_APP,
                ssrc=self._remb_ssrc,
                media_ssrc=0,
                fci=pack_remb_fci(limit, self._remb_media),
            )
            self._remb_sent = limit
            self._spawn(self._send_rtcp(packet))

    async def _send_rtcp_hook(self, packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, media = unpack_remb_fci(packet.fci)
            except ValueError:
                pass
            else:
                self._remb_ssrc, self._remb_media = packet.ssrc, media
                limit = self._bitrate_limit(asyncio.get_running_loop().time())
                if limit is not None and bitrate > limit:
                    self.stats.remb_clamped += 1
                    bitrate = limit
                    packet = RtcpPsfbPacket(
                        fmt=RTCP_PSFB_APP,
                        ssrc=packet.ssrc,
                        media_ssrc=0,
                        fci=pack_remb_fci(limit, media),
                    )
                self._remb_sent = bitrate
        await self._send_rtcp(packet)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def watch_sender(
    sender: RTCRtpSender,
    *,
    on_keyframe_request: Callable[[], None],
    on_bitrate: Callable[[int], None],
) -> None:
    """Report the RTCP feedback a server-side sender gets from its remote receiver.

    aiortc answers PLI/FIR and REMB by steering its own encoder, which forwarded packets
    bypass; the callbacks let the caller steer the far-end sender instead.
    """
    original = sender._handle_rtcp_packet
    if getattr(original, "_rooms_watch", False):
        raise ForwardingError("this RTCRtpSender is already watched")

    async def handle_rtcp_packet(packet: AnyRtcpPacket) -> None:
        await original(packet)
        if not isinstance(packet, RtcpPsfbPacket):
            return
        if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            on_keyframe_request()
        elif packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            if sender._ssrc in ssrcs:
                on_bitrate(bitrate)

    handle_rtcp_packet._rooms_watch = True  # type: ignore[attr-defined]
    sender._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]
