"""Recording a room: each participant's video and sound into one Matroska file on the server.

Forwarding never decodes, so the recorder is the only consumer of decoded media
(`MediaBridge.decoded`); aiortc's `MediaRecorder` encodes it (H.264 and AAC in Matroska,
which stays readable up to the last cluster written if the process dies mid-interview).

Encoding is the expensive part (about 0.2–0.7 core per 640×480 stream, by content), and
`MediaRecorder` encodes inside its event loop. Run in the relay's loop, one recorded room
would delay every other room's packets by tens of milliseconds at a time. So all recordings
run in one `RecordingWorker` thread with its own event loop: PyAV releases the GIL while
encoding, and the relay's loop keeps its pace (measured: loop lag p99 ~4 ms against ~180 ms
when encoding in the same loop).

Timing: each of the four tracks (evaluator/candidate × video/audio) is stamped with the
wall-clock time its frames arrive, on one timeline that starts with the recording. A
participant who arrives late, reconnects or drops out leaves a gap in their video and
silence in their sound, and the tracks stay in sync with each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaRecorder
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame

from rooms.relay import Kind, Role
from rooms.settings import X264Preset

__all__ = ["FORMAT", "SUFFIX", "RecordingWorker", "RoomRecorder"]

log = logging.getLogger("viva.rooms")

FORMAT = "matroska"
SUFFIX = ".mkv"
# The file's streams, in this order: players show the first video stream by default.
TRACKS: tuple[tuple[Role, Kind], ...] = tuple(
    (role, kind) for role in ("evaluator", "candidate") for kind in ("video", "audio")
)
VIDEO_RATE = 30
# How long the recording waits for both cameras' first frames before writing anything, and
# the picture size of a camera that has sent none by then (see RoomRecorder._open_gate).
GEOMETRY_WAIT_SECONDS = 3.0
DEFAULT_SIZE = (640, 480)  # MediaRecorder's H.264 stream: frames are stamped in 1/30 s ticks
# Frames waiting for the encoder, per track: beyond this the encoder is behind (CPU
# starvation) and the oldest are dropped rather than held in memory without bound.
QUEUE_VIDEO_FRAMES = 60
QUEUE_AUDIO_FRAMES = 250
# Sound that arrives this much later than the samples written so far is a gap (the
# participant was away, or the network stalled): silence fills it, keeping lips in sync.
AUDIO_GAP_SECONDS = 0.2
# A video frame stamped this many ticks ahead of the wall clock is dropped (a burst after a
# stall), so that the video never drifts ahead of the sound.
VIDEO_MAX_LEAD_TICKS = 3

T = TypeVar("T")


class RecordingWorker:
    """The thread where every recording of this process encodes, started on first use.

    One thread for all rooms: recordings are rare and each is mostly waiting for frames;
    the encoders' own threads do the heavy lifting.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                ready = threading.Event()
                loop = asyncio.new_event_loop()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.set_exception_handler(_log_failure)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name="viva-recorder", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` in the worker's loop and wait for it from the caller's loop."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return await asyncio.wrap_future(future)

    def call(self, fn: Any, *args: Any) -> None:
        """Schedule `fn(*args)` in the worker's loop (from any thread)."""
        self.loop.call_soon_threadsafe(fn, *args)

    async def close(self) -> None:
        """Stop the thread (recordings must have been stopped first)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.get_running_loop().run_in_executor(None, thread.join)
        loop.close()


def _log_failure(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A recorder task that failed (an encoder or the muxer refusing a frame) is logged."""
    log.error("recording: %s", context.get("message"), exc_info=context.get("exception"))


class _Feed(MediaStreamTrack):
    """One recorded track, living in the worker's loop; frames come from the room's loop.

    `recv()` stamps each frame on the recording's timeline (see the module docstring), so
    whatever the upstream's own timestamps (they restart at 0 with every reconnection), the
    encoder and the muxer see a steady, increasing clock.
    """

    def __init__(self, kind: Kind, started: float, gate: asyncio.Event | None = None) -> None:
        super().__init__()
        self.kind = kind
        self._started = started
        self._gate = gate
        limit = QUEUE_VIDEO_FRAMES if kind == "video" else QUEUE_AUDIO_FRAMES
        self._queue: deque[tuple[VideoFrame | AudioFrame, float]] = deque(maxlen=limit)
        self._pending: deque[AudioFrame] = deque()  # silence to emit before the next frame
        self._wakeup = asyncio.Event()
        self._ended = False
        self._tick = -1  # video: last 1/30 s tick written
        self._samples = 0  # audio: samples written

    def push(self, frame: VideoFrame | AudioFrame, arrived: float) -> None:
        self._queue.append((frame, arrived))
        self._wakeup.set()

    def end(self) -> None:
        self._ended = True
        self._wakeup.set()

    async def recv(self) -> VideoFrame | AudioFrame:
        if self._gate is not None:
            await self._gate.wait()
        while True:
            if self._pending:
                return self._pending.popleft()
            while not self._queue:
                if self._ended or self.readyState != "live":
                    raise MediaStreamError
                self._wakeup.clear()
                await self._wakeup.wait()
            frame, arrived = self._queue.popleft()
            elapsed = arrived - self._started
            if isinstance(frame, VideoFrame):
                stamped = self._stamp_video(frame, elapsed)
                if stamped is not None:
                    return stamped
            elif isinstance(frame, AudioFrame):
                return self._stamp_audio(frame, elapsed)

    def _stamp_video(self, frame: VideoFrame, elapsed: float) -> VideoFrame | None:
        real = elapsed * VIDEO_RATE
        tick = max(self._tick + 1, round(real))
        if tick - real > VIDEO_MAX_LEAD_TICKS:
            return None
        self._tick = tick
        frame.pts = tick
        frame.time_base = Fraction(1, VIDEO_RATE)
        return frame

    def _stamp_audio(self, frame: AudioFrame, elapsed: float) -> AudioFrame:
        rate = frame.sample_rate
        begins = round(elapsed * rate) - frame.samples  # where this frame belongs in real time
        gap = begins - self._samples
        if gap > AUDIO_GAP_SECONDS * rate:
            self._pending.extend(_silence(frame, gap))
        self._pending.append(frame)
        for item in self._pending:
            item.pts = self._samples
            item.time_base = Fraction(1, rate)
            self._samples += item.samples
        return self._pending.popleft()


def _silence(like: AudioFrame, samples: int) -> list[AudioFrame]:
    """`samples` of silence in `like`'s format, in frames the size browsers send (20 ms)."""
    rate = like.sample_rate
    chunk = max(1, rate // 50)
    frames = []
    while samples > 0:
        n = min(chunk, samples)
        silent = AudioFrame(format=like.format.name, layout=like.layout.name, samples=n)
        for plane in silent.planes:
            plane.update(bytes(plane.buffer_size))
        silent.sample_rate = rate
        frames.append(silent)
        samples -= n
    return frames


@dataclass
class _Tap:
    """Where one recorded track's frames come from now (changes when a participant rejoins)."""

    track: MediaStreamTrack
    pump: asyncio.Task[None]


class RoomRecorder:
    """One room session recorded into one file: started at admission, stopped at the end.

    `attach` is called (from the room's loop) each time a participant's media becomes
    available, with a decoded copy of it; everything else happens in the worker's loop.
    """

    def __init__(
        self, path: Path, worker: RecordingWorker, *, preset: X264Preset = "ultrafast"
    ) -> None:
        self.path = path
        self._worker = worker
        self._preset = preset
        self._recorder: MediaRecorder | None = None
        self._feeds: dict[tuple[Role, Kind], _Feed] = {}
        self._taps: dict[tuple[Role, Kind], _Tap] = {}
        # Worker loop: the video streams' geometry, fixed before anything is written.
        self._gate: asyncio.Event | None = None
        self._gate_timer: asyncio.TimerHandle | None = None
        self._sizes: dict[Role, tuple[int, int]] = {}
        self._video_streams: dict[Role, Any] = {}
        self._stopped = False
        self.frames = {track: 0 for track in TRACKS}  # frames handed on, per track (stats)

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await self._worker.run(self._open(time.monotonic()))

    async def _open(self, started: float) -> None:
        recorder = MediaRecorder(str(self.path), format=FORMAT)
        self._gate = asyncio.Event()
        for role, kind in TRACKS:
            feed = _Feed(kind, started, self._gate)
            self._feeds[role, kind] = feed
            recorder.addTrack(feed)
        self._video_streams = _video_streams(
            recorder,
            self._preset,
            {role: self._feeds[role, kind] for role, kind in TRACKS if kind == "video"},
        )
        loop = asyncio.get_running_loop()
        self._gate_timer = loop.call_later(GEOMETRY_WAIT_SECONDS, self._open_gate)
        await recorder.start()
        self._recorder = recorder

    def _push(self, role: Role, kind: Kind, frame: VideoFrame | AudioFrame, at: float) -> None:
        """Worker loop: hand a frame to its feed, learning each camera's picture size first."""
        if isinstance(frame, VideoFrame) and role not in self._sizes:
            self._sizes[role] = (frame.width, frame.height)
            if all(r in self._sizes for r, k in TRACKS if k == "video"):
                self._open_gate()
        self._feeds[role, kind].push(frame, at)

    def _open_gate(self) -> None:
        """Fix each video stream's size, then let frames through to the encoders.

        PyAV writes the file's header, opening every encoder not yet open, with the first
        packet of any stream; `MediaRecorder` sets a video stream's size only from its first
        frame. A sound packet written before a camera's first frame would open that encoder
        at a default size and the camera's frames would then be refused. So nothing passes
        until both cameras' sizes are known (or GEOMETRY_WAIT_SECONDS have passed: a
        participant without a camera gets the default size). Later size changes (browsers
        adapt resolution to bandwidth) are scaled to the first size by PyAV.
        """
        if self._gate is None or self._gate.is_set():
            return
        if self._gate_timer is not None:
            self._gate_timer.cancel()
            self._gate_timer = None
        for role, context in self._video_streams.items():
            context.stream.width, context.stream.height = self._sizes.get(role, DEFAULT_SIZE)
            # MediaRecorder would set the size again from the stream's first frame, which
            # PyAV refuses once the encoder is open (opened by another stream's first packet).
            context.started = True
        self._gate.set()

    def attach(self, role: Role, kind: Kind, track: MediaStreamTrack) -> None:
        """Record `track` as `role`'s `kind` from now on, replacing what was recorded before."""
        if self._stopped:
            track.stop()
            return
        previous = self._taps.pop((role, kind), None)
        if previous is not None:
            previous.pump.cancel()
            previous.track.stop()
        pump = asyncio.ensure_future(self._pump(role, kind, track))
        self._taps[role, kind] = _Tap(track, pump)

    async def _pump(self, role: Role, kind: Kind, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return  # the participant left; a rejoin attaches a new track
            self.frames[role, kind] += 1
            self._worker.call(self._push, role, kind, frame, time.monotonic())

    async def stop(self) -> None:
        """Finish the file (encoders flushed, container closed); safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        taps = tuple(self._taps.values())
        self._taps.clear()
        for tap in taps:
            tap.pump.cancel()
            tap.track.stop()
        await asyncio.gather(*(tap.pump for tap in taps), return_exceptions=True)
        await self._worker.run(self._close())

    async def _close(self) -> None:
        self._open_gate()  # stopped within the first seconds: fix the sizes all the same
        for feed in self._feeds.values():
            feed.end()
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            try:
                await recorder.stop()
            except Exception:
                log.exception("could not finish the recording %s", self.path)

    @property
    def size(self) -> int:
        with contextlib.suppress(OSError):
            return self.path.stat().st_size
        return 0


def _video_streams(
    recorder: MediaRecorder, preset: X264Preset, feeds: dict[Role, _Feed]
) -> dict[Role, Any]:
    """Each role's video stream context in `recorder`, its encoder set to x264's `preset`.

    aiortc 1.16's MediaRecorder keeps its streams in a private mapping (track -> context
    with `stream` and `started`) and offers no way to choose an encoder preset or a picture
    size; this is the only place that reaches in (tests/rooms/test_recording.py covers it).
    If the mapping changes, recording still works with x264's default preset, but a sound
    packet written before a camera's first frame may cost that camera's track.
    """
    contexts = getattr(recorder, "_MediaRecorder__tracks", None)
    if not isinstance(contexts, dict):
        log.warning("aiortc's MediaRecorder changed: recording with its defaults")
        return {}
    streams: dict[Role, Any] = {}
    for role, feed in feeds.items():
        context = contexts.get(feed)
        stream = getattr(context, "stream", None)
        if stream is None or not hasattr(context, "started"):
            log.warning("aiortc's MediaRecorder changed: recording with its defaults")
            return {}
        if stream.codec_context.name == "libx264":
            stream.codec_context.options = {"preset": preset}
        streams[role] = context
    return streams
