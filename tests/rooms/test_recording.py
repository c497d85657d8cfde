"""Recording: an organisation turns it on, the candidate is told, the room is recorded on the
server from the admission to the end, the file holds both participants, the API lists it.

The evaluator films red and hums 440 Hz, the candidate blue at 1000 Hz; the recorded file is
opened with PyAV and decoded, so what is checked is what a person replaying it would see.
"""

from __future__ import annotations

import itertools
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest
from aiohttp.test_utils import TestClient
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame

from rooms.recording import RecordingWorker, _Feed
from scheduler import keys
from scheduler.config import Settings
from tests.rooms.room_support import Booked, Tab, consent, join, lobby_media, no_pending_tasks
from tests.support.polling import eventually
from tests.support.synthetic import BLUE, RED, SyntheticParticipant, close_to, mean_rgb

pytestmark = pytest.mark.slow


@pytest.fixture
def db_url(sqlite_template: Path, tmp_path: Path) -> str:
    """SQLite for the media tests; the store's own test below runs on both databases."""
    path = tmp_path / "viva.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


async def _info(client: TestClient, token: str) -> dict[str, Any]:
    response = await client.get(f"/r/{token}/info")
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


async def _interview(
    client: TestClient, booked: Booked
) -> tuple[Tab, Tab, SyntheticParticipant, SyntheticParticipant]:
    evaluator = SyntheticParticipant(RED, 440)
    candidate = SyntheticParticipant(BLUE, 1000)
    for token in (booked.evaluator_token, booked.candidate_token):
        await consent(client, token)
    evaluator_tab = await join(client, booked.evaluator_token, evaluator)
    candidate_tab = await join(client, booked.candidate_token, candidate)
    await eventually(
        lambda: evaluator.pc.connectionState == candidate.pc.connectionState == "connected",
        "both peer connections up",
    )
    return evaluator_tab, candidate_tab, evaluator, candidate


def _streams(path: Path) -> list[tuple[str, str]]:
    with av.open(str(path)) as container:
        return [(s.type, s.codec_context.name) for s in container.streams]


def _video_colours(path: Path) -> list[tuple[float, float, float]]:
    """The mean colour of the last decoded frame of each video stream, in stream order."""
    colours: list[tuple[float, float, float]] = []
    for index in range(len(_streams(path))):
        with av.open(str(path)) as container:
            stream = container.streams[index]
            if stream.type != "video":
                continue
            last: VideoFrame | None = None
            for frame in container.decode(stream):
                last = frame
            if last is not None:  # a participant without a camera has an empty stream
                colours.append(mean_rgb(last))
    return colours


def _audio_seconds(path: Path) -> list[float]:
    seconds: list[float] = []
    for index in range(len(_streams(path))):
        with av.open(str(path)) as container:
            stream = container.streams[index]
            if stream.type != "audio":
                continue
            samples = sum(frame.samples for frame in container.decode(stream))
            seconds.append(samples / (stream.codec_context.sample_rate or 48_000))
    return seconds


async def test_an_organisation_records_its_interviews_and_the_api_lists_the_file(
    client: TestClient, booked: Booked, settings: Settings
) -> None:
    org = booked.org
    assert (await org.ok("GET", "/organisation"))["recording"] is False
    assert (await _info(client, booked.candidate_token))["recording"] is False
    turned = await org.ok("PATCH", "/organisation", json={"recording": True})
    assert turned["recording"] is True
    # The candidate is told before joining (the room page renders this flag).
    assert (await _info(client, booked.candidate_token))["recording"] is True

    evaluator_tab, candidate_tab, evaluator, candidate = await _interview(client, booked)
    assert candidate_tab.hello is not None and candidate_tab.hello["recording"] is True
    room = client.app[keys.ROOMS].rooms[booked.booking_id]
    await lobby_media(room)
    assert room.recorder is None, "the lobby is never recorded"

    await evaluator_tab.send(type="admit")
    await candidate_tab.state(lambda s: s["recording"] is True)
    recorder = room.recorder
    assert recorder is not None
    await eventually(
        lambda: min(recorder.frames.values()) >= 30,
        "both participants' video and sound reaching the recorder",
    )
    await evaluator_tab.send(type="id_checked", checked=True)
    await evaluator_tab.send(type="end", outcome="completed")
    await candidate_tab.state(lambda s: s["phase"] == "ended" and s["recording"] is False)

    report = (await booked.report())["room"]
    [listed] = report["recordings"]
    assert listed["ended_at"] is not None and listed["bytes"] > 0
    response = await client.get(listed["download"], headers=org.headers)
    assert response.status == 200
    assert response.headers["Content-Type"] == "video/x-matroska"
    body = await response.read()
    assert len(body) == listed["bytes"]
    path = settings.recordings_path / str(booked.booking_id)
    [file] = list(path.iterdir())
    assert file.read_bytes() == body

    # Each participant's video and sound, evaluator first: H.264 and AAC in Matroska.
    assert _streams(file) == [
        ("video", "h264"),
        ("audio", "aac"),
        ("video", "h264"),
        ("audio", "aac"),
    ]
    evaluator_colour, candidate_colour = _video_colours(file)
    assert close_to(evaluator_colour, RED), evaluator_colour
    assert close_to(candidate_colour, BLUE), candidate_colour
    assert all(seconds > 0.5 for seconds in _audio_seconds(file))

    for tab in (candidate_tab, evaluator_tab):
        await tab.close()
    for participant in (candidate, evaluator):
        await participant.close()
    await client.close()
    assert not await no_pending_tasks(), "tasks left running after the server closed"


async def test_the_confirmation_mail_tells_the_candidate_too(
    client: TestClient, make_org: Any
) -> None:
    import email
    from email.message import EmailMessage
    from email.policy import default

    from mailer.outbox import booking_messages
    from tests.rooms.room_support import book_interview

    org = await make_org()
    await org.ok("PATCH", "/organisation", json={"recording": True})
    booked = await book_interview(org)
    async with client.app[keys.DB].read() as session:
        messages = await booking_messages(session, booked.booking_id)
    texts = {}
    for stored in messages:
        parsed = email.message_from_bytes(stored.raw, policy=default)
        assert isinstance(parsed, EmailMessage)
        body = parsed.get_body(("plain",))
        assert body is not None
        texts[stored.kind, stored.recipient.startswith("c-")] = body.get_content()
    candidate = texts["booking_confirmed", True]
    assert "records its interviews" in candidate
    assert "records its interviews" not in texts["booking_confirmed", False]  # the evaluator


async def test_without_the_organisations_choice_nothing_is_recorded(
    client: TestClient, booked: Booked, settings: Settings
) -> None:
    evaluator_tab, candidate_tab, evaluator, candidate = await _interview(client, booked)
    assert candidate_tab.hello is not None and candidate_tab.hello["recording"] is False
    await evaluator_tab.send(type="admit")
    state = await candidate_tab.state(lambda s: s["phase"] == "admitted")
    assert state["recording"] is False
    await eventually(lambda: evaluator.video_frames >= 15, "the call is up")
    room = client.app[keys.ROOMS].rooms[booked.booking_id]
    assert room.recorder is None
    source = room.bridge.source("candidate", "video")
    assert source is not None and source.stats.frames_to_decoder == 0, "nothing decoded"
    assert (await booked.report())["room"]["recordings"] == []
    assert not settings.recordings_path.exists()
    for tab in (candidate_tab, evaluator_tab):
        await tab.close()
    for participant in (candidate, evaluator):
        await participant.close()


async def test_a_reconnection_continues_the_same_file_and_leaving_ends_it(
    client: TestClient, booked: Booked, settings: Settings
) -> None:
    await booked.org.ok("PATCH", "/organisation", json={"recording": True})
    evaluator_tab, candidate_tab, evaluator, candidate = await _interview(client, booked)
    await evaluator_tab.send(type="admit")
    room = client.app[keys.ROOMS].rooms[booked.booking_id]
    await candidate_tab.state(lambda s: s["recording"] is True)
    recorder = room.recorder
    assert recorder is not None
    await eventually(lambda: recorder.frames["candidate", "video"] >= 15, "the candidate recorded")

    # The candidate's tab reloads: a new peer connection, the same recording.
    await candidate_tab.close()
    await candidate.close()
    await evaluator_tab.state(lambda s: not s["present"]["candidate"])
    before = recorder.frames["candidate", "video"]
    again = SyntheticParticipant(BLUE, 1000)
    candidate_tab = await join(client, booked.candidate_token, again)
    await eventually(
        lambda: recorder.frames["candidate", "video"] >= before + 15,
        "the rejoined candidate recorded again",
    )
    assert room.recorder is recorder

    # Everyone leaves without ending: the room closes and the file is finished anyway.
    for tab in (candidate_tab, evaluator_tab):
        await tab.send(type="leave")
        await tab.closed()

    async def ended() -> dict[str, Any] | None:
        [listed] = (await booked.report())["room"]["recordings"]
        return listed if listed["ended_at"] is not None else None

    # The last one out closes the room (and the file) after leaving.
    listed = await eventually(ended, "the recording to end with the room")
    assert listed["bytes"] > 0
    assert booked.booking_id not in client.app[keys.ROOMS].rooms
    [file] = list((settings.recordings_path / str(booked.booking_id)).iterdir())
    _, candidate_colour = _video_colours(file)
    assert close_to(candidate_colour, BLUE), candidate_colour
    for participant in (again, evaluator):
        await participant.close()


async def test_recordings_are_the_organisations_own(
    client: TestClient, booked: Booked, make_org: Any
) -> None:
    await booked.org.ok("PATCH", "/organisation", json={"recording": True})
    evaluator_tab, candidate_tab, evaluator, candidate = await _interview(client, booked)
    await evaluator_tab.send(type="admit")
    await candidate_tab.state(lambda s: s["recording"] is True)
    await evaluator_tab.send(type="end", outcome="interrupted")
    await candidate_tab.state(lambda s: s["recording"] is False)
    [listed] = (await booked.report())["room"]["recordings"]
    other = await make_org(name="Other", email="other@example.org")
    status, body = await other.call("GET", listed["download"].removeprefix("/api/v1"))
    assert status == 404 and body["status"] == 404
    assert (await client.get(listed["download"])).status == 401
    wrong = listed["download"].rsplit("/", 1)[0] + "/not-a-uuid"
    status, _ = await booked.org.call("GET", wrong.removeprefix("/api/v1"))
    assert status == 404
    for tab in (candidate_tab, evaluator_tab):
        await tab.close()
    for participant in (candidate, evaluator):
        await participant.close()


async def test_the_organisation_deletes_a_recording_once_it_has_ended(
    client: TestClient, booked: Booked, settings: Settings, make_org: Any
) -> None:
    await booked.org.ok("PATCH", "/organisation", json={"recording": True})
    evaluator_tab, candidate_tab, evaluator, candidate = await _interview(client, booked)
    await evaluator_tab.send(type="admit")
    await candidate_tab.state(lambda s: s["recording"] is True)
    [listed] = (await booked.report())["room"]["recordings"]
    path = listed["download"].removeprefix("/api/v1")
    status, body = await booked.org.call("DELETE", path)
    assert status == 409 and "in progress" in body["detail"]  # nothing deleted mid-interview
    recorder = client.app[keys.ROOMS].rooms[booked.booking_id].recorder
    assert recorder is not None
    await eventually(lambda: min(recorder.frames.values()) >= 15, "something recorded")

    await evaluator_tab.send(type="end", outcome="interrupted")
    await candidate_tab.state(lambda s: s["recording"] is False)
    folder = settings.recordings_path / str(booked.booking_id)
    assert len(list(folder.iterdir())) == 1
    other = await make_org(name="Other", email="other@example.org")
    assert (await other.call("DELETE", path))[0] == 404  # another organisation's
    assert len(list(folder.iterdir())) == 1

    assert (await booked.org.call("DELETE", path))[0] == 204
    assert not folder.exists(), "the file and its booking's folder are gone"
    assert (await booked.report())["room"]["recordings"] == []
    assert (await booked.org.call("GET", path))[0] == 404
    assert (await booked.org.call("DELETE", path))[0] == 404
    for tab in (candidate_tab, evaluator_tab):
        await tab.close()
    for participant in (candidate, evaluator):
        await participant.close()


async def test_a_recording_cut_short_by_a_crash_is_deletable_once_the_room_has_closed(
    client: TestClient, booked: Booked, settings: Settings, clock: Any
) -> None:
    """Another process may serve the rooms, so an unfinished recording whose room is still
    open is treated as in progress; once the room has closed, it is a crash's leftover."""
    from datetime import timedelta

    from rooms.models import recording_started

    name = f"{booked.booking_id}/crashed.mkv"
    file = settings.recordings_path / name
    file.parent.mkdir(parents=True)
    file.write_bytes(b"\x1aE\xdf\xa3 what was written before the crash")
    async with client.app[keys.DB].write() as session:
        await recording_started(session, booked.booking_id, name, clock.now())
    [listed] = (await booked.report())["room"]["recordings"]
    assert listed["ended_at"] is None
    path = listed["download"].removeprefix("/api/v1")
    assert (await booked.org.call("DELETE", path))[0] == 409
    assert file.exists()

    clock.set(booked.end + timedelta(minutes=settings.rooms.close_after_minutes))
    assert (await booked.org.call("DELETE", path))[0] == 204
    assert not file.exists()
    assert (await booked.report())["room"]["recordings"] == []


async def test_a_server_that_does_not_allow_recording_refuses_to_turn_it_on(
    aiohttp_client: Any, settings: Settings, clock: Any
) -> None:
    from scheduler.app import create_app
    from scheduler.orgs import create_organisation
    from tests.conftest import Org

    forbidden = settings.model_copy(
        update={"rooms": settings.rooms.model_copy(update={"recording_allowed": False})}
    )
    client = await aiohttp_client(create_app(forbidden, clock=clock))
    async with client.app[keys.DB].write() as session:
        new = await create_organisation(
            session, name="O", contact_email="o@example.org", contact_phone=None, now=clock.now()
        )
    org = Org(client, new.organisation.id, new.api_key)
    status, body = await org.call("PATCH", "/organisation", json={"recording": True})
    assert status == 409 and "recording_allowed" in body["detail"]
    assert (await org.ok("GET", "/organisation"))["recording"] is False
    status, body = await org.call("PATCH", "/organisation", json={"recording": None})
    assert status == 422 and body["errors"][0]["field"] == "recording"
    assert (await org.ok("PATCH", "/organisation", json={}))["recording"] is False


# --- the recorder's timeline --------------------------------------------------------------


def _video(pts: int) -> VideoFrame:
    frame = VideoFrame(width=16, height=16, format="yuv420p")
    frame.pts, frame.time_base = pts, Fraction(1, 90_000)
    return frame


def _audio(samples: int = 960) -> AudioFrame:
    frame = AudioFrame(format="s16", layout="stereo", samples=samples)
    for plane in frame.planes:
        plane.update(b"\x01" * plane.buffer_size)
    frame.sample_rate = 48_000
    frame.pts, frame.time_base = 123_456, Fraction(1, 48_000)  # the upstream's own clock
    return frame


async def test_video_is_stamped_by_arrival_and_never_goes_backwards() -> None:
    feed = _Feed("video", started=100.0)
    # A reconnection restarts the upstream's timestamps at 0: the recording's do not.
    for pts, arrived in ((900_000, 100.0), (903_000, 100.033), (0, 101.0), (0, 101.0)):
        feed.push(_video(pts), arrived)
    stamped = [await feed.recv() for _ in range(4)]
    assert [f.pts for f in stamped] == [0, 1, 30, 31]
    assert all(f.time_base == Fraction(1, 30) for f in stamped)
    # A burst far ahead of the wall clock is dropped rather than drift ahead of the sound.
    for _ in range(10):
        feed.push(_video(0), 101.0)
    feed.end()
    kept = []
    with pytest.raises(MediaStreamError):
        while True:
            kept.append((await feed.recv()).pts)
    assert kept == [32, 33]


async def test_sound_is_contiguous_and_a_gap_becomes_silence() -> None:
    feed = _Feed("audio", started=0.0)
    feed.push(_audio(), 0.02)  # the first 20 ms
    feed.push(_audio(), 0.04)
    feed.push(_audio(), 1.04)  # the participant was away for about a second
    feed.end()
    frames: list[AudioFrame] = []
    with pytest.raises(MediaStreamError):
        while True:
            frames.append(await feed.recv())  # type: ignore[arg-type]
    pts = [f.pts for f in frames]
    assert pts == sorted(pts) and pts[0] == 0
    for before, after in itertools.pairwise(frames):
        assert after.pts == before.pts + before.samples, "no hole, no overlap"
    silent = [f for f in frames if not any(bytes(f.planes[0]))]
    assert sum(f.samples for f in silent) == 48_000 - 960  # the gap, filled
    assert frames[-1].pts == 48_960  # the last frame sits where it arrived
    assert any(bytes(frames[-1].planes[0]))


async def test_the_worker_runs_recordings_off_the_event_loop() -> None:
    import threading

    worker = RecordingWorker()

    async def where() -> str:
        return threading.current_thread().name

    assert await worker.run(where()) == "viva-recorder"
    await worker.close()
    assert threading.current_thread().name != "viva-recorder"


async def test_a_participant_without_camera_and_a_camera_that_changes_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorder on its own: the evaluator's camera switches from 320×240 to 640×360
    mid-way (browsers adapt to bandwidth), the candidate has no camera at all."""
    from rooms import recording
    from rooms.recording import RoomRecorder
    from tests.support.synthetic import ColourTrack, ToneTrack

    monkeypatch.setattr(recording, "GEOMETRY_WAIT_SECONDS", 0.3)
    worker = RecordingWorker()
    recorder = RoomRecorder(tmp_path / "r" / "room.mkv", worker)
    await recorder.start()
    recorder.attach("evaluator", "video", ColourTrack(RED, 320, 240))
    recorder.attach("evaluator", "audio", ToneTrack(440))
    recorder.attach("candidate", "audio", ToneTrack(1000))
    await eventually(lambda: recorder.frames["evaluator", "video"] >= 20, "the small picture")
    recorder.attach("evaluator", "video", ColourTrack(BLUE, 640, 360))
    await eventually(lambda: recorder.frames["evaluator", "video"] >= 40, "the larger picture")
    await recorder.stop()
    await worker.close()

    file = recorder.path
    with av.open(str(file)) as container:
        sizes = [(s.codec_context.width, s.codec_context.height) for s in container.streams.video]
    assert sizes == [(320, 240), recording.DEFAULT_SIZE]
    [colour] = _video_colours(file)[:1]
    assert close_to(colour, BLUE), colour  # the larger picture, scaled into the first size
    assert all(seconds > 0.3 for seconds in _audio_seconds(file))
    with av.open(str(file)) as container:
        candidate_video = container.streams.video[1]
        assert sum(1 for _ in container.demux(candidate_video) if _.size) == 0


async def test_a_recording_stopped_before_both_cameras_arrived_ends_cleanly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Everyone leaves within the first seconds, one camera never having sent a frame."""
    from rooms.recording import RoomRecorder
    from tests.support.synthetic import ColourTrack, ToneTrack

    worker = RecordingWorker()
    recorder = RoomRecorder(tmp_path / "room.mkv", worker)
    await recorder.start()
    recorder.attach("evaluator", "video", ColourTrack(RED, 320, 240))
    recorder.attach("evaluator", "audio", ToneTrack(440))
    await eventually(lambda: recorder.frames["evaluator", "video"] >= 5, "a few frames")
    with caplog.at_level("WARNING", logger="viva.rooms"):
        await recorder.stop()
        await recorder.stop()  # twice: the room's close after the interview's end
    await worker.close()
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    if recorder.path.exists():  # whatever was written is a file players can open
        assert [kind for kind, _ in _streams(recorder.path)] == ["video", "audio"] * 2


async def test_the_organisation_turns_recording_off_for_one_booking(
    client: TestClient, booked: Booked
) -> None:
    """A participant who does not consent: their booking's room is not recorded, while the
    organisation's other interviews are."""
    org = booked.org
    await org.ok("PATCH", "/organisation", json={"recording": True})
    assert (await org.ok("GET", f"/bookings/{booked.booking_id}"))["recording"] is True

    off = await org.ok("PATCH", f"/bookings/{booked.booking_id}", json={"recording": False})

    assert off["recording"] is False
    assert (await _info(client, booked.candidate_token))["recording"] is False
    assert (await _info(client, booked.evaluator_token))["recording"] is False
    history = (await org.ok("GET", f"/bookings/{booked.booking_id}/history"))["events"]
    assert (history[-1]["action"], history[-1]["actor"]) == ("recording_off", "organisation")
    # Sent again, nothing changes and nothing is added to the history.
    await org.ok("PATCH", f"/bookings/{booked.booking_id}", json={"recording": False})
    again = (await org.ok("GET", f"/bookings/{booked.booking_id}/history"))["events"]
    assert len(again) == len(history)
    status, body = await org.call(
        "PATCH", f"/bookings/{booked.booking_id}", json={"recording": None}
    )
    assert status == 422 and body["errors"][0]["field"] == "recording"

    back = await org.ok("PATCH", f"/bookings/{booked.booking_id}", json={"recording": True})
    assert back["recording"] is True
    assert (await _info(client, booked.candidate_token))["recording"] is True
    # The organisation's own choice still governs a booking that follows it.
    await org.ok("PATCH", "/organisation", json={"recording": False})
    assert (await org.ok("GET", f"/bookings/{booked.booking_id}"))["recording"] is False


async def test_a_recorded_room_seats_no_one_without_consent_and_records_once_both_consented(
    client: TestClient, booked: Booked
) -> None:
    from rooms.protocol import CloseCode
    from scheduler.web.room_pages import notice_version

    org = booked.org
    await org.ok("PATCH", "/organisation", json={"recording": True})
    # No consent stored: the page would not have connected; a client that does is refused.
    error, code = await (await Tab.open(client, booked.candidate_token)).refused()
    assert (error["code"], code) == ("consent_required", CloseCode.CONSENT_REQUIRED)
    assert "recording" in error["message"]
    # Consent is to the notice shown: another text (or none) is refused.
    refused = await client.post(f"/r/{booked.candidate_token}/consent", json={"notice": "x"})
    assert refused.status == 422
    assert (await client.post("/r/not-a-token/consent", json={"notice": "x"})).status == 404
    assert (await booked.report())["room"]["consents"] == []

    evaluator_tab, candidate_tab, evaluator, candidate = await _interview(client, booked)

    consents = (await booked.report())["room"]["consents"]
    assert sorted((c["role"], c["name"], c["notice"]) for c in consents) == [
        ("candidate", "Camille Candidate", notice_version(client.app, "en")),
        ("evaluator", "Évelyne Examinatrice", notice_version(client.app, "en")),
    ]
    assert all(c["consented_at"] for c in consents)
    await consent(client, booked.candidate_token)  # the same notice again: still one row
    assert len((await booked.report())["room"]["consents"]) == 2
    room = client.app[keys.ROOMS].rooms[booked.booking_id]
    assert room.consented == {"candidate", "evaluator"}
    await evaluator_tab.send(type="admit")
    await candidate_tab.state(lambda s: s["recording"] is True)
    # Without the evaluator's consent the same admitted room would not record.
    room.consented.discard("evaluator")
    assert not room.should_record()
    room.consented.add("evaluator")
    for tab in (candidate_tab, evaluator_tab):
        await tab.send(type="leave")
    for participant in (candidate, evaluator):
        await participant.close()
