"""A room link dies with the role it was issued for (issue 9, section 1).

When a booking goes to another evaluator — the candidate reschedules and Viva picks someone
else, or the organisation's force majeure names one — the replaced evaluator's link answers
exactly like a link that never existed, on the page, `/info`, `/ws` and `/echo`; a socket
it holds open is closed at once (4403 `revoked`) and the room forgets it; the new evaluator
is mailed a new link that works; the candidate's link is unchanged. Both databases, real
WebSockets through the real server, real outbox rows.
"""

from __future__ import annotations

import base64
import email
import re
from datetime import UTC, datetime, timedelta
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from mailer.outbox import booking_messages
from rooms.signaling import CloseCode
from rooms.tokens import LinkKind
from scheduler import keys
from scheduler.config import Settings, load_settings
from scheduler.models import Booking
from tests.conftest import app_environ, token_of
from tests.rooms.room_support import Booked, Tab
from tests.rooms.test_booking_changes import connection_test, departures
from tests.rooms.test_signaling import enter, utc

NEVER_VALID = "A" * 46
SATURDAY = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)  # 09:00 in Paris: only "Second" works then


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    # Candidates may change until the start, so their own reschedule can reach a live room.
    return load_settings(
        environ=app_environ(db_url, tmp_path / "data", VIVA_POLICY_CHANGE_LOCK_HOURS="0")
    )


def _without_tokens(text: str, *tokens: str) -> str:
    for token in tokens:
        text = text.replace(token, "TOKEN")
    return re.sub(r'href="[^"]*"', 'href=""', text)


async def second_evaluator(booked: Booked) -> dict[str, Any]:
    """Another evaluator of the booking's language, free on Saturday mornings only."""
    return await booked.org.make_evaluator(
        name="Second Examiner",
        email="second@cci.test",
        locale="en",
        weekly=[{"day": "sat", "start": "09:00", "end": "12:00"}],
    )


async def move_to_second(client: TestClient, booked: Booked, how: str, second: dict) -> None:
    if how == "reschedule":
        response = await client.put(
            f"/c/{booked.candidate_link}/booking", json={"start": utc(SATURDAY)}
        )
        assert response.status == 200, await response.text()
    else:
        await booked.org.ok(
            "POST",
            f"/bookings/{booked.booking_id}/force-majeure",
            json={
                "action": "move",
                "start": utc(SATURDAY),
                "evaluator_id": second["id"],
                "reason": "Evaluator ill",
            },
        )
    detail = await booked.report()
    assert detail["evaluator_id"] == second["id"]  # Viva (or the organisation) chose Second


async def assert_like_a_never_valid_link(client: TestClient, token: str) -> None:
    """404 on the page and /info, `not_found` 4404 on /ws and /echo: as for a made-up link."""
    for suffix in ("", "/info"):
        reference = await client.get(f"/r/{NEVER_VALID}{suffix}")
        response = await client.get(f"/r/{token}{suffix}")
        assert (response.status, reference.status) == (404, 404), suffix
        assert response.content_type == reference.content_type, suffix
        assert _without_tokens(await response.text(), token) == _without_tokens(
            await reference.text(), NEVER_VALID
        ), suffix
    for path in ("ws", "echo"):
        error, code = await Tab(await client.ws_connect(f"/r/{token}/{path}")).refused()
        assert (error["code"], code) == ("not_found", CloseCode.NOT_FOUND), path


async def mails_to(booked: Booked, recipient: str) -> list[str]:
    """Every message to `recipient` about the booking, its parts decoded, oldest first."""
    async with booked.org.client.app[keys.DB].read() as session:
        stored = await booking_messages(session, booked.booking_id)
    return [_decoded(m.raw) for m in stored if m.recipient == recipient]


def _decoded(raw: bytes) -> str:
    message = email.message_from_bytes(raw, policy=default)
    parts = (p.get_payload(decode=True) for p in message.walk() if not p.is_multipart())
    return "\n".join(part.decode() for part in parts if part)


@pytest.mark.parametrize("how", ["reschedule", "force_majeure"])
async def test_the_replaced_evaluators_link_dies_and_the_new_one_works(
    client: TestClient, booked: Booked, how: str
) -> None:
    first = (await booked.report())["evaluator_id"]
    first_email = (await booked.org.ok("GET", f"/evaluators/{first}"))["email"]
    second = await second_evaluator(booked)
    old_evaluator = await enter(client, booked, "evaluator")
    candidate = await enter(client, booked, "candidate")
    old_test = await connection_test(client, booked.evaluator_token)
    candidate_test = await connection_test(client, booked.candidate_token)
    server = client.app[keys.ROOMS]

    await move_to_second(client, booked, how, second)

    # The old evaluator's sockets, room and connection test alike, are closed at once as
    # revoked (not merely `moved`: they are not coming back at the new time).
    for tab in (old_evaluator, old_test):
        error = await tab.error()
        assert error["code"] == "revoked", error
        assert await tab.closed() == CloseCode.REVOKED == 4403
    error = await candidate.error()
    assert error["code"] == "moved" and error["start"] == utc(SATURDAY)
    assert await candidate.closed() == CloseCode.MOVED
    assert booked.booking_id not in server.rooms
    assert await departures(booked) == [("candidate", "moved"), ("evaluator", "revoked")]
    # The candidate's connection test is none of this change's business.
    await candidate_test.send(type="ping")
    await candidate_test.expect("pong")
    await candidate_test.close()

    # The candidate's link is unchanged; the evaluator's is new.
    rooms = (await booked.report())["rooms"]
    assert token_of(rooms["candidate"]) == booked.candidate_token
    new_token = token_of(rooms["evaluator"])
    assert new_token != booked.evaluator_token

    await assert_like_a_never_valid_link(client, booked.evaluator_token)
    info = await (await client.get(f"/r/{new_token}/info")).json()
    assert (info["role"], info["name"], info["start"]) == (
        "evaluator",
        "Second Examiner",
        utc(SATURDAY),
    )
    info = await (await client.get(f"/r/{booked.candidate_token}/info")).json()
    assert (info["role"], info["other_name"]) == ("candidate", "Second Examiner")
    new_test = await connection_test(client, new_token)
    await new_test.close()

    # The new evaluator is mailed the new link; the replaced one's cancellation carries
    # neither theirs (dead) nor, above all, their successor's.
    to_second = await mails_to(booked, "second@cci.test")
    assert len(to_second) == 1 and new_token in to_second[0]
    to_first = await mails_to(booked, first_email)
    assert len(to_first) == 2  # the confirmation, then the cancellation of their time
    assert "METHOD:CANCEL" in to_first[-1]
    assert new_token not in to_first[-1]


async def test_a_move_that_keeps_the_evaluator_keeps_both_links(
    client: TestClient, booked: Booked
) -> None:
    evaluator = await enter(client, booked, "evaluator")
    later = booked.start + timedelta(days=1)
    response = await client.put(f"/c/{booked.candidate_link}/booking", json={"start": utc(later)})
    assert response.status == 200, await response.text()
    error = await evaluator.error()
    assert error["code"] == "moved"
    assert await evaluator.closed() == CloseCode.MOVED
    rooms = (await booked.report())["rooms"]
    assert (token_of(rooms["candidate"]), token_of(rooms["evaluator"])) == (
        booked.candidate_token,
        booked.evaluator_token,
    )
    assert (await client.get(f"/r/{booked.evaluator_token}/info")).status == 200


def _as_kind(token: str, kind: LinkKind) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[1] = kind
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


async def test_a_candidate_link_never_acts_as_the_evaluators(
    client: TestClient, booked: Booked
) -> None:
    """The kind is inside the MAC: relabelled, the candidate's links open nothing, even
    when both room nonces are equal (as the migration leaves existing bookings)."""
    links = client.app[keys.LINKS]
    async with client.app[keys.DB].write() as session:
        row = await session.get(Booking, booked.booking_id)
        assert row is not None
        row.candidate_room_nonce = row.evaluator_room_nonce = "one-nonce-for-both"
        candidate_room = links.room_token(row, "candidate")
        evaluator_room = links.room_token(row, "evaluator")
    assert (await client.get(f"/r/{candidate_room}/info")).status == 200
    for token in (
        _as_kind(candidate_room, LinkKind.ROOM_EVALUATOR),
        _as_kind(booked.candidate_link, LinkKind.ROOM_EVALUATOR),
        _as_kind(booked.candidate_link, LinkKind.ROOM_CANDIDATE),
    ):
        await assert_like_a_never_valid_link(client, token)
    info = await (await client.get(f"/r/{evaluator_room}/info")).json()
    assert info["role"] == "evaluator"


async def test_reissuing_the_candidates_links_sends_their_socket_out_and_keeps_the_evaluator(
    client: TestClient, booked: Booked
) -> None:
    """The organisation re-issues the candidate's links mid-interview: the candidate's open
    socket and connection test close as revoked at once; the evaluator stays, and sees the
    candidate gone; the new room link lets the candidate back in."""
    evaluator = await enter(client, booked, "evaluator")
    candidate = await enter(client, booked, "candidate")
    candidate_test = await connection_test(client, booked.candidate_token)
    evaluator_test = await connection_test(client, booked.evaluator_token)
    await evaluator.send(type="admit")
    await candidate.state(lambda s: s["phase"] == "admitted")
    server = client.app[keys.ROOMS]
    candidate_id = (await booked.report())["candidate_id"]

    new = await booked.org.ok("POST", f"/candidates/{candidate_id}/link")

    # Forgotten by the room as soon as the answer is out, before their tab has said a word.
    room = server.rooms[booked.booking_id]
    assert set(room.connections) == {"evaluator"}
    for tab in (candidate, candidate_test):
        error = await tab.error()
        assert error["code"] == "revoked", error
        assert await tab.closed() == CloseCode.REVOKED
    await evaluator.state(lambda s: not s["present"]["candidate"])
    await evaluator.send(type="ping")
    await evaluator.expect("pong")
    await evaluator_test.send(type="ping")
    await evaluator_test.expect("pong")
    await evaluator_test.close()

    await assert_like_a_never_valid_link(client, booked.candidate_token)
    back = await Tab.open(client, token_of(new["room"]))
    hello = await back.expect("hello")
    assert hello["role"] == "candidate"
    await evaluator.state(lambda s: s["present"]["candidate"])
    await back.close()
    await evaluator.close()
    assert ("candidate", "revoked") in await departures(booked)
