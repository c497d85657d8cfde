"""The room's messages: one handler per message type (docs/rooms.md), and the dispatch.

A handler gets the room, the connection that sent the message and the message; it raises
`ProtocolError` (or `rooms.room.Refusal`) to refuse, which `handle` turns into an `error`
for the sender alone, so a bad message changes nothing. Handlers change the room only
through `RoomActions` (the room server): state transitions are persisted under the room's
lock there. Media messages go through `_while_seated`, the one place that takes a role's
media lock and checks that the sender still holds the role's seat.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from rooms.models import RoomState
from rooms.protocol import (
    CloseCode,
    Connection,
    CountError,
    ProtocolError,
    answer_sdp,
    report,
    text,
    trickled,
)
from rooms.room import STEPS, Clock, Refusal, Room, admit, check_id, end, iso, move_to

__all__ = ["EVALUATOR_ONLY", "HANDLERS", "RoomActions", "Transition", "handle"]

log = logging.getLogger("viva.rooms")

EVALUATOR_ONLY = frozenset({"admit", "id_checked", "step", "notes", "end"})

Transition = Callable[[RoomState, datetime], RoomState]


class RoomActions(Protocol):
    """What handlers may do to a room: the room server provides it (`rooms.signaling`)."""

    clock: Clock

    async def change(self, room: Room[Connection], change: Transition) -> bool:
        """Apply a transition under the room's lock, persist it, tell everyone; False if
        it changed nothing."""
        ...

    async def write_notes(self, room: Room[Connection], text: str) -> datetime:
        """Persist the evaluator's notes under the room's lock; when they were saved."""
        ...


Message = dict[str, Any]
Handler = Callable[[RoomActions, Room[Connection], Connection, Message], Awaitable[None]]


async def handle(
    actions: RoomActions,
    room: Room[Connection],
    connection: Connection,
    message: Message,
    count: CountError,
) -> None:
    """Run the handler of a parsed message; any refusal is told to the sender alone."""
    kind: str = message["type"]
    handler = HANDLERS.get(kind)
    if handler is None:
        await report(connection, "unknown_type", "unknown message type", kind[:40], count)
        return
    if kind in EVALUATOR_ONLY and connection.role != "evaluator":
        await report(connection, "forbidden", f"only the evaluator can send {kind}", kind, count)
        return
    try:
        await handler(actions, room, connection, message)
    except (ProtocolError, Refusal) as exc:
        await report(connection, exc.code, exc.message, kind, count)
    except Exception:
        log.exception("room %s: %s failed", room.booking_id, kind)
        await report(connection, "internal", "the server could not do it; retry", kind, count)


async def _while_seated(
    room: Room[Connection], connection: Connection, what: str, act: Callable[[], Awaitable[None]]
) -> bool:
    """Under the role's media lock, `act` on the bridge if `connection` still holds its
    role's seat; False (nothing done) if a newer tab replaced it meanwhile, so a replaced
    tab's late answer can never land on its successor's peer connection."""
    role = connection.role
    async with room.media_locks[role]:
        if room.connections.get(role) is not connection:
            return False
        try:
            await act()
        except Exception as exc:
            raise ProtocolError("invalid", f"the {what} was refused: {exc}"[:200]) from exc
        return True


async def _on_answer(
    actions: RoomActions, room: Room[Connection], connection: Connection, message: Message
) -> None:
    sdp = answer_sdp(connection, message)

    async def answer() -> None:
        await room.bridge.answer(connection.role, {"type": "answer", "sdp": sdp})

    if await _while_seated(room, connection, "answer", answer):
        connection.answered = True


async def _on_candidate(
    actions: RoomActions, room: Room[Connection], connection: Connection, message: Message
) -> None:
    candidate = trickled(connection, message)

    async def add() -> None:
        await room.bridge.add_ice_candidate(connection.role, candidate)

    await _while_seated(room, connection, "candidate", add)


async def _on_offer(
    actions: RoomActions, room: Room[Connection], connection: Connection, message: Message
) -> None:
    raise ProtocolError("out_of_order", "the server makes the offers; send an answer")


async def _on_admit(
    actions: RoomActions, room: Room[Connection], connection: Connection, message: Message
) -> None:
    def change(state: RoomState, now: datetime) -> RoomState:
        return admit(state, now, candidate_present="candidate" in room.connections)

    if not await actions.change(room, change):
        await connection.send({"type": "state", **room.fields(actions.clock.now())})


async def _on_id_checked(
    actions: RoomActions, room: Room[Connection], connection: Connection, message: Message
) -> None:
    checked = message.get("checked")
    if not isinstance(checked, bool):
        raise ProtocolError("invalid", "checked must be true or false")
    await actions.change(room, lambda state, now: check_id(state, now, checked))


async def _on_step(
    actions: RoomActions, room: Room[Connection], connection: Connection, message: Message
) -> None:
    step = message.get("step")
    if step not in STEPS:
        raise ProtocolError("invalid", f"step must be one of {', '.join(STEPS)}")
    await actions.change(room, lambda state, now: move_to(state, now, step))


async def _on_notes(
    actions: RoomActions, room: Room[Connection], connection: Connection, message: Message
) -> None:
    notes = text(message, "text", allow_empty=True)
    at = await actions.write_notes(room, notes)
    await connection.send({"type": "notes_saved", "at": iso(at), "length": len(notes)})


async def _on_end(
    actions: RoomActions, room: Room[Connection], connection: Connection, message: Message
) -> None:
    outcome = message.get("outcome", "completed")
    if not isinstance(outcome, str):
        raise ProtocolError("invalid", "outcome must be a string")
    await actions.change(room, lambda state, now: end(state, now, outcome))
    candidate = room.connections.get("candidate")
    if candidate is not None:
        candidate.leave_reason = "ended"
        await candidate.send(
            {"type": "error", "code": "ended", "message": "the interview has ended"}
        )
        candidate.kick(CloseCode.ENDED, "ended", "ended")


async def _on_leave(
    actions: RoomActions, room: Room[Connection], connection: Connection, message: Message
) -> None:
    await connection.close(CloseCode.NORMAL, "left", "bye")


async def _on_ping(
    actions: RoomActions, room: Room[Connection], connection: Connection, message: Message
) -> None:
    await connection.send({"type": "pong"})


HANDLERS: dict[str, Handler] = {
    "answer": _on_answer,
    "candidate": _on_candidate,
    "offer": _on_offer,
    "admit": _on_admit,
    "id_checked": _on_id_checked,
    "step": _on_step,
    "notes": _on_notes,
    "end": _on_end,
    "leave": _on_leave,
    "ping": _on_ping,
}
