"""Recording control: when a room's recorder starts and stops, and the rows that say so.

`rooms.recording` encodes; this module decides. A room records from admission to the end
of the interview if its ticket says so and this process has somewhere to write
(`Room.should_record`); each file gets a `recordings` row when it starts and its size
when it stops (`rooms.models`). Losing a recording must never cost the candidate their
interview: a recorder that cannot start is logged and the interview goes on unrecorded.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from rooms.models import recording_finished, recording_started
from rooms.protocol import Connection
from rooms.recording import SUFFIX, RecordingWorker, RoomRecorder
from rooms.room import Clock, Room, Sessions
from rooms.settings import RoomsSettings

__all__ = ["Recordings"]

log = logging.getLogger("viva.rooms")


class Recordings:
    """This process's recordings, written under `folder` (None: it records nothing)."""

    def __init__(self, folder: Path | None, settings: RoomsSettings, clock: Clock) -> None:
        self.folder = folder
        self._settings = settings
        self._clock = clock
        self._worker = RecordingWorker()
        self._ids: dict[RoomRecorder, uuid.UUID] = {}
        self._sessions: Sessions | None = None

    def start(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def prepare(self, room: Room[Connection]) -> None:
        """Set up a new room: it records only if this process can, and reports its ends."""
        if self.folder is None:
            room.recording = False
        room.on_recording_stopped = self._stopped

    async def sync(self, room: Room[Connection]) -> None:
        """Under `room.lock`: start or stop the room's recorder as its state now requires."""
        assert self._sessions is not None
        if not room.should_record():
            if room.recorder is not None:
                await room.stop_recording()
            return
        if room.recorder is not None or self.folder is None:
            return
        now = self._clock.now()
        name = f"{room.booking_id}/{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        recorder = RoomRecorder(
            self.folder / name, self._worker, preset=self._settings.recording_preset
        )
        try:
            await recorder.start()
            async with self._sessions.write() as session:
                self._ids[recorder] = await recording_started(session, room.booking_id, name, now)
        except Exception:
            log.exception("room %s: could not start recording", room.booking_id)
            await recorder.stop()
            return
        room.start_recording(recorder)

    def in_progress(self, recording_id: uuid.UUID) -> bool:
        """Whether this process is writing that recording right now."""
        return recording_id in self._ids.values()

    async def _stopped(self, recorder: RoomRecorder) -> None:
        recording_id = self._ids.pop(recorder, None)
        if recording_id is None or self._sessions is None:
            return
        try:
            async with self._sessions.write() as session:
                await recording_finished(session, recording_id, self._clock.now(), recorder.size)
        except Exception:
            log.exception("could not record the end of recording %s", recording_id)

    async def close(self) -> None:
        await self._worker.close()
