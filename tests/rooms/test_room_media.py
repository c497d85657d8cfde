"""Real media through the real server: two aiortc participants join over loopback WebSockets.

The evaluator films red and hums 440 Hz, the candidate blue at 1000 Hz (then green and
yellow when they reconnect or open a second tab): what each one decodes tells whose media
the server forwarded. The candidate trickles its ICE candidates the way a browser does. The
connection test sends a participant's own media back.
These tests are about media, not storage: they run on SQLite only (`db_url` below).
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from rooms.signaling import CloseCode
from scheduler import keys
from scheduler.clock import FrozenClock
from tests.rooms.room_support import (
    Booked,
    Tab,
    inside_window,
    join,
    lobby_media,
    no_pending_tasks,
)
from tests.support.polling import eventually
from tests.support.synthetic import BLUE, RED, SyntheticParticipant, close_to

pytestmark = pytest.mark.slow

GREEN = (0, 255, 0)
YELLOW = (255, 255, 0)
EVALUATOR_HZ, CANDIDATE_HZ = 440, 1000


@pytest.fixture
def db_url(sqlite_template: Path, tmp_path: Path) -> str:
    """SQLite only: the database plays no part in what these tests check."""
    path = tmp_path / "viva.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


def hears(participant: SyntheticParticipant, hz: float) -> bool:
    return abs(participant.heard_hz() - hz) < hz * 0.1


def sees(participant: SyntheticParticipant, rgb: tuple[int, int, int]) -> bool:
    return participant.last_video is not None and close_to(participant.colour(), rgb)


async def test_nothing_passes_in_the_lobby_then_each_sees_and_hears_the_other(
    client: TestClient, booked: Booked
) -> None:
    evaluator = SyntheticParticipant(RED, EVALUATOR_HZ)
    candidate = SyntheticParticipant(BLUE, CANDIDATE_HZ)
    evaluator_tab = await join(client, booked.evaluator_token, evaluator)
    candidate_tab = await join(client, booked.candidate_token, candidate, trickle=True)
    await eventually(
        lambda: evaluator.pc.connectionState == candidate.pc.connectionState == "connected",
        "both peer connections up (the candidate's over trickled candidates)",
    )
    room = client.app[keys.ROOMS].rooms[booked.booking_id]
    source = room.bridge.source("candidate", "video")
    assert source is not None
    await eventually(lambda: source.stats.frames >= 15, "the candidate's camera at the server")

    # The lobby: the server receives both cameras and passes nothing on.
    await lobby_media(room)
    assert (evaluator.video_frames, evaluator.audio_frames) == (0, 0)
    assert (candidate.video_frames, candidate.audio_frames) == (0, 0)
    for role in ("evaluator", "candidate"):
        for kind in ("audio", "video"):
            assert room.bridge.outlet(role, kind).packets == 0

    await evaluator_tab.send(type="admit")
    await eventually(
        lambda: (
            min(evaluator.video_frames, candidate.video_frames) >= 15
            and min(evaluator.audio_frames, candidate.audio_frames) >= 25
        ),
        "video and audio both ways after admission",
    )
    assert close_to(evaluator.colour(), BLUE), evaluator.colour()
    assert close_to(candidate.colour(), RED), candidate.colour()
    assert hears(evaluator, CANDIDATE_HZ), evaluator.heard_hz()
    assert hears(candidate, EVALUATOR_HZ), candidate.heard_hz()

    await candidate_tab.send(type="leave")
    assert await candidate_tab.closed() == CloseCode.NORMAL
    await evaluator_tab.state(lambda s: not s["present"]["candidate"])
    await candidate.close()
    await evaluator_tab.close()
    await evaluator.close()
    await client.close()
    assert not client.app[keys.ROOMS].rooms
    assert not await no_pending_tasks(), "tasks left running after the server closed"


async def test_reconnection_and_a_second_tab_leave_the_other_side_untouched(
    client: TestClient, booked: Booked
) -> None:
    evaluator = SyntheticParticipant(RED, EVALUATOR_HZ)
    evaluator_tab = await join(client, booked.evaluator_token, evaluator)
    first = SyntheticParticipant(BLUE, CANDIDATE_HZ)
    first_tab = await join(client, booked.candidate_token, first)
    await evaluator_tab.send(type="admit")
    await eventually(lambda: sees(evaluator, BLUE) and sees(first, RED), "media both ways")
    room = client.app[keys.ROOMS].rooms[booked.booking_id]
    evaluator_peer = room.bridge.peer("evaluator")

    # The candidate's connection drops; the same link comes back: no new admission needed.
    await first_tab.close()
    await first.close()
    await evaluator_tab.state(lambda s: not s["present"]["candidate"])
    second = SyntheticParticipant(GREEN, 700)
    second_tab = await join(client, booked.candidate_token, second)
    assert second_tab.hello is not None and second_tab.hello["room"]["phase"] == "admitted"
    await eventually(lambda: sees(evaluator, GREEN), "the returning candidate at the evaluator")
    await eventually(lambda: sees(second, RED) and hears(second, EVALUATOR_HZ), "media back")

    # A second tab with the same link takes over; the first is told and closed.
    third = SyntheticParticipant(YELLOW, 1300)
    third_tab = await join(client, booked.candidate_token, third)
    await second_tab.expect("replaced")
    assert await second_tab.closed() == CloseCode.REPLACED
    await eventually(lambda: sees(evaluator, YELLOW), "the second tab at the evaluator")
    await eventually(lambda: hears(evaluator, 1300), "the second tab's microphone")
    await eventually(lambda: sees(third, RED), "the evaluator in the second tab")

    # All along, the evaluator kept one peer connection and was never asked to renegotiate.
    assert room.bridge.peer("evaluator") is evaluator_peer
    assert evaluator.pc.connectionState == "connected"
    offers = [m for m in evaluator_tab.received if m["type"] == "offer"]
    assert len(offers) == 1
    steps = [b - a for a, b in zip(evaluator.video_pts, evaluator.video_pts[1:], strict=False)]
    assert min(steps) > 0, "the evaluator's video timestamps went backwards"

    for tab in (third_tab, evaluator_tab):
        await tab.close()
    for participant in (second, third, evaluator):
        await participant.close()
    await client.close()
    assert not await no_pending_tasks(), "tasks left running after the server closed"


@pytest.mark.parametrize(
    "when",
    [
        pytest.param(timedelta(days=-1), id="the-day-before"),
        pytest.param(timedelta(0), id="in-the-window"),
        pytest.param(timedelta(days=7), id="a-week-after"),
    ],
)
async def test_the_connection_test_returns_ones_own_media_any_day(
    client: TestClient, booked: Booked, clock: FrozenClock, when: timedelta
) -> None:
    clock.set(inside_window(booked) + when)
    me = SyntheticParticipant(GREEN, 700)
    tab = Tab(await client.ws_connect(f"/r/{booked.candidate_token}/echo"))
    hello = await tab.expect("hello")
    assert hello["mode"] == "echo"
    offer = await tab.expect("offer")
    answer = await me.answer({"type": "offer", "sdp": offer["sdp"]})
    await tab.send(type="answer", sdp=answer["sdp"])
    await eventually(lambda: sees(me, GREEN) and hears(me, 700), "my own camera and microphone")
    await tab.send(type="leave")
    assert await tab.closed() == CloseCode.NORMAL
    await me.close()
    await client.close()
    assert not await no_pending_tasks(), "tasks left running after the server closed"
