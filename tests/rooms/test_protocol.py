"""The wire protocol and the messages the server builds, without a server: the pieces
`rooms.protocol`, `rooms.messages` and `rooms.handlers` own (the whole conversation over a
real WebSocket is tests/rooms/test_signaling.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from aiohttp import web

from rooms.handlers import EVALUATOR_ONLY, HANDLERS
from rooms.messages import change_error
from rooms.protocol import (
    BURST_MESSAGES,
    REFILL_PER_SECOND,
    Connection,
    ProtocolError,
    answer_sdp,
    trickled,
    ws_url,
)
from rooms.room import Window
from rooms.settings import RoomsSettings
from tests.rooms.test_room import START, ticket

CANDIDATE = "candidate:1 1 udp 2122260223 192.0.2.10 50000 typ host"


def test_another_process_is_reached_over_the_same_scheme() -> None:
    assert ws_url("https://rooms-2.viva.example/", "tok") == "wss://rooms-2.viva.example/r/tok/ws"
    assert ws_url("http://127.0.0.1:8081", "tok") == "ws://127.0.0.1:8081/r/tok/ws"


async def test_the_token_bucket_lets_a_burst_through_then_refills_at_its_rate() -> None:
    connection = Connection(web.WebSocketResponse(), ticket())
    assert all(connection.allow(0.0) for _ in range(BURST_MESSAGES))
    assert not connection.allow(0.0)
    assert connection.allow(1 / REFILL_PER_SECOND)
    assert not connection.allow(1 / REFILL_PER_SECOND)


async def test_answers_and_candidates_come_in_the_order_the_protocol_allows() -> None:
    connection = Connection(web.WebSocketResponse(), ticket())
    with pytest.raises(ProtocolError) as early:
        answer_sdp(connection, {"type": "answer", "sdp": "v=0"})
    assert early.value.code == "out_of_order"
    connection.offered = True
    assert answer_sdp(connection, {"type": "answer", "sdp": "v=0"}) == "v=0"
    with pytest.raises(ProtocolError) as before_answer:
        trickled(connection, {"type": "candidate", "candidate": CANDIDATE, "sdpMid": "0"})
    assert before_answer.value.code == "out_of_order"
    connection.answered = True
    parsed = trickled(connection, {"type": "candidate", "candidate": CANDIDATE, "sdpMid": "0"})
    assert parsed is not None and parsed.ip == "192.0.2.10" and parsed.sdpMid == "0"
    assert trickled(connection, {"type": "candidate", "candidate": None}) is None


@pytest.mark.parametrize(
    "message",
    [
        {"candidate": CANDIDATE},  # neither sdpMid nor sdpMLineIndex
        {"candidate": CANDIDATE, "sdpMLineIndex": True},
        {"candidate": "candidate:1 1 udp", "sdpMid": "0"},
        {"candidate": 42, "sdpMid": "0"},
    ],
)
async def test_a_malformed_candidate_is_invalid(message: dict[str, object]) -> None:
    connection = Connection(web.WebSocketResponse(), ticket(), offered=True, answered=True)
    with pytest.raises(ProtocolError) as refused:
        trickled(connection, {"type": "candidate", **message})
    assert refused.value.code == "invalid"


def test_a_move_tells_the_new_time_and_window_and_a_cancellation_only_why() -> None:
    settings = RoomsSettings()
    start, end = START + timedelta(days=1), START + timedelta(days=1, minutes=20)
    moved = change_error("moved", settings, start=start, end=end)
    window = Window.around(start, end, settings)
    assert moved["code"] == "moved" and moved["start"] == "2026-12-02T08:00:00Z"
    assert moved["opens_at"] == window.opens_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    cancelled = change_error("cancelled", settings)
    assert set(cancelled) == {"type", "code", "message"}


def test_every_evaluator_only_message_has_a_handler() -> None:
    assert EVALUATOR_ONLY <= set(HANDLERS)
    assert {"answer", "candidate", "ping", "leave"} <= set(HANDLERS) - EVALUATOR_ONLY
