"""`bench/rooms.py` in its smallest configuration: one forwarding room for two seconds.

The benchmark's figures mean something only if its participants really reach each other
through the real server (links, WebSocket signaling, admission, media); this checks that,
and that the server it spawns stops cleanly on SIGTERM. No timing is asserted: the machine
running the tests is not the benchmark's.
"""

from __future__ import annotations

import pytest

from bench.rooms import run_against_spawned_server

pytestmark = pytest.mark.slow


async def test_one_forward_room_passes_video_both_ways() -> None:
    result = await run_against_spawned_server("forward", 1, duration=2.0, warmup=0.5)

    assert result.errors == 0, "the server refused something the participants sent"
    # Both decoded a first frame of the other: the evaluator once it admitted the candidate,
    # the candidate once admitted.
    assert {role: len(ms) for role, ms in result.join_ms_by_role.items()} == {
        "evaluator": 1,
        "candidate": 1,
    }
    # And the video kept coming during the measured window, to each of them.
    assert len(result.video_frames) == 2
    assert all(frames > 0 for frames in result.video_frames), result.video_frames
    assert result.recv_kbps > 0
    assert result.server_exit == 0, "the server did not shut down cleanly on SIGTERM"
