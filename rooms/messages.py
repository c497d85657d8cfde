"""What the server tells a room page, built without I/O (docs/rooms.md).

The facts before joining (`room_info`, served by the scheduler at `GET /r/{token}/info`),
the `hello` on arrival, and the `error` that sends everyone out when the scheduler reports
a change. Pure functions of a ticket or a room and `now`, so the page's contract reads in
one place and is tested without a socket.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from rooms.protocol import PROTOCOL_VERSION, Connection, ice_servers
from rooms.room import STEPS, Room, Ticket, Window, iso, recorded
from rooms.settings import RoomsSettings

__all__ = ["BookingChange", "change_error", "hello", "room_info"]

# What the scheduler tells a live room after a commit (`RoomServer.booking_changed`): the
# `error` code sent, the close code and the attendance's `left_reason` are all named after it.
BookingChange = Literal["cancelled", "moved"]
_CHANGE_MESSAGES: dict[str, str] = {
    "cancelled": "the interview has been cancelled",
    "moved": "the interview has been moved",
}


def _interview(settings: RoomsSettings) -> dict[str, Any]:
    return {"target_minutes": settings.interview_target_minutes, "steps": list(STEPS)}


def room_info(ticket: Ticket, settings: RoomsSettings, now: datetime, token: str) -> dict[str, Any]:
    """What a room page needs before joining (`GET /r/{token}/info`, docs/rooms.md)."""
    window = Window.of(ticket, settings)
    return {
        "role": ticket.role,
        "name": ticket.display_name,
        "other_name": ticket.other_name,
        "organisation": ticket.organisation,
        "locale": ticket.locale,
        "timezone": ticket.timezone,
        "language": ticket.language,
        "start": iso(ticket.start),
        "end": iso(ticket.end),
        "opens_at": iso(window.opens_at),
        "closes_at": iso(window.closes_at),
        "now": iso(now),
        "window": window.status(now),
        "interview": _interview(settings),
        "recording": recorded(ticket, settings),
        "websocket": f"/r/{token}/ws",
    }


def hello(
    room: Room[Connection], ticket: Ticket, settings: RoomsSettings, now: datetime
) -> dict[str, Any]:
    """The first message of a seated connection: who, when, the ICE servers, the room."""
    message: dict[str, Any] = {
        "type": "hello",
        "protocol": PROTOCOL_VERSION,
        "mode": "room",
        "role": ticket.role,
        "name": ticket.display_name,
        "other_name": ticket.other_name,
        "organisation": ticket.organisation,
        "locale": ticket.locale,
        "timezone": ticket.timezone,
        "language": ticket.language,
        "booking": {
            "id": str(ticket.booking_id),
            "start": iso(ticket.start),
            "end": iso(ticket.end),
            "opens_at": iso(room.window.opens_at),
            "closes_at": iso(room.window.closes_at),
        },
        "now": iso(now),
        "ice_servers": ice_servers(
            settings, room.window.closes_at, f"{ticket.booking_id}-{ticket.role}"
        ),
        "interview": _interview(settings),
        "recording": room.recording,
        "room": room.fields(now),
    }
    if ticket.role == "evaluator":
        message["notes"] = room.state.notes
    return message


def change_error(
    change: BookingChange,
    settings: RoomsSettings,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    """The `error` a booking's change sends; a move carries the new time and window."""
    message: dict[str, Any] = {
        "type": "error",
        "code": change,
        "message": _CHANGE_MESSAGES[change],
    }
    if change == "moved" and start is not None and end is not None:
        window = Window.around(start, end, settings)
        message.update(
            start=iso(start),
            end=iso(end),
            opens_at=iso(window.opens_at),
            closes_at=iso(window.closes_at),
        )
    return message
