"""The rooms' WebSocket protocol (docs/rooms.md): its limits, close codes and frames.

Everything here is about one connection and the text it sends or receives; nothing knows
rooms, leases or the database. The room endpoint and the connection test (`rooms.echo`)
both speak it, so a rule (the rate limit, the cap on bad messages, how a refusal is told)
is written once and holds for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any

from aiohttp import WSMsgType, web
from aiortc import RTCIceCandidate
from aiortc.sdp import candidate_from_sdp

from rooms.relay import Role
from rooms.room import Ticket
from rooms.settings import RoomsSettings
from rooms.turn import ice_servers_until

__all__ = [
    "COUNTED_ERRORS",
    "MAX_MESSAGE_BYTES",
    "MAX_PROTOCOL_ERRORS",
    "PROTOCOL_VERSION",
    "CloseCode",
    "Connection",
    "CountError",
    "ProtocolError",
    "ice_servers",
    "receive",
    "refuse",
    "report",
    "socket",
]

PROTOCOL_VERSION = 1
# Larger messages get a `too_large` error; frames beyond FRAME_LIMIT_BYTES are not even
# read (aiohttp closes with 1009), so nobody can make the server buffer megabytes.
MAX_MESSAGE_BYTES = 64 * 1024
FRAME_LIMIT_BYTES = 1024 * 1024
MAX_PROTOCOL_ERRORS = 5
# Browsers answer WebSocket pings by themselves: a tab that vanished without a close frame
# (sleep, lost network) is noticed within about this long and counted as a departure.
HEARTBEAT_SECONDS = 20.0
# How long a closing handshake may wait for the other side before the socket is dropped.
CLOSE_TIMEOUT_SECONDS = 2.0
# Token bucket per connection: bursts of trickled candidates pass, floods do not.
BURST_MESSAGES = 50
REFILL_PER_SECOND = 20.0

# The codes that count towards MAX_PROTOCOL_ERRORS: a client's mistakes, not the room's
# state (an evaluator clicking "admit" twice while the candidate reconnects is no abuse).
COUNTED_ERRORS = frozenset(
    {"malformed", "too_large", "unknown_type", "invalid", "out_of_order", "forbidden"}
    | {"rate_limited"}
)

# Told each error code sent to a client (the scheduler counts them in its metrics).
CountError = Callable[[str], None]


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    ENDED = 4000
    CANCELLED = 4001
    MOVED = 4002
    ELSEWHERE = 4307
    REVOKED = 4403
    NOT_FOUND = 4404
    TIME_LIMIT = 4408
    REPLACED = 4409
    TOO_LATE = 4410
    CONSENT_REQUIRED = 4451
    TOO_EARLY = 4425


class ProtocolError(Exception):
    """A message this connection should not have sent (or not now); nothing changed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(eq=False)
class Connection:
    """One participant's WebSocket, and where its signaling stands."""

    ws: web.WebSocketResponse
    ticket: Ticket
    token: str = ""  # the link it came with (to send it to another process's address)
    # When it checked in (its link resolved): the arrival its attendance row records, and
    # the one the no-show mark is decided on, however long the seating then took.
    arrived_at: datetime | None = None
    attendance_id: uuid.UUID | None = None
    errors: int = 0
    offered: bool = False
    answered: bool = False
    # Why it ended, for the attendance row; whoever closes it says why first.
    leave_reason: str = "disconnected"
    tokens: float = BURST_MESSAGES
    refilled_at: float | None = None
    # Set by `kick`: the close code and text this connection's own handler closes with.
    kicked: asyncio.Future[tuple[int, str]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future(), repr=False
    )

    @property
    def role(self) -> Role:
        return self.ticket.role

    async def send(self, message: Mapping[str, Any]) -> None:
        """Send if still possible; a peer that is gone is noticed by its own handler."""
        if self.ws.closed:
            return
        try:
            await self.ws.send_str(json.dumps(message, ensure_ascii=False))
        except (ConnectionError, RuntimeError):
            pass

    async def close(self, code: int, reason: str, text: str = "") -> None:
        """Close from this connection's own handler: waits for the client's close frame."""
        self.leave_reason = reason
        try:
            await self.ws.close(code=code, message=text.encode())
        except (ConnectionError, RuntimeError):
            pass

    def kick(self, code: int, reason: str, text: str = "") -> None:
        """Have this connection closed, from any other task.

        The handler does the closing itself, so the closing handshake completes and the
        client reads `code` (aiohttp closing a socket whose reader waits in another task
        drops the transport at once, which clients report as 1006).
        """
        if not self.kicked.done():
            self.leave_reason = reason
            self.kicked.set_result((code, text))

    def allow(self, now: float) -> bool:
        """Take a token from the bucket (`now` from the loop's monotonic clock)."""
        if self.refilled_at is not None:
            self.tokens = min(
                BURST_MESSAGES, self.tokens + (now - self.refilled_at) * REFILL_PER_SECOND
            )
        self.refilled_at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def socket() -> web.WebSocketResponse:
    """A server WebSocket with the protocol's heartbeat, close timeout and frame limit."""
    return web.WebSocketResponse(
        timeout=CLOSE_TIMEOUT_SECONDS,
        heartbeat=HEARTBEAT_SECONDS,
        max_msg_size=FRAME_LIMIT_BYTES,
        compress=False,
    )


async def refuse(
    ws: web.WebSocketResponse, code: str, message: str, close: int, **extra: Any
) -> None:
    """Tell why, then close: a browser cannot read the status of a refused handshake."""
    if ws.closed:
        return
    try:
        await ws.send_str(json.dumps({"type": "error", "code": code, "message": message, **extra}))
        await ws.close(code=close, message=code.encode())
    except (ConnectionError, RuntimeError):
        pass


async def report(
    connection: Connection, code: str, message: str, about: str | None, count: CountError
) -> None:
    """Send an `error`; a connection that keeps making mistakes is closed (1008)."""
    error: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if about is not None:
        error["about"] = about
    count(code)
    await connection.send(error)
    if code in COUNTED_ERRORS:
        connection.errors += 1
        if connection.errors >= MAX_PROTOCOL_ERRORS:
            await connection.close(CloseCode.POLICY_VIOLATION, "policy", "too many protocol errors")


async def parse(connection: Connection, data: str, count: CountError) -> dict[str, Any] | None:
    """The message as a JSON object with a string type; None (after an error) if not."""
    if not connection.allow(asyncio.get_running_loop().time()):
        await report(connection, "rate_limited", "too many messages; slow down", None, count)
        return None
    if len(data) * 4 > MAX_MESSAGE_BYTES and len(data.encode()) > MAX_MESSAGE_BYTES:
        limit = f"messages are limited to {MAX_MESSAGE_BYTES} bytes"
        await report(connection, "too_large", limit, None, count)
        return None
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: "[[[[…" nested too deep
        await report(connection, "malformed", "not JSON", None, count)
        return None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        await report(connection, "malformed", "a JSON object with a string type", None, count)
        return None
    return message


async def receive(
    connection: Connection, on_text: Callable[[str], Awaitable[None]], count: CountError
) -> None:
    """Hand each text message to `on_text`, in order, until the socket closes or is kicked."""
    ws = connection.ws
    while not ws.closed:
        if connection.kicked.done():
            code, text = connection.kicked.result()
            await connection.close(code, connection.leave_reason, text)
            return
        received = asyncio.ensure_future(ws.receive())
        await asyncio.wait((received, connection.kicked), return_when=asyncio.FIRST_COMPLETED)
        if not received.done():
            received.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await received
            continue
        msg = received.result()
        if msg.type == WSMsgType.TEXT:
            await on_text(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await report(connection, "malformed", "send JSON in text frames", None, count)
        else:
            return  # closed by the client, or ERROR (a frame over FRAME_LIMIT_BYTES)


def ice_servers(settings: RoomsSettings, expires_at: datetime, ident: str) -> list[dict[str, Any]]:
    """The STUN/TURN servers in the browser's RTCIceServer shape; shared-secret TURN
    credentials (`rooms.turn`) for `ident` expire at `expires_at` (the room's window end)."""
    servers: list[dict[str, Any]] = []
    for server in ice_servers_until(settings, expires_at, ident):
        entry: dict[str, Any] = {"urls": list(server.urls)}
        if server.username is not None:
            entry["username"] = server.username
        if server.credential is not None:
            entry["credential"] = server.credential
        servers.append(entry)
    return servers


def ws_url(base: str, token: str) -> str:
    """The room WebSocket of `token` at another process's base URL (http -> ws)."""
    scheme, _, rest = base.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest.rstrip('/')}/r/{token}/ws"


# --- reading messages ----------------------------------------------------------------


def text(message: Mapping[str, Any], name: str, *, allow_empty: bool = False) -> str:
    value = message.get(name)
    if not isinstance(value, str) or (not value and not allow_empty):
        kind = "a string" if allow_empty else "a non-empty string"
        raise ProtocolError("invalid", f"{name} must be {kind}")
    return value


def answer_sdp(connection: Connection, message: Mapping[str, Any]) -> str:
    """The SDP of an `answer`, which only an offer still waiting for one allows."""
    sdp = text(message, "sdp")
    if not connection.offered or connection.answered:
        raise ProtocolError("out_of_order", "no offer is waiting for an answer")
    return sdp


def trickled(connection: Connection, message: Mapping[str, Any]) -> RTCIceCandidate | None:
    """The candidate a `candidate` message carries; None for the end of candidates."""
    if "candidate" not in message:
        raise ProtocolError("invalid", "candidate is required (null: end of candidates)")
    if not connection.answered:
        raise ProtocolError("out_of_order", "send the answer before the candidates")
    value = message["candidate"]
    return None if value is None or value == "" else _ice_candidate(message)


def _ice_candidate(message: Mapping[str, Any]) -> RTCIceCandidate:
    """A browser's RTCIceCandidateInit as aiortc's RTCIceCandidate, or ProtocolError."""
    value = message["candidate"]
    mid = message.get("sdpMid")
    index = message.get("sdpMLineIndex")
    if not isinstance(value, str):
        raise ProtocolError("invalid", "candidate must be a string or null")
    if mid is not None and not isinstance(mid, str):
        raise ProtocolError("invalid", "sdpMid must be a string or null")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
        raise ProtocolError("invalid", "sdpMLineIndex must be an integer or null")
    if mid is None and index is None:
        raise ProtocolError("invalid", "sdpMid or sdpMLineIndex is required")
    line = value.strip().removeprefix("a=").removeprefix("candidate:")
    if len(line.split()) < 8:
        raise ProtocolError("invalid", "not an ICE candidate")
    try:
        candidate = candidate_from_sdp(line)
    except (ValueError, IndexError, AssertionError) as exc:
        raise ProtocolError("invalid", "not an ICE candidate") from exc
    candidate.sdpMid = mid
    candidate.sdpMLineIndex = index
    return candidate
