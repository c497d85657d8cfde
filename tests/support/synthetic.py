"""Synthetic participants: aiortc peers that stand in for browsers in tests and benchmarks.

A `SyntheticParticipant` sends a wall of one colour and a pure tone, decodes what it
receives, and records the RTCP feedback its video sender gets, so a test can tell whose
media arrived (by colour and pitch) and whether keyframe requests reached it. An
`EncodedParticipant` replays media encoded once in advance and decodes only its first
remote frame, so that one benchmark process can stand in for many browsers. Neither is used
by the server itself, so they live with the tests and the benchmarks (`bench/rooms.py`),
outside the product package and its wheel.
"""

from __future__ import annotations

import asyncio
import fractions
import itertools
import math
import time
from array import array
from collections import deque
from collections.abc import Mapping
from typing import Any

import av
from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.codecs.opus import OpusEncoder
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RTCP_PSFB_APP, RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket, unpack_remb_fci
from av import AudioFrame, VideoFrame

from rooms.forwarding import EncodedSource, watch_sender

RED = (255, 0, 0)
BLUE = (0, 0, 255)
SAMPLE_RATE = 48_000
AUDIO_SAMPLES = 960  # 20 ms, what browsers send

Rgb = tuple[int, int, int]


def _yuv(rgb: Rgb) -> tuple[int, int, int]:
    """BT.601 limited range, the conversion libswscale applies by default."""
    r, g, b = rgb
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    return round(y), round(u), round(v)


class ColourTrack(VideoStreamTrack):
    """A camera filming a wall of one colour, at 30 fps."""

    def __init__(self, rgb: Rgb, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self._yuv = _yuv(rgb)
        self._size = (width, height)

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=self._size[0], height=self._size[1], format="yuv420p")
        for plane, value in zip(frame.planes, self._yuv, strict=True):
            plane.update(bytes([value]) * plane.buffer_size)
        frame.pts = pts
        frame.time_base = time_base
        return frame


class ToneTrack(AudioStreamTrack):
    """A microphone hearing a pure tone, in 20 ms frames at 48 kHz (one period cached)."""

    def __init__(self, hz: float) -> None:
        super().__init__()
        self._hz = hz
        self._n = 0
        self._t0: float | None = None

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._t0 is None:
            self._t0 = time.time()
        else:
            await asyncio.sleep(self._t0 + self._n / SAMPLE_RATE - time.time())
        step = 2 * math.pi * self._hz / SAMPLE_RATE
        pcm = array("h", (int(8000 * math.sin(step * (self._n + i))) for i in range(AUDIO_SAMPLES)))
        frame = AudioFrame(format="s16", layout="mono", samples=AUDIO_SAMPLES)
        frame.planes[0].update(pcm.tobytes())
        frame.pts = self._n
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._n += AUDIO_SAMPLES
        return frame


def mean_rgb(frame: VideoFrame) -> tuple[float, float, float]:
    """Mean colour of a decoded frame (every 4th row is plenty for a solid colour)."""
    rgb = frame.reformat(format="rgb24")
    plane = rgb.planes[0]
    data = bytes(plane)
    width = rgb.width * 3
    rows = [
        data[y * plane.line_size : y * plane.line_size + width] for y in range(0, rgb.height, 4)
    ]
    pixels = len(rows) * rgb.width
    r, g, b = (sum(sum(row[c::3]) for row in rows) / pixels for c in range(3))
    return r, g, b


def tone_hz(frames: list[AudioFrame]) -> float:
    """Pitch of a pure tone, from the zero crossings of the first channel."""
    samples: list[int] = []
    for frame in frames:
        pcm = array("h", bytes(frame.planes[0]))
        channels = len(frame.layout.channels)
        samples.extend(pcm[0 : frame.samples * channels : channels])
    if len(samples) < 2:
        return 0.0
    crossings = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
    return crossings / 2 / (len(samples) / SAMPLE_RATE)


def _description(description: Mapping[str, str]) -> RTCSessionDescription:
    return RTCSessionDescription(sdp=description["sdp"], type=description["type"])


def close_to(colour: tuple[float, float, float], rgb: Rgb, tolerance: float = 40) -> bool:
    return all(abs(got - want) <= tolerance for got, want in zip(colour, rgb, strict=True))


class SyntheticParticipant:
    """A participant's browser: answers the server's offer, sends colour + tone, decodes back.

    With `ignore_remb`, REMB never reaches the video encoder: aiortc's VP8 encoder makes a
    keyframe on its first frame, on PLI/FIR, every 3000 frames, or when a REMB moves its
    target bitrate by more than 10% (it rebuilds the codec); ignoring REMB leaves PLI/FIR
    as the only source of keyframes, which makes keyframe-request tests meaningful.
    """

    def __init__(
        self,
        rgb: Rgb,
        hz: float,
        *,
        width: int = 320,
        height: int = 240,
        ignore_remb: bool = False,
        configuration: RTCConfiguration | None = None,
    ) -> None:
        self.pc = RTCPeerConnection(configuration or RTCConfiguration(iceServers=[]))
        self.video_out = ColourTrack(rgb, width, height)
        self.audio_out = ToneTrack(hz)
        self.video_frames = 0
        self.audio_frames = 0
        self.first_video_at: float | None = None
        self.last_video: VideoFrame | None = None
        self.video_pts: list[int] = []
        self.audio_tail: deque[AudioFrame] = deque(maxlen=25)
        self.keyframe_requests: list[float] = []  # loop times of PLI/FIR at the video sender
        self.rembs: list[int] = []  # bitrates of REMB received by the video sender
        self.video_sender: RTCRtpSender | None = None
        self._ignore_remb = ignore_remb
        self._readers: set[asyncio.Task[None]] = set()
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        reader = asyncio.ensure_future(self._read(track))
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)

    async def _read(self, track: MediaStreamTrack) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if isinstance(frame, VideoFrame):
                self.video_frames += 1
                self.last_video = frame
                self.video_pts.append(frame.pts or 0)
                if self.first_video_at is None:
                    self.first_video_at = loop.time()
            elif isinstance(frame, AudioFrame):
                self.audio_frames += 1
                self.audio_tail.append(frame)

    def _watch_video_sender(self, sender: RTCRtpSender) -> None:
        self.video_sender = sender
        original = sender._handle_rtcp_packet
        loop = asyncio.get_running_loop()

        async def handle(packet: Any) -> None:
            if isinstance(packet, RtcpPsfbPacket):
                if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                    self.keyframe_requests.append(loop.time())
                elif packet.fmt == RTCP_PSFB_APP:
                    self.rembs.append(unpack_remb_fci(packet.fci)[0])
                    if self._ignore_remb:
                        return
            await original(packet)

        sender._handle_rtcp_packet = handle  # type: ignore[method-assign]

    async def answer(self, offer: Mapping[str, str]) -> dict[str, str]:
        """Answer the server's offer (as JSON signaling carries it) with camera and mic."""
        await self.pc.setRemoteDescription(_description(offer))
        self.pc.addTrack(self.audio_out)
        self._watch_video_sender(self.pc.addTrack(self.video_out))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return {"type": self.pc.localDescription.type, "sdp": self.pc.localDescription.sdp}

    def colour(self) -> tuple[float, float, float]:
        """Mean colour of the last video frame received."""
        if self.last_video is None:
            raise LookupError("no video received yet")
        return mean_rgb(self.last_video)

    def heard_hz(self) -> float:
        """Pitch of the last half-second of audio received."""
        return tone_hz(list(self.audio_tail))

    async def close(self) -> None:
        await self.pc.close()
        readers = tuple(self._readers)
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


# --- bench-scale participants: pre-encoded media out, (almost) no decoding in -------------


def encode_vp8_loop(
    width: int = 640,
    height: int = 480,
    *,
    fps: int = 30,
    bitrate: int = 1_000_000,
    period: int = 64,
) -> list[bytes]:
    """Encode `period + 1` frames of a scrolling gradient: a keyframe, then P-frames only.

    The picture repeats every `period` frames, so `LoopedVideoTrack` can replay frames
    1..period forever (P-frames decoded on an identical picture) and needs frame 0, the only
    keyframe, just when asked: like a browser, it makes keyframes only on request.
    """
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuv420p"
    codec.bit_rate = bitrate
    codec.time_base = fractions.Fraction(1, fps)
    codec.gop_size = 1 << 20
    codec.options = {
        "deadline": "realtime",
        "cpu-used": "8",
        "lag-in-frames": "0",
        "minrate": str(bitrate),
        "maxrate": str(bitrate),
        "bufsize": str(bitrate),
    }
    ramp = bytes(range(256)) * (2 + (width + height) // 256)
    step = 256 // period or 1
    packets: list[bytes] = []
    for t in range(period + 1):
        frame = VideoFrame(width=width, height=height, format="yuv420p")
        luma, cb, cr = frame.planes
        shift = (step * t) % 256
        luma.update(
            b"".join(
                ramp[(row + shift) % 256 : (row + shift) % 256 + luma.line_size]
                for row in range(height)
            )
        )
        cb.update(bytes([128]) * cb.buffer_size)
        cr.update(bytes([128]) * cr.buffer_size)
        frame.pts = t
        packets.extend(bytes(p) for p in codec.encode(frame))
    packets.extend(bytes(p) for p in codec.encode(None))
    if len(packets) != period + 1 or packets[0][0] & 0x01:
        raise RuntimeError("libvpx did not produce one frame per picture, keyframe first")
    return packets


def encode_opus_loop(hz: float, frames: int = 50) -> list[bytes]:
    """Encode `frames` 20 ms Opus frames of a tone, to be replayed in a loop."""
    encoder = OpusEncoder()
    packets: list[bytes] = []
    n = 0
    step = 2 * math.pi * hz / SAMPLE_RATE
    while len(packets) < frames:
        pcm = array("h", (int(8000 * math.sin(step * (n + i))) for i in range(AUDIO_SAMPLES)))
        frame = AudioFrame(format="s16", layout="mono", samples=AUDIO_SAMPLES)
        frame.planes[0].update(pcm.tobytes())
        frame.pts = n
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        n += AUDIO_SAMPLES
        payloads, _ = encoder.encode(frame)
        packets.extend(payloads)
    return packets[:frames]


class _PacedPacketTrack(MediaStreamTrack):
    """Replays pre-encoded frames in real time as `av.Packet`, for `RTCRtpSender.pack()`."""

    def __init__(self, kind: str, frames: list[bytes], clock_rate: int, frame_ticks: int) -> None:
        super().__init__()
        self.kind = kind
        self._frames = frames
        self._time_base = fractions.Fraction(1, clock_rate)
        self._ticks = frame_ticks
        self._index = 0
        self._pts = 0
        self._t0: float | None = None

    def _next(self) -> bytes:
        data = self._frames[self._index]
        self._index = (self._index + 1) % len(self._frames)
        return data

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._t0 is None:
            self._t0 = loop.time()
        else:
            self._pts += self._ticks
            await asyncio.sleep(self._t0 + self._pts * self._time_base - loop.time())
        packet = av.Packet(self._next())
        packet.pts = self._pts
        packet.time_base = self._time_base
        return packet


class LoopedVideoTrack(_PacedPacketTrack):
    """A camera at 30 fps whose encoder only makes a keyframe when asked (PLI/FIR)."""

    def __init__(self, frames: list[bytes], fps: int = 30) -> None:
        super().__init__("video", frames, 90_000, 90_000 // fps)
        self._index = 0  # frame 0, the keyframe, comes first
        self.keyframes_sent = 0

    def request_keyframe(self) -> None:
        self._index = 0

    def _next(self) -> bytes:
        if self._index == 0:
            self.keyframes_sent += 1
        data = self._frames[self._index]
        self._index = self._index + 1 if self._index + 1 < len(self._frames) else 1
        return data


class LoopedAudioTrack(_PacedPacketTrack):
    """A microphone replaying Opus frames, 20 ms each."""

    def __init__(self, frames: list[bytes]) -> None:
        super().__init__("audio", frames, SAMPLE_RATE, AUDIO_SAMPLES)


class EncodedParticipant:
    """A browser stand-in cheap enough to run dozens per process, for benchmarks.

    It sends pre-encoded VP8 and Opus (nothing is encoded at run time), answers keyframe
    requests like a browser, and taps what it receives with `EncodedSource`: only the first
    remote video frame is decoded, to time when the participant would first see the other.
    """

    def __init__(
        self,
        video_frames: list[bytes],
        audio_frames: list[bytes],
        configuration: RTCConfiguration | None = None,
    ) -> None:
        self.pc = RTCPeerConnection(configuration or RTCConfiguration(iceServers=[]))
        self.video_out = LoopedVideoTrack(video_frames)
        self.audio_out = LoopedAudioTrack(audio_frames)
        self.first_video_at: float | None = None
        self.first_video = asyncio.Event()
        self.video_frames = 0
        self.video_bytes = 0
        self.audio_frames = 0
        self._sources: list[EncodedSource] = []
        self._readers: list[asyncio.Task[None]] = []

    async def answer(self, offer: Mapping[str, str]) -> dict[str, str]:
        await self.pc.setRemoteDescription(_description(offer))
        for transceiver in self.pc.getTransceivers():
            kind = transceiver.kind
            source = EncodedSource(transceiver.receiver, kind)
            self._sources.append(source)
            self._readers.append(asyncio.ensure_future(self._read(source.subscribe())))
        self.pc.addTrack(self.audio_out)
        watch_sender(
            self.pc.addTrack(self.video_out),
            on_keyframe_request=self.video_out.request_keyframe,
            on_bitrate=lambda _bitrate: None,
        )
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return {"type": self.pc.localDescription.type, "sdp": self.pc.localDescription.sdp}

    async def _read(self, track: MediaStreamTrack) -> None:
        decoder = av.CodecContext.create("libvpx", "r") if track.kind == "video" else None
        while True:
            try:
                packet = await track.recv()
            except MediaStreamError:
                return
            if decoder is None:
                self.audio_frames += 1
                continue
            # The room forwards video without decoding it: what arrives is encoded packets.
            assert isinstance(packet, av.Packet), type(packet)
            self.video_frames += 1
            self.video_bytes += packet.size
            if self.first_video_at is None and decoder.decode(packet):
                self.first_video_at = asyncio.get_running_loop().time()
                self.first_video.set()

    async def close(self) -> None:
        await self.pc.close()
        for source in self._sources:
            await source.stop()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
