"""The media core of a room: two synthetic participants, each with its own server peer.

The evaluator films red and hums 440 Hz, the candidate films blue and hums 1000 Hz; each
must see and hear the other one. In forward mode the server must neither decode nor encode
(it only packs), keyframe requests must cross the server, and a late joiner must get video
from a keyframe made on request. Real time, over loopback; timeouts only guard against hangs.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterator
from struct import pack
from typing import Any

import pytest
from aiortc import RTCRtpReceiver
from aiortc.codecs.opus import OpusDecoder, OpusEncoder
from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder
from aiortc.rtp import RTCP_PSFB_APP, RTCP_PSFB_FIR, RtcpPsfbPacket, pack_remb_fci

from tests.support.polling import eventually
from tests.support.synthetic import BLUE, RED, SyntheticParticipant, close_to, mean_rgb, tone_hz

pytestmark = pytest.mark.slow

GREEN = (0, 255, 0)
EVALUATOR_HZ, CANDIDATE_HZ, NEWCOMER_HZ = 440, 1000, 700
AWAY_SECONDS = 0.5


def video_receiver(participant: SyntheticParticipant) -> RTCRtpReceiver:
    return next(t.receiver for t in participant.pc.getTransceivers() if t.kind == "video")


def server_sender_ssrcs(participant: SyntheticParticipant) -> list[int]:
    """SSRCs of the server's video sender on this participant's leg (RTX one included)."""
    sources = [s.source for s in video_receiver(participant).getSynchronizationSources()]
    assert sources, "no video received from the server yet"
    return sources


@pytest.fixture
def codec_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, set[int]]]:
    """Which codec instances encoded, packed or decoded anything, by "Class.method"."""
    calls: dict[str, set[int]] = defaultdict(set)

    def spy(cls: type, name: str) -> None:
        original = getattr(cls, name)
        key = f"{cls.__name__}.{name}"

        def wrapper(self: object, *args: Any, **kwargs: Any) -> Any:
            calls[key].add(id(self))
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)

    for cls in (Vp8Encoder, OpusEncoder):
        spy(cls, "encode")
        spy(cls, "pack")
    for cls in (Vp8Decoder, OpusDecoder):
        spy(cls, "decode")
    yield calls


async def join_both(room: Any, **options: Any) -> tuple[SyntheticParticipant, SyntheticParticipant]:
    evaluator = await room.join("evaluator", SyntheticParticipant(RED, EVALUATOR_HZ, **options))
    candidate = await room.join("candidate", SyntheticParticipant(BLUE, CANDIDATE_HZ, **options))
    await eventually(
        lambda: (
            min(evaluator.video_frames, candidate.video_frames) >= 15
            and min(evaluator.audio_frames, candidate.audio_frames) >= 25
        ),
        "video and audio both ways",
    )
    return evaluator, candidate


@pytest.mark.parametrize("mode", ["forward", "transcode"])
async def test_each_participant_sees_and_hears_the_other(
    make_room: Callable[..., Any], codec_calls: dict[str, set[int]], mode: str
) -> None:
    room = make_room(mode)
    evaluator, candidate = await join_both(room)

    assert close_to(evaluator.colour(), BLUE), evaluator.colour()
    assert close_to(candidate.colour(), RED), candidate.colour()
    assert abs(evaluator.heard_hz() - CANDIDATE_HZ) < CANDIDATE_HZ * 0.1, evaluator.heard_hz()
    assert abs(candidate.heard_hz() - EVALUATOR_HZ) < EVALUATOR_HZ * 0.1, candidate.heard_hz()

    outlets = [
        room.bridge.outlet(role, kind)
        for role in ("evaluator", "candidate")
        for kind in ("audio", "video")
    ]
    # Two participants each encode what they send and decode what they get: 2 instances each.
    if mode == "forward":
        assert all(o.packets > 0 and o.frames == 0 for o in outlets)
        assert len(codec_calls["Vp8Encoder.encode"]) == 2
        assert len(codec_calls["OpusEncoder.encode"]) == 2
        assert len(codec_calls["Vp8Decoder.decode"]) == 2
        assert len(codec_calls["OpusDecoder.decode"]) == 2
        # ... and the server only packs, one packer per sender.
        assert len(codec_calls["Vp8Encoder.pack"]) == 2
        assert len(codec_calls["OpusEncoder.pack"]) == 2
        for role in ("evaluator", "candidate"):
            for kind in ("audio", "video"):
                assert room.bridge.source(role, kind).stats.frames_to_decoder == 0
    else:
        assert all(o.frames > 0 and o.packets == 0 for o in outlets)
        assert len(codec_calls["Vp8Encoder.encode"]) == 4
        assert len(codec_calls["Vp8Decoder.decode"]) == 4
        assert len(codec_calls["OpusEncoder.encode"]) == 4
        assert len(codec_calls["OpusDecoder.decode"]) == 4
        assert not codec_calls["Vp8Encoder.pack"]

    await room.close()  # the make_room fixture then checks that no task is left running


async def test_late_joiner_sees_video_from_a_keyframe_made_on_request(
    make_room: Callable[..., Any],
) -> None:
    """Without a forwarded PLI the evaluator's encoder would make no keyframe for 100 s."""
    room = make_room("forward")
    loop = asyncio.get_running_loop()
    evaluator = await room.join(
        "evaluator", SyntheticParticipant(RED, EVALUATOR_HZ, ignore_remb=True)
    )
    source = room.bridge.source("evaluator", "video")
    await eventually(
        lambda: source.stats.frames >= 60, "2 s of the evaluator's video at the server"
    )
    keyframes_before = source.stats.keyframes

    joined_at = loop.time()
    candidate = await room.join("candidate", SyntheticParticipant(BLUE, CANDIDATE_HZ))
    await eventually(lambda: candidate.video_frames > 0, "the candidate's first video frame")

    assert close_to(candidate.colour(), RED), candidate.colour()
    requests = [t for t in evaluator.keyframe_requests if t >= joined_at]
    assert requests, "the evaluator's browser was never asked for a keyframe"
    assert candidate.first_video_at is not None and requests[0] <= candidate.first_video_at
    assert source.stats.keyframes > keyframes_before
    print(f"first frame {candidate.first_video_at - joined_at:.2f} s after joining")


async def test_keyframe_request_from_one_receiver_reaches_the_other_sender(
    make_room: Callable[..., Any],
) -> None:
    room = make_room("forward")
    evaluator, candidate = await join_both(room, ignore_remb=True)
    receiver = video_receiver(candidate)
    ssrcs = server_sender_ssrcs(candidate)

    async def send_plis() -> None:
        for ssrc in ssrcs:
            await receiver._send_rtcp_pli(ssrc)

    async def send_firs() -> None:
        # aiortc routes FIR by media SSRC (RFC 5104 would have 0 there, and the SSRC in FCI).
        for ssrc in ssrcs:
            fci = pack("!LB3x", ssrc, 1)
            await receiver._send_rtcp(
                RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=0, media_ssrc=ssrc, fci=fci)
            )

    # Ask from the candidate's side, PLI then FIR, each once no request is pending upstream:
    # a pending one is retried on its own, which would reach the evaluator without ours.
    # (The PLI_MIN_INTERVAL rate limit only delays ours; the wait below covers it.)
    source = room.bridge.source("evaluator", "video")
    assert source is not None
    for name, send in (("PLI", send_plis), ("FIR", send_firs)):
        await eventually(lambda: not source._keyframe_wanted, "the last keyframe request answered")
        before = len(evaluator.keyframe_requests)
        await send()
        await eventually(
            lambda before=before: len(evaluator.keyframe_requests) > before,
            f"the candidate's {name} at the evaluator's sender",
        )


async def test_bandwidth_cap_and_downstream_estimate_reach_the_far_sender(
    make_room: Callable[..., Any],
) -> None:
    room = make_room("forward", max_video_bitrate=400_000)
    evaluator, candidate = await join_both(room)
    await eventually(lambda: bool(evaluator.rembs), "a REMB at the evaluator's sender")
    assert max(evaluator.rembs) <= 400_000, evaluator.rembs

    # The candidate's side reports a narrower path than the cap: the evaluator learns of it.
    remb = RtcpPsfbPacket(
        fmt=RTCP_PSFB_APP,
        ssrc=0,
        media_ssrc=0,
        fci=pack_remb_fci(300_000, server_sender_ssrcs(candidate)),
    )
    await video_receiver(candidate)._send_rtcp(remb)
    await eventually(
        lambda: any(bitrate <= 300_000 for bitrate in evaluator.rembs),
        "the candidate's estimate at the evaluator's sender",
    )


async def test_recorder_gets_a_decoded_copy_and_forwarding_stays_encoded(
    make_room: Callable[..., Any], codec_calls: dict[str, set[int]]
) -> None:
    room = make_room("forward")
    await join_both(room)

    video = room.bridge.decoded("evaluator", "video")
    audio = room.bridge.decoded("candidate", "audio")
    frame = await asyncio.wait_for(video.recv(), 20)
    assert close_to(mean_rgb(frame), RED), mean_rgb(frame)
    heard = [await asyncio.wait_for(audio.recv(), 20) for _ in range(25)]
    assert abs(tone_hz(heard) - CANDIDATE_HZ) < CANDIDATE_HZ * 0.1

    assert room.bridge.source("evaluator", "video").stats.frames_to_decoder > 0
    assert room.bridge.outlet("candidate", "video").frames == 0
    assert len(codec_calls["Vp8Decoder.decode"]) == 3  # both participants + the recorder copy
    assert len(codec_calls["Vp8Encoder.encode"]) == 2  # only the participants
    video.stop()
    audio.stop()
    await room.close()  # the make_room fixture then checks that no task is left running


@pytest.mark.parametrize("mode", ["forward", "transcode"])
async def test_participant_who_leaves_and_comes_back_is_seen_again(
    make_room: Callable[..., Any], mode: str
) -> None:
    room = make_room(mode)
    evaluator, _ = await join_both(room)

    await room.leave("candidate")
    assert room.bridge.outlet("evaluator", "video").upstream is None
    seen = evaluator.video_frames
    # Not a wait for anything: the candidate is away for a while, a gap the evaluator's
    # timestamps must show (checked below) while still moving forward.
    await asyncio.sleep(AWAY_SECONDS)

    newcomer = await room.join("candidate", SyntheticParticipant(GREEN, NEWCOMER_HZ))
    await eventually(
        lambda: evaluator.video_frames > seen + 10 and close_to(evaluator.colour(), GREEN),
        "the returning candidate's video at the evaluator",
    )
    await eventually(
        lambda: newcomer.video_frames > 0 and close_to(newcomer.colour(), RED),
        "the evaluator's video at the returning candidate",
    )
    # The new upstream's timestamps start again at 0; the evaluator's browser must still see
    # them move forward (a step back would look like a 32-bit wrap, i.e. a 13-hour jump).
    steps = [b - a for a, b in itertools.pairwise(evaluator.video_pts)]
    assert 0 < min(steps) and max(steps) < 30 * 90_000, (min(steps), max(steps))
    assert max(steps) >= AWAY_SECONDS * 90_000, "the time away is missing from the timestamps"
