"""One interview's room: who may enter and when, how its state may change, and the live room.

* `Ticket` is what a room link stands for. Rooms cannot read bookings (they belong to the
  scheduler, which rooms never import), so the scheduler implements `TicketResolver` and
  hands it to `rooms.signaling.RoomServer`.
* `Window` says when a room is open.
* The transitions (`admit`, `check_id`, `move_to`, `end`, `write_notes`) are pure: they take
  the state and `now` and return the next state, or raise `Refusal` and change nothing.
* `Room` is the live room of one booking, held in memory while someone is connected: its
  `MediaBridge`, its participants' connections, and a copy of the persisted state.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, Protocol, TypeVar, get_args

from sqlalchemy.ext.asyncio import AsyncSession

from mailer.primitives import Clock
from rooms.models import RoomState
from rooms.recording import RoomRecorder
from rooms.relay import MediaBridge, Role
from rooms.settings import RoomsSettings

__all__ = [
    "OUTCOMES",
    "ROLES",
    "STEPS",
    "Clock",
    "Refusal",
    "Room",
    "Schedule",
    "Sessions",
    "Ticket",
    "TicketResolver",
    "Window",
    "admit",
    "check_id",
    "end",
    "iso",
    "move_to",
    "recorded",
    "state_fields",
    "write_notes",
]

ROLES: tuple[Role, ...] = get_args(Role)
Step = Literal["id_check", "introduction", "role_play", "discussion"]
STEPS: tuple[str, ...] = get_args(Step)
Outcome = Literal["completed", "interrupted", "id_refused", "no_show"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)
WindowStatus = Literal["too_early", "open", "too_late"]
MAX_NOTES_CHARS = 20_000


@dataclass(frozen=True)
class Ticket:
    """A valid room link, resolved: whose it is and for which interview."""

    booking_id: uuid.UUID
    role: Role
    display_name: str
    other_name: str
    organisation: str
    start: datetime
    end: datetime
    locale: str
    timezone: str
    language: str
    # Whether the organisation records its interviews (the candidate is told before joining).
    recording: bool = False
    # Whether this participant's consent to the recording is stored (rooms.models.RoomConsent):
    # a recorded room seats nobody without it.
    consented: bool = False
    # "no_show" or "completed" once the booking is over: the candidate's link then says so
    # (and no longer opens the room); the evaluator's still does, to finish the notes.
    held: str | None = None
    # Whose interview this is: the connection test's share is counted per organisation.
    organisation_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Schedule:
    """Where a booking stands now: what a live room compares its own copy with."""

    status: str
    start: datetime
    end: datetime


class TicketResolver(Protocol):
    async def resolve(self, token: str) -> Ticket | None:
        """The ticket behind a room token, or None for any invalid, revoked or inactive one."""
        ...

    async def schedule(self, booking_id: uuid.UUID) -> Schedule | None:
        """The booking's status and times now; None if it no longer exists."""
        ...


class Sessions(Protocol):
    """Database transactions, as `scheduler.db.Database` offers them (rooms cannot import it)."""

    def read(self) -> AbstractAsyncContextManager[AsyncSession]: ...

    def write(self) -> AbstractAsyncContextManager[AsyncSession]: ...


def recorded(ticket: Ticket, settings: RoomsSettings) -> bool:
    """Whether the ticket's room records: the organisation's choice, if the server allows."""
    return settings.recording_allowed and ticket.recording


def iso(moment: datetime | None) -> str | None:
    """UTC, second precision, with a Z: what every message carries."""
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Window:
    """When a room is open: [start - open_before, end + close_after)."""

    opens_at: datetime
    closes_at: datetime

    @classmethod
    def of(cls, ticket: Ticket, settings: RoomsSettings) -> Window:
        return cls.around(ticket.start, ticket.end, settings)

    @classmethod
    def around(cls, start: datetime, end: datetime, settings: RoomsSettings) -> Window:
        """The window of an interview by its times alone (a moved booking has no ticket yet)."""
        return cls(
            start - timedelta(minutes=settings.open_before_minutes),
            end + timedelta(minutes=settings.close_after_minutes),
        )

    def status(self, now: datetime) -> WindowStatus:
        if now < self.opens_at:
            return "too_early"
        if now >= self.closes_at:
            return "too_late"
        return "open"


# --- transitions -------------------------------------------------------------------------


class Refusal(Exception):
    """A request the room's state does not allow; nothing changed. `code` is in the protocol."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _not_ended(state: RoomState) -> None:
    if state.ended_at is not None:
        raise Refusal("ended", "the interview has ended")


def admit(state: RoomState, now: datetime, *, candidate_present: bool) -> RoomState:
    """End the lobby. Admitting twice changes nothing (two clicks, or two evaluator tabs)."""
    _not_ended(state)
    if state.admitted_at is not None:
        return state
    if not candidate_present:
        raise Refusal("candidate_absent", "the candidate is not in the room")
    return state.but(admitted_at=now, step="id_check")


def check_id(state: RoomState, now: datetime, checked: bool) -> RoomState:
    _not_ended(state)
    if state.admitted_at is None:
        raise Refusal("not_admitted", "admit the candidate first")
    if checked:
        return state if state.id_checked_at is not None else state.but(id_checked_at=now)
    if state.step != "id_check":
        raise Refusal(
            "interview_started", "the ID check can only be undone before the interview starts"
        )
    return state.but(id_checked_at=None)


def move_to(state: RoomState, now: datetime, step: str) -> RoomState:
    _not_ended(state)
    if step not in STEPS:
        raise Refusal("invalid", f"step must be one of {', '.join(STEPS)}")
    if state.admitted_at is None:
        raise Refusal("not_admitted", "admit the candidate first")
    if step != "id_check" and state.id_checked_at is None:
        raise Refusal("id_not_checked", "check the candidate's ID document first")
    started = state.interview_started_at
    if started is None and step != "id_check":
        started = now  # the interview's timer starts with its first part
    return state.but(step=step, interview_started_at=started)


def end(state: RoomState, now: datetime, outcome: str) -> RoomState:
    _not_ended(state)
    if outcome not in OUTCOMES:
        raise Refusal("invalid", f"outcome must be one of {', '.join(OUTCOMES)}")
    if outcome == "completed" and state.id_checked_at is None:
        raise Refusal("id_not_checked", "an interview without an ID check is not completed")
    return state.but(ended_at=now, outcome=outcome)


def write_notes(state: RoomState, text: str) -> RoomState:
    """Notes stay writable after the end: evaluators often finish them once alone."""
    if len(text) > MAX_NOTES_CHARS:
        raise Refusal("invalid", f"notes are limited to {MAX_NOTES_CHARS} characters")
    return state.but(notes=text)


def phase(state: RoomState) -> str:
    if state.ended_at is not None:
        return "ended"
    return "lobby" if state.admitted_at is None else "admitted"


def state_fields(
    state: RoomState, present: dict[str, bool], version: int, now: datetime
) -> dict[str, Any]:
    """The `state` message's fields (docs/rooms.md); never the notes."""
    return {
        "version": version,
        "present": present,
        "phase": phase(state),
        "admitted_at": iso(state.admitted_at),
        "id_checked_at": iso(state.id_checked_at),
        "step": state.step,
        "interview_started_at": iso(state.interview_started_at),
        "ended_at": iso(state.ended_at),
        "outcome": state.outcome,
        "now": iso(now),
    }


# --- the live room -----------------------------------------------------------------------

C = TypeVar("C")


class Room(Generic[C]):
    """One booking's room while someone is connected; `C` is the signaling's connection.

    `lock` serialises state changes, arrivals and departures (and their database writes),
    so the persisted state and this copy never diverge. Each role's `media_lock` serialises
    that role's offer/answer/candidates against a replacement of its peer connection, so a
    replaced tab's late answer can never land on its successor's peer connection; the two
    roles negotiate independently.
    """

    def __init__(self, ticket: Ticket, settings: RoomsSettings) -> None:
        self.booking_id = ticket.booking_id
        self.start = ticket.start
        self.no_show_told = False
        self.window = Window.of(ticket, settings)
        # The server's own TURN credentials (if any) die with the room's window.
        self.bridge = MediaBridge.from_settings(
            settings,
            linked=False,
            turn_until=self.window.closes_at,
            ident=f"{self.booking_id}-server",
        )
        self.state = RoomState(ticket.booking_id)
        self.loaded = False
        self.closed = False
        self.expired = False  # its window has closed; everyone is being sent away
        self.version = 0
        self.connections: dict[Role, C] = {}
        self.lock = asyncio.Lock()
        self.media_locks: dict[Role, asyncio.Lock] = {role: asyncio.Lock() for role in ROLES}
        self._expiry: asyncio.TimerHandle | None = None
        # Decided once per room session, from the ticket that opened it: a change of the
        # organisation's choice applies from the next session, never behind anyone's back.
        self.recording = recorded(ticket, settings)
        # Who has consented to it, among those seated this session (their tickets say so).
        self.consented: set[Role] = set()
        self.recorder: RoomRecorder | None = None
        # Called with the recorder once it has stopped (the signaling writes the database).
        self.on_recording_stopped: Callable[[RoomRecorder], Awaitable[None]] | None = None
        # When several processes serve rooms: this room object's lease (rooms.models.RoomHost)
        # once held, and what to do once the room has closed (drop the lease).
        self.lease_id = uuid.uuid4()
        self.leased = False
        self.on_closed: Callable[[], Awaitable[None]] | None = None

    def present(self) -> dict[str, bool]:
        return {role: role in self.connections for role in ROLES}

    def changed(self, state: RoomState | None = None) -> None:
        """Adopt a new state (already persisted) or a change of presence; bump the version."""
        if state is not None:
            self.state = state
        if self.state.admitted_at is not None and not self.bridge.linked:
            self.bridge.link()
        self.version += 1

    def fields(self, now: datetime) -> dict[str, Any]:
        return {
            **state_fields(self.state, self.present(), self.version, now),
            "recording": self.recorder is not None,
        }

    def should_record(self) -> bool:
        """Recording runs from admission to the end of the interview, if the room records
        and both participants' consents are stored."""
        state = self.state
        return (
            self.recording
            and self.consented >= set(ROLES)
            and not self.closed
            and state.admitted_at is not None
            and state.ended_at is None
        )

    def start_recording(self, recorder: RoomRecorder) -> None:
        """Hand `recorder` (started) a decoded copy of both participants' media from now on."""
        self.recorder = recorder
        self.bridge.record(recorder)

    async def stop_recording(self) -> None:
        recorder, self.recorder = self.recorder, None
        if recorder is None:
            return
        self.bridge.record(None)
        await recorder.stop()
        if self.on_recording_stopped is not None:
            await self.on_recording_stopped(recorder)

    def expire_at(self, clock: Clock, on_expiry: Callable[[], None]) -> None:
        """Call `on_expiry` once the window has closed by `clock` (re-armed if it has not)."""
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        remaining = (self.window.closes_at - clock.now()).total_seconds()
        if remaining <= 0:
            on_expiry()
            return

        def due() -> None:
            self._expiry = None
            self.expire_at(clock, on_expiry)

        # Long delays are re-checked hourly: the clock may be moved (tests) or drift.
        self._expiry = loop.call_later(min(remaining, 3600.0), due)

    async def close(self) -> None:
        """Close every peer connection; the room is forgotten afterwards."""
        self.closed = True
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        await self.stop_recording()
        await self.bridge.close()
        if self.on_closed is not None:
            await self.on_closed()
