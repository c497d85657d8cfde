"""A room under test: a MediaBridge and synthetic participants, all in the test process.

`Room.join` does the offer/answer exchange in-process between a participant and its own
server-side peer connection (the server offers, as the room page will), through the same
`MediaBridge.offer`/`answer` the signaling layer uses; aiortc gathers its candidates before
returning a description, so no trickle ICE is needed. Every peer uses
`RTCConfiguration(iceServers=[])` (the bridge's default, and the participants'): host
candidates over loopback, no outside lookups.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from rooms.relay import MediaBridge, Role
from rooms.settings import RelayMode
from tests.rooms.room_support import Booked, book_interview, inside_window, no_pending_tasks
from tests.support.synthetic import SyntheticParticipant


class Room:
    """A MediaBridge plus the participants joined to it; `close()` tears everything down."""

    def __init__(self, mode: RelayMode, **bridge_options: Any) -> None:
        self.bridge = MediaBridge(mode, **bridge_options)
        self.participants: dict[Role, SyntheticParticipant] = {}
        self._everyone: list[SyntheticParticipant] = []

    async def join(self, role: Role, participant: SyntheticParticipant) -> SyntheticParticipant:
        self._everyone.append(participant)
        offer = await self.bridge.offer(role)  # replaces (and closes) a previous connection
        await self.bridge.answer(role, await participant.answer(offer))
        previous = self.participants.get(role)
        self.participants[role] = participant
        if previous is not None:
            await previous.close()
        return participant

    async def leave(self, role: Role) -> None:
        await self.bridge.remove(role)
        await self.participants.pop(role).close()

    async def close(self) -> None:
        await self.bridge.close()
        for participant in self._everyone:
            await participant.close()


@pytest.fixture
async def make_room() -> AsyncIterator[Callable[..., Room]]:
    """Rooms made here are closed after the test, even when it fails, leaving no task behind."""
    rooms: list[Room] = []

    def make(mode: RelayMode = "forward", **bridge_options: Any) -> Room:
        room = Room(mode, **bridge_options)
        rooms.append(room)
        return room

    yield make
    for room in rooms:
        await room.close()
    if rooms:
        assert not await no_pending_tasks(), "tasks left running after the room closed"


# --- rooms through the real server (tests/rooms/test_signaling.py and others) ------------


@pytest.fixture
async def booked(make_org: Callable[..., Any], clock: Any) -> Booked:
    """A confirmed booking, with the clock moved inside its room's window."""
    booking = await book_interview(await make_org())
    clock.set(inside_window(booking))
    return booking
