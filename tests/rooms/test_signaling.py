"""The room protocol (docs/rooms.md) through the real server, without media.

Each test books an interview through the API, moves the clock inside the room's window
(the `booked` fixture) and opens the room links over the test client's WebSocket. The server
makes a real aiortc offer each time; nobody answers it unless a test says so. Both databases.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from rooms.signaling import MAX_MESSAGE_BYTES, MAX_PROTOCOL_ERRORS, CloseCode
from scheduler import keys
from tests.rooms.room_support import (
    Booked,
    Closed,
    Tab,
    book_interview,
    inside_window,
    no_pending_tasks,
)
from tests.support.polling import eventually


async def enter(client: TestClient, booked: Booked, role: str) -> Tab:
    """Open a link and read up to its offer."""
    tab = await Tab.open(client, booked.token(role))
    hello = await tab.next()
    assert hello["type"] == "hello", hello
    await tab.expect("offer")
    return tab


async def room_row(booked: Booked, connected: int = 0) -> dict[str, Any]:
    """The booking's room report once exactly `connected` attendance rows are still open.

    A tab learns of its close before the server's handler has written the departure, so
    this waits (briefly) for the rows of the tabs the test closed.
    """

    async def settled() -> dict[str, Any] | None:
        room: dict[str, Any] = (await booked.report())["room"]
        still_in = sum(1 for a in room["attendance"] if a["left_at"] is None)
        return room if still_in == connected else None

    return await eventually(settled, f"{connected} attendance rows left open", within=10)


def utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def phase_is(phase: str) -> Any:
    return lambda state: state["phase"] == phase


# --- joining ---------------------------------------------------------------------------


async def test_hello_describes_the_room_then_the_server_offers(
    client: TestClient, booked: Booked
) -> None:
    tab = await Tab.open(client, booked.evaluator_token)
    hello = await tab.next()
    assert hello["type"] == "hello"
    assert hello["role"] == "evaluator"
    assert hello["protocol"] == 1
    assert hello["name"] == "Évelyne Examinatrice"
    assert hello["other_name"] == "Camille Candidate"
    assert hello["organisation"] == "CCI Formation"
    assert (hello["locale"], hello["timezone"], hello["language"]) == ("fr", "Europe/Paris", "en")
    assert hello["ice_servers"] == []
    assert hello["interview"] == {
        "target_minutes": 20,
        "steps": ["id_check", "introduction", "role_play", "discussion"],
    }
    assert hello["recording"] is False
    assert hello["notes"] == ""
    booking = hello["booking"]
    assert booking["id"] == str(booked.booking_id)
    assert booking["opens_at"] == utc(booked.start - timedelta(minutes=15))
    assert booking["closes_at"] == utc(booked.end + timedelta(minutes=30))
    room = hello["room"]
    assert room["phase"] == "lobby" and room["step"] is None
    assert room["present"] == {"candidate": False, "evaluator": True}
    assert "notes" not in room

    rest = [await tab.next(), await tab.next()]
    assert {m["type"] for m in rest} == {"state", "offer"}
    offer = next(m for m in rest if m["type"] == "offer")
    assert offer["sdp"].startswith("v=0")
    assert "a=end-of-candidates" in offer["sdp"]  # complete: the server does not trickle
    assert offer["sdp"].count("a=sendrecv") == 2

    candidate = await enter(client, booked, "candidate")
    assert candidate.hello is not None and "notes" not in candidate.hello
    assert candidate.hello["role"] == "candidate"
    assert candidate.hello["other_name"] == "Évelyne Examinatrice"
    state = await tab.state(lambda s: s["present"]["candidate"])
    assert state["present"] == {"candidate": True, "evaluator": True}
    await tab.send(type="ping")
    await tab.expect("pong")
    await candidate.close()
    await tab.state(lambda s: not s["present"]["candidate"])
    await tab.close()


async def test_info_tells_the_page_what_to_render(client: TestClient, booked: Booked) -> None:
    response = await client.get(f"/r/{booked.candidate_token}/info")
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    info = await response.json()
    assert info["role"] == "candidate"
    assert info["name"] == "Camille Candidate"
    assert info["other_name"] == "Évelyne Examinatrice"
    assert info["window"] == "open"
    assert info["start"] == utc(booked.start) and info["end"] == utc(booked.end)
    assert info["websocket"] == f"/r/{booked.candidate_token}/ws"
    assert info["interview"]["steps"][0] == "id_check"
    # Reading it is not joining.
    assert (await room_row(booked))["attendance"] == []


# --- the window ------------------------------------------------------------------------


async def test_the_room_opens_and_closes_with_its_window(
    client: TestClient, booked: Booked, clock: Any
) -> None:
    clock.set(booked.start - timedelta(minutes=15, seconds=1))
    error, code = await (await Tab.open(client, booked.candidate_token)).refused()
    assert code == CloseCode.TOO_EARLY == 4425
    assert error["code"] == "too_early"
    assert error["opens_at"] == utc(booked.start - timedelta(minutes=15))
    assert error["start"] == utc(booked.start)
    assert error["now"] == utc(clock.now())
    info = await (await client.get(f"/r/{booked.candidate_token}/info")).json()
    assert info["window"] == "too_early"

    clock.set(booked.start - timedelta(minutes=15))
    evaluator = await enter(client, booked, "evaluator")
    candidate = await enter(client, booked, "candidate")

    clock.set(booked.end + timedelta(minutes=30))
    error, code = await (await Tab.open(client, booked.evaluator_token)).refused()
    assert (error["code"], code) == ("too_late", CloseCode.TOO_LATE)
    assert error["closes_at"] == utc(booked.end + timedelta(minutes=30))
    # Those still inside are told, and disconnected, as soon as the room notices.
    await candidate.send(type="ping")
    for tab in (candidate, evaluator):
        error = await tab.error()
        assert error["code"] == "too_late"
        assert await tab.closed() == CloseCode.TOO_LATE
    report = await room_row(booked)
    assert {a["left_reason"] for a in report["attendance"]} == {"expired"}


# --- who may do what -------------------------------------------------------------------


async def test_the_candidate_cannot_act_for_the_evaluator(
    client: TestClient, booked: Booked
) -> None:
    evaluator = await enter(client, booked, "evaluator")
    candidate = await enter(client, booked, "candidate")
    await evaluator.state(lambda s: s["present"]["candidate"])
    attempts = [
        {"type": "admit"},
        {"type": "id_checked", "checked": True},
        {"type": "step", "step": "introduction"},
        {"type": "notes", "text": "I did great"},
        {"type": "end", "outcome": "completed"},
    ]
    assert len(attempts) == MAX_PROTOCOL_ERRORS
    for attempt in attempts:
        await candidate.send(**attempt)
        error = await candidate.error()
        assert (error["code"], error["about"]) == ("forbidden", attempt["type"])
    assert await candidate.closed() == CloseCode.POLICY_VIOLATION == 1008

    # Nothing changed: not in the database, not for the evaluator, who is still connected.
    room = await room_row(booked, connected=1)
    assert (room["admitted_at"], room["id_checked_at"], room["step"]) == (None, None, None)
    assert (room["ended_at"], room["outcome"]) == (None, None)
    candidate_rows = [a for a in room["attendance"] if a["role"] == "candidate"]
    assert [a["left_reason"] for a in candidate_rows] == ["policy"]
    state = await evaluator.state(lambda s: not s["present"]["candidate"])
    assert state["phase"] == "lobby"
    assert not [m for m in evaluator.received if m["type"] == "state" and m["phase"] != "lobby"]
    await evaluator.send(type="ping")
    await evaluator.expect("pong")
    await evaluator.close()


async def test_an_interview_from_lobby_to_end_is_recorded(
    client: TestClient, booked: Booked, clock: Any
) -> None:
    evaluator = await enter(client, booked, "evaluator")
    await evaluator.send(type="admit")
    assert (await evaluator.error())["code"] == "candidate_absent"

    candidate = await enter(client, booked, "candidate")
    assert candidate.hello is not None and candidate.hello["room"]["phase"] == "lobby"
    admitted_at = clock.now()
    await evaluator.send(type="admit")
    for tab in (evaluator, candidate):
        state = await tab.state(phase_is("admitted"))
        assert state["step"] == "id_check"
        assert state["admitted_at"] == utc(admitted_at)

    clock.advance(timedelta(minutes=1))
    await evaluator.send(type="step", step="introduction")
    assert (await evaluator.error())["code"] == "id_not_checked"
    await evaluator.send(type="end")  # "completed" needs the ID check too
    assert (await evaluator.error())["code"] == "id_not_checked"
    await evaluator.send(type="id_checked", checked=True)
    state = await candidate.state(lambda s: s["id_checked_at"] is not None)
    assert state["id_checked_at"] == utc(clock.now())

    clock.advance(timedelta(seconds=30))
    started = clock.now()
    await evaluator.send(type="step", step="introduction")
    await candidate.state(lambda s: s["step"] == "introduction")
    await evaluator.send(type="id_checked", checked=False)
    assert (await evaluator.error())["code"] == "interview_started"
    clock.advance(timedelta(minutes=6))
    await evaluator.send(type="step", step="role_play")
    state = await candidate.state(lambda s: s["step"] == "role_play")
    assert state["interview_started_at"] == utc(started)  # the timer started once

    await evaluator.send(type="notes", text="B2: fluent; hesitant on the role-play ✓")
    saved = await evaluator.expect("notes_saved")
    assert saved["length"] == 39

    clock.advance(timedelta(minutes=12))
    ended_at = clock.now()
    await evaluator.send(type="end", outcome="completed")
    state = await evaluator.state(phase_is("ended"))
    assert (state["outcome"], state["ended_at"]) == ("completed", utc(ended_at))
    await candidate.state(phase_is("ended"))
    assert (await candidate.error())["code"] == "ended"
    assert await candidate.closed() == CloseCode.ENDED == 4000
    # The notes never reached the candidate.
    assert "hesitant" not in json.dumps(candidate.received)

    # The candidate's link no longer opens the room; the evaluator's does, with the notes.
    error, code = await (await Tab.open(client, booked.candidate_token)).refused()
    assert (error["code"], code) == ("ended", CloseCode.ENDED)
    await evaluator.send(type="step", step="discussion")
    assert (await evaluator.error())["code"] == "ended"
    await evaluator.send(type="leave")
    assert await evaluator.closed() == CloseCode.NORMAL
    again = await enter(client, booked, "evaluator")
    assert again.hello is not None
    assert again.hello["notes"] == "B2: fluent; hesitant on the role-play ✓"
    assert again.hello["room"]["phase"] == "ended"
    await again.close()

    room = await room_row(booked)
    report = await booked.report()
    assert _instant(room["admitted_at"]) == admitted_at
    assert _instant(room["interview_started_at"]) == started
    assert _instant(room["ended_at"]) == ended_at
    assert (room["outcome"], room["step"]) == ("completed", "role_play")
    assert "notes" not in json.dumps(report)
    # (The clock stood still while both joined: rows with the same time come in any order.)
    joins = sorted((a["role"], a["left_reason"]) for a in room["attendance"])
    assert joins == [
        ("candidate", "ended"),
        ("evaluator", "disconnected"),
        ("evaluator", "left"),
    ]
    assert all(a["left_at"] is not None for a in room["attendance"])


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# --- several tabs, reconnections -------------------------------------------------------


async def test_a_second_tab_takes_over_and_admission_survives_reconnection(
    client: TestClient, booked: Booked
) -> None:
    evaluator = await enter(client, booked, "evaluator")
    first = await enter(client, booked, "candidate")
    await evaluator.send(type="admit")
    await first.state(phase_is("admitted"))
    admitted = await evaluator.state(phase_is("admitted"))

    second = await enter(client, booked, "candidate")
    assert second.hello is not None and second.hello["room"]["phase"] == "admitted"
    await first.expect("replaced")
    assert await first.closed() == CloseCode.REPLACED == 4409
    await second.send(type="ping")
    await second.expect("pong")
    # For the evaluator the candidate never left: the takeover is one arrival.
    state = await evaluator.state(lambda s: s["version"] > admitted["version"])
    assert state["present"]["candidate"] and state["phase"] == "admitted"

    await second.close()
    await evaluator.state(lambda s: not s["present"]["candidate"])
    third = await enter(client, booked, "candidate")
    assert third.hello is not None and third.hello["room"]["phase"] == "admitted"
    await third.close()
    await evaluator.close()

    room = await room_row(booked)
    reasons = sorted(a["left_reason"] for a in room["attendance"] if a["role"] == "candidate")
    assert reasons == ["disconnected", "disconnected", "replaced"]


# --- links that do not open a room -----------------------------------------------------


async def test_cancelled_unknown_and_forged_links_are_all_just_not_found(
    client: TestClient, booked: Booked, clock: Any
) -> None:
    await booked.org.ok(
        "POST",
        f"/bookings/{booked.booking_id}/force-majeure",
        json={"action": "cancel", "reason": "evaluator ill"},
    )
    other = await book_interview(booked.org)  # a live booking, to forge from
    forged = other.candidate_token[:-4] + (
        "AAAA" if other.candidate_token[-4:] != "AAAA" else "BBBB"
    )
    tokens = [booked.candidate_token, booked.evaluator_token, forged, "not-a-token" * 5, "x"]
    errors, bodies = [], []
    for token in tokens:
        error, code = await (await Tab.open(client, token)).refused()
        assert code == CloseCode.NOT_FOUND == 4404
        errors.append(error)
        response = await client.get(f"/r/{token}/info")
        assert response.status == 404
        assert response.content_type == "application/problem+json"
        bodies.append(await response.json())
    assert all(e == errors[0] for e in errors), errors
    assert all(b == bodies[0] for b in bodies), bodies
    assert errors[0] == {"type": "error", "code": "not_found", "message": "this link is not valid"}
    # The other booking's real links still work.
    clock.set(inside_window(other))
    tab = await enter(client, other, "candidate")
    await tab.close()


# --- robustness ------------------------------------------------------------------------


async def _until_closed(tab: Tab) -> tuple[list[dict[str, Any]], int | None]:
    """The errors a tab receives until the server closes it, and the close code."""
    errors: list[dict[str, Any]] = []
    try:
        while True:
            message = await tab.next()
            if message["type"] == "error":
                errors.append(message)
    except Closed as closed:
        return errors, closed.code


async def test_garbage_gets_errors_then_a_close_and_the_server_keeps_serving(
    client: TestClient, booked: Booked
) -> None:
    evaluator = await enter(client, booked, "evaluator")

    tab = await enter(client, booked, "candidate")
    await tab.ws.send_bytes(os.urandom(64))
    await tab.ws.send_str('{"type": "answer", "sdp": "v=0')  # truncated
    await tab.ws.send_str("[" * 30_000)  # deep enough to exhaust the JSON parser's stack
    await tab.send(type="dance")
    await tab.ws.send_str(json.dumps({"type": "notes", "text": "x" * MAX_MESSAGE_BYTES}))
    errors, code = await _until_closed(tab)
    assert [e["code"] for e in errors] == [
        "malformed",
        "malformed",
        "malformed",
        "unknown_type",
        "too_large",
    ]
    assert code == CloseCode.POLICY_VIOLATION

    tab = await enter(client, booked, "candidate")
    await tab.send(type="candidate", candidate="candidate:1 1 udp 1 10.0.0.1 9 typ host")
    await tab.send(type="answer")
    await tab.send(type="answer", sdp="v=0\r\nthis is not SDP\r\n")
    await tab.send(type="offer", sdp="v=0")
    await tab.send(type="id_checked", checked="yes")  # forbidden before invalid
    errors, code = await _until_closed(tab)
    assert [e["code"] for e in errors] == [
        "out_of_order",
        "invalid",
        "invalid",
        "out_of_order",
        "forbidden",
    ]
    assert code == CloseCode.POLICY_VIOLATION

    # Seeded fuzz: random JSON-ish text and random field values, tab after tab.
    rng = random.Random(20261201)
    pieces = ['{"type":', '"answer"', '"candidate"', '"step"', "null", "1e999", "{", "}", "[", '"']
    for _ in range(3):
        tab = await enter(client, booked, "candidate")
        for _ in range(MAX_PROTOCOL_ERRORS):
            if rng.random() < 0.5:
                await tab.ws.send_str("".join(rng.choice(pieces) for _ in range(rng.randint(1, 6))))
            else:
                await tab.send(type=rng.choice(["candidate", "answer", "x", ""]), sdp=rng.random())
        errors, code = await _until_closed(tab)
        assert len(errors) == MAX_PROTOCOL_ERRORS and code == CloseCode.POLICY_VIOLATION
        assert all(isinstance(e["message"], str) for e in errors)

    # The evaluator noticed nothing but comings and goings; a fresh connection works.
    await evaluator.send(type="ping")
    await evaluator.expect("pong")
    fresh = await enter(client, booked, "candidate")
    await fresh.send(type="ping")
    await fresh.expect("pong")
    assert (await client.get("/healthz")).status == 200
    await fresh.close()
    await evaluator.close()


async def test_a_huge_frame_is_not_even_read(client: TestClient, booked: Booked) -> None:
    tab = await enter(client, booked, "candidate")
    await tab.ws.send_str("x" * (1024 * 1024 + 1))
    assert await tab.closed() == 1009
    tab = await enter(client, booked, "candidate")
    await tab.close()


async def test_a_flood_is_rate_limited(client: TestClient, booked: Booked) -> None:
    tab = await enter(client, booked, "candidate")
    for _ in range(120):
        await tab.send(type="ping")
    errors, code = await _until_closed(tab)
    assert errors and {e["code"] for e in errors} == {"rate_limited"}
    assert code == CloseCode.POLICY_VIOLATION
    assert sum(1 for m in tab.received if m["type"] == "pong") >= 50


async def test_shutdown_says_going_away_and_records_departures(
    client: TestClient, booked: Booked, db: Any
) -> None:
    from rooms.models import attendance

    evaluator = await enter(client, booked, "evaluator")
    candidate = await enter(client, booked, "candidate")
    server = client.app[keys.ROOMS]
    assert booked.booking_id in server.rooms
    closing = asyncio.ensure_future(client.server.close())  # the server only: tabs stay
    codes = await asyncio.gather(evaluator.closed(), candidate.closed())
    await closing
    assert codes == [CloseCode.GOING_AWAY, CloseCode.GOING_AWAY]
    assert not server.rooms
    async with db.read() as session:
        rows = await attendance(session, booked.booking_id)
    assert sorted((r.role, r.left_reason) for r in rows) == [
        ("candidate", "shutdown"),
        ("evaluator", "shutdown"),
    ]
    assert all(r.left_at == booked.start - timedelta(minutes=5) for r in rows)
    await client.close()
    assert not await no_pending_tasks(), "tasks left running after the server closed"


# --- the connection test ---------------------------------------------------------------


async def test_the_connection_test_runs_any_day_and_is_no_attendance(
    client: TestClient, booked: Booked, clock: Any
) -> None:
    clock.set(booked.start - timedelta(days=1))  # the guide's "demo first", the day before
    error, code = await (await Tab.open(client, booked.candidate_token)).refused()
    assert (error["code"], code) == ("too_early", CloseCode.TOO_EARLY)

    # The first test outlives the second's arrival however slow the machine; the second is
    # short (but longer than making its offer), to see the time limit.
    client.app[keys.ROOMS].echoes.seconds = 30
    first = Tab(await client.ws_connect(f"/r/{booked.candidate_token}/echo"))
    hello = await first.next()
    assert (hello["type"], hello["mode"], hello["role"]) == ("hello", "echo", "candidate")
    assert hello["ice_servers"] == []
    assert (await first.next())["type"] == "offer"
    await first.send(type="admit")
    assert (await first.error())["code"] == "forbidden"

    client.app[keys.ROOMS].echoes.seconds = 3
    second = Tab(await client.ws_connect(f"/r/{booked.candidate_token}/echo"))
    await second.expect("offer")
    await first.expect("replaced")
    assert await first.closed() == CloseCode.REPLACED
    error = await second.error()
    assert error["code"] == "time_limit"
    assert await second.closed() == CloseCode.TIME_LIMIT == 4408

    assert (await room_row(booked))["attendance"] == []
    assert not client.app[keys.ROOMS].rooms

    # Any day while the link is valid: during the window, and once the room has closed.
    for moment in (inside_window(booked), booked.end + timedelta(minutes=30, days=7)):
        clock.set(moment)
        for token in (booked.candidate_token, booked.evaluator_token):
            test = Tab(await client.ws_connect(f"/r/{token}/echo"))
            hello = await test.next()
            assert (hello["type"], hello["mode"]) == ("hello", "echo")
            await test.expect("offer")
            await test.send(type="leave")
            assert await test.closed() == CloseCode.NORMAL
    error, code = await (await Tab.open(client, booked.candidate_token)).refused()
    assert (error["code"], code) == ("too_late", CloseCode.TOO_LATE)  # not the room itself
    assert (await room_row(booked))["attendance"] == []
