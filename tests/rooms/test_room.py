"""The room's rules without a server: its window, its transitions, its settings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from rooms.models import RoomState
from rooms.relay import MediaBridge
from rooms.room import (
    Refusal,
    Ticket,
    Window,
    admit,
    check_id,
    end,
    iso,
    move_to,
    state_fields,
    write_notes,
)
from rooms.settings import RoomsSettings
from scheduler.config import load_settings

START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
T = START - timedelta(minutes=3)


def ticket(**changes: object) -> Ticket:
    fields: dict[str, object] = {
        "booking_id": uuid.uuid4(),
        "role": "candidate",
        "display_name": "Camille",
        "other_name": "Évelyne",
        "organisation": "CCI",
        "start": START,
        "end": START + timedelta(minutes=20),
        "locale": "en",
        "timezone": "Europe/Paris",
        "language": "en",
    }
    fields.update(changes)
    return Ticket(**fields)  # type: ignore[arg-type]


def refused(code: str, call: object, *args: object, **kwargs: object) -> None:
    with pytest.raises(Refusal) as info:
        call(*args, **kwargs)  # type: ignore[operator]
    assert info.value.code == code


def test_the_window_is_half_open_around_the_interview() -> None:
    window = Window.of(ticket(), RoomsSettings(open_before_minutes=15, close_after_minutes=30))
    assert window.opens_at == START - timedelta(minutes=15)
    assert window.closes_at == START + timedelta(minutes=50)
    assert window.status(window.opens_at - timedelta(microseconds=1)) == "too_early"
    assert window.status(window.opens_at) == "open"
    assert window.status(window.closes_at - timedelta(microseconds=1)) == "open"
    assert window.status(window.closes_at) == "too_late"


def test_admission_needs_the_candidate_and_happens_once() -> None:
    state = RoomState(uuid.uuid4())
    refused("candidate_absent", admit, state, T, candidate_present=False)
    admitted = admit(state, T, candidate_present=True)
    assert (admitted.admitted_at, admitted.step) == (T, "id_check")
    later = T + timedelta(minutes=1)
    assert admit(admitted, later, candidate_present=False) is admitted


def test_the_interview_starts_after_the_id_check_and_its_timer_once() -> None:
    state = RoomState(uuid.uuid4())
    refused("not_admitted", check_id, state, T, True)
    refused("not_admitted", move_to, state, T, "id_check")
    state = admit(state, T, candidate_present=True)
    refused("id_not_checked", move_to, state, T, "introduction")
    refused("invalid", move_to, state, T, "karaoke")
    checked = check_id(state, T, True)
    assert check_id(checked, T + timedelta(seconds=9), True) is checked  # first time kept
    assert check_id(checked, T, False).id_checked_at is None  # undone while at id_check
    first = move_to(checked, T + timedelta(minutes=1), "role_play")
    assert first.interview_started_at == T + timedelta(minutes=1)
    back = move_to(first, T + timedelta(minutes=9), "introduction")
    assert (back.step, back.interview_started_at) == ("introduction", first.interview_started_at)
    refused("interview_started", check_id, back, T, False)


def test_ending_and_after() -> None:
    state = admit(RoomState(uuid.uuid4()), T, candidate_present=True)
    refused("id_not_checked", end, state, T, "completed")
    refused("invalid", end, state, T, "brilliant")
    absent = end(RoomState(uuid.uuid4()), T, "no_show")  # never admitted: still endable
    assert (absent.outcome, absent.ended_at) == ("no_show", T)
    done = end(check_id(state, T, True), T, "completed")
    for call, args in [
        (admit, ()),
        (check_id, (True,)),
        (move_to, ("discussion",)),
        (end, ("interrupted",)),
    ]:
        kwargs = {"candidate_present": True} if call is admit else {}
        refused("ended", call, done, T, *args, **kwargs)
    assert write_notes(done, "afterwards").notes == "afterwards"  # notes stay open
    refused("invalid", write_notes, done, "x" * 20_001)


def test_the_state_message_never_carries_the_notes() -> None:
    state = RoomState(uuid.uuid4(), notes="private")
    fields = state_fields(state, {"candidate": True, "evaluator": False}, 3, T)
    assert "private" not in str(fields)
    assert fields["phase"] == "lobby" and fields["version"] == 3
    assert fields["now"] == iso(T) == "2026-12-01T07:57:00Z"


def test_settings_are_checked_and_read_from_the_environment() -> None:
    settings = load_settings(
        environ={
            "VIVA_ROOMS_OPEN_BEFORE_MINUTES": "5",
            "VIVA_ROOMS_ICE_SERVERS": '[{"urls": ["stun:stun.example.org:3478"]}]',
            "VIVA_ROOMS_MAX_VIDEO_BITRATE": "600000",
        }
    ).rooms
    assert settings.open_before_minutes == 5
    assert settings.ice_servers[0].urls == ["stun:stun.example.org:3478"]
    assert MediaBridge.from_settings(settings)._max_video_bitrate == 600_000
    assert MediaBridge.from_settings(RoomsSettings())._max_video_bitrate is None  # 0: none
    for bad in (
        {"interview_target_minutes": 25},
        {"interview_target_minutes": 10},
        {"recordings_dir": 3},
        {"max_video_bitrate": 1000},
        {"ice_servers": "not json"},
        {"no_show_after_minutes": 0},
    ):
        with pytest.raises(ValidationError):
            RoomsSettings.model_validate(bad)
