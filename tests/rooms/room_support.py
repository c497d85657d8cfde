"""Helpers for room tests through the real server: a booking made through the API, and a
signaling client that speaks docs/rooms.md over the test client's WebSocket (optionally with
a synthetic aiortc participant behind it, trickling its ICE candidates like a browser)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from tests.conftest import token_of
from tests.support.polling import eventually
from tests.support.synthetic import SyntheticParticipant


@dataclass(frozen=True)
class Booked:
    """A confirmed booking and its two room tokens."""

    org: Any  # tests/conftest.py's Org
    booking_id: uuid.UUID
    start: datetime
    end: datetime
    candidate_token: str
    evaluator_token: str
    candidate_link: str  # the candidate's personal page token (to cancel, etc.)

    def token(self, role: str) -> str:
        return self.candidate_token if role == "candidate" else self.evaluator_token

    async def report(self) -> dict[str, Any]:
        """The organisation API's view of the booking, room report included."""
        body: dict[str, Any] = await self.org.ok("GET", f"/bookings/{self.booking_id}")
        return body


async def book_interview(org: Any) -> Booked:
    """Evaluator, candidate, the first green slot: the way a candidate books."""
    await org.make_evaluator()
    candidate = await org.make_candidate()
    link = token_of(candidate["link"])
    slots = await (await org.client.get(f"/c/{link}/slots")).json()
    response = await org.client.post(
        f"/c/{link}/booking", json={"start": slots["slots"][0]["start"]}
    )
    assert response.status == 201, await response.text()
    booking_id = (await response.json())["id"]
    detail = await org.ok("GET", f"/bookings/{booking_id}")
    return Booked(
        org=org,
        booking_id=uuid.UUID(detail["id"]),
        start=datetime.fromisoformat(detail["start"]),
        end=datetime.fromisoformat(detail["end"]),
        candidate_token=token_of(detail["rooms"]["candidate"]),
        evaluator_token=token_of(detail["rooms"]["evaluator"]),
        candidate_link=link,
    )


class Closed(Exception):
    """The server closed the WebSocket while a message was expected."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed with {code}")
        self.code = code


class Tab:
    """One browser tab's signaling: sends JSON, reads messages, remembers what came."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []
        self.hello: dict[str, Any] | None = None

    @classmethod
    async def open(cls, client: TestClient, token: str) -> Tab:
        return cls(await client.ws_connect(f"/r/{token}/ws", autoping=True))

    async def next(self, within: float = 10.0) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=within)
        if msg.type == aiohttp.WSMsgType.TEXT:
            message: dict[str, Any] = json.loads(msg.data)
            self.received.append(message)
            if message["type"] == "hello":
                self.hello = message
            return message
        if msg.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSING,
            aiohttp.WSMsgType.CLOSED,
        ):
            raise Closed(self.ws.close_code)
        raise AssertionError(f"unexpected frame {msg.type}: {msg.data!r}")

    async def expect(
        self, kind: str, within: float = 10.0, where: Callable[[dict[str, Any]], bool] = bool
    ) -> dict[str, Any]:
        """The next message of type `kind` (satisfying `where`), skipping others."""
        async with asyncio.timeout(within):
            while True:
                message = await self.next(within)
                if message["type"] == kind and where(message):
                    return message

    async def state(
        self, where: Callable[[dict[str, Any]], bool], within: float = 10.0
    ) -> dict[str, Any]:
        return await self.expect("state", within, where)

    async def send(self, **message: Any) -> None:
        await self.ws.send_str(json.dumps(message))

    async def error(self, within: float = 10.0) -> dict[str, Any]:
        return await self.expect("error", within)

    async def closed(self, within: float = 10.0) -> int | None:
        """Read until the server closes; the close code."""
        try:
            async with asyncio.timeout(within):
                while True:
                    await self.next(within)
        except Closed as closed:
            return closed.code

    async def refused(self) -> tuple[dict[str, Any], int | None]:
        """A refusal: the error, then the close code."""
        error = await self.next()
        assert error["type"] == "error", error
        return error, await self.closed()

    async def close(self) -> None:
        await self.ws.close()


def split_candidates(sdp: str) -> tuple[str, list[dict[str, Any]]]:
    """An SDP without its candidates, and the first section's as RTCIceCandidateInit dicts.

    That is what a browser's answer looks like when it is sent at once and its candidates
    trickle afterwards (all media are bundled on the first section's transport).
    """
    kept: list[str] = []
    candidates: list[dict[str, Any]] = []
    index = -1
    first_mid = "0"
    for line in sdp.splitlines():
        if line.startswith("m="):
            index += 1
        elif line.startswith("a=mid:") and index == 0:
            first_mid = line.removeprefix("a=mid:")
        if line.startswith("a=candidate:"):
            if index == 0:
                candidates.append({"candidate": line.removeprefix("a="), "sdpMLineIndex": 0})
            continue
        if line.startswith("a=end-of-candidates"):
            continue
        kept.append(line)
    for candidate in candidates:
        candidate["sdpMid"] = first_mid
    return "\r\n".join(kept) + "\r\n", candidates


async def join(
    client: TestClient,
    token: str,
    participant: SyntheticParticipant,
    *,
    trickle: bool = False,
) -> Tab:
    """Open the link, take the hello and the offer, answer with `participant`'s media."""
    tab = await Tab.open(client, token)
    await tab.expect("hello")
    offer = await tab.expect("offer")
    answer = await participant.answer({"type": "offer", "sdp": offer["sdp"]})
    if not trickle:
        await tab.send(type="answer", sdp=answer["sdp"])
        return tab
    sdp, candidates = split_candidates(answer["sdp"])
    assert candidates, "the participant gathered no candidate"
    await tab.send(type="answer", sdp=sdp)
    for candidate in candidates:
        await tab.send(type="candidate", **candidate)
    await tab.send(type="candidate", candidate=None)
    return tab


async def consent(client: TestClient, token: str, locale: str = "en") -> None:
    """What the room page does when its box is ticked: store the consent to the recording."""
    from scheduler.web.room_pages import notice_version

    notice = notice_version(client.app, locale)
    response = await client.post(f"/r/{token}/consent", json={"notice": notice})
    assert response.status == 204, await response.text()


async def lobby_media(room: Any, frames: int = 15) -> None:
    """Wait until `frames` more of each camera (half a second) reached the server in the lobby.

    What the lobby must not do (pass media on, record) is shown by its absence once media
    has flowed in, rather than after a fixed sleep that a loaded machine could fill with
    nothing at all.
    """
    sources = [room.bridge.source(role, "video") for role in ("evaluator", "candidate")]
    assert all(source is not None for source in sources), "a camera is missing at the server"
    wanted = [source.stats.frames + frames for source in sources]
    await eventually(
        lambda: all(s.stats.frames >= n for s, n in zip(sources, wanted, strict=True)),
        f"{frames} more frames of each camera at the server, in the lobby",
    )


def inside_window(booked: Booked) -> datetime:
    """A moment when the room is open: a few minutes before the start."""
    return booked.start - timedelta(minutes=5)


async def no_pending_tasks(settle: float = 5.0) -> set[asyncio.Task[Any]]:
    """Tasks still pending once everything had `settle` seconds to finish (should be none).

    Waits on the tasks themselves, again for any a finishing one started, rather than polls.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle
    while True:
        pending = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
        left = deadline - loop.time()
        if not pending or left <= 0:
            return pending
        await asyncio.wait(pending, timeout=left)
