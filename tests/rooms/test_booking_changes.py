"""A booking that changes while its room is live: the room hears of it, and links follow.

Cancelled or moved (by the candidate, on their page or through its JSON, or by the
organisation's force majeure), the participants connected to the room get an `error` and a
close (docs/rooms.md, "When the booking changes during a session"); coming back, their link
resolves afresh. Marked no_show, the evaluator stays and may come back; the candidate may
not. Both databases, real WebSockets through the real server.

Candidates may change their booking until its start here (`change_lock_hours = 0`), so
their own changes can reach an open room (with the default 24 h lock, only the
organisation's force majeure can).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from rooms.signaling import CloseCode
from scheduler import keys
from scheduler.config import Settings, load_settings
from tests.conftest import app_environ
from tests.rooms.room_support import Booked, Tab
from tests.rooms.test_signaling import enter, phase_is, room_row, utc

ROLES = ("candidate", "evaluator")


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return load_settings(
        environ=app_environ(db_url, tmp_path / "data", VIVA_POLICY_CHANGE_LOCK_HOURS="0")
    )


async def connection_test(client: TestClient, token: str) -> Tab:
    """A running connection test (`/r/{token}/echo`), read up to its offer."""
    tab = Tab(await client.ws_connect(f"/r/{token}/echo"))
    hello = await tab.expect("hello")
    assert hello["mode"] == "echo"
    await tab.expect("offer")
    return tab


async def force_majeure(booked: Booked, **body: Any) -> dict[str, Any]:
    result: dict[str, Any] = await booked.org.ok(
        "POST", f"/bookings/{booked.booking_id}/force-majeure", json=body
    )
    return result


async def sent_out(tab: Tab, code: str) -> dict[str, Any]:
    """The `error` a participant gets when the booking changes, once it was closed after it."""
    error = await tab.error()
    assert error["code"] == code, error
    closed = await tab.closed()
    assert closed == (CloseCode.CANCELLED if code == "cancelled" else CloseCode.MOVED), closed
    return error


async def departures(booked: Booked) -> list[tuple[str, str | None]]:
    room = await room_row(booked)
    return sorted((a["role"], a["left_reason"]) for a in room["attendance"])


async def admitted(client: TestClient, booked: Booked) -> tuple[Tab, Tab]:
    """Both in the room, the candidate let in: (evaluator, candidate)."""
    evaluator = await enter(client, booked, "evaluator")
    candidate = await enter(client, booked, "candidate")
    await evaluator.send(type="admit")
    await candidate.state(phase_is("admitted"))
    return evaluator, candidate


# --- cancelled ---------------------------------------------------------------------------


async def test_a_force_majeure_cancellation_sends_everyone_out_and_revokes_both_links(
    client: TestClient, booked: Booked
) -> None:
    evaluator, candidate = await admitted(client, booked)
    test = await connection_test(client, booked.evaluator_token)
    server = client.app[keys.ROOMS]
    assert booked.booking_id in server.rooms

    cancelled = await force_majeure(booked, action="cancel", reason="Evaluator ill")
    assert cancelled["status"] == "cancelled"

    for tab in (evaluator, candidate, test):
        error = await sent_out(tab, "cancelled")
        assert error["message"] == "the interview has been cancelled"
        assert "start" not in error
    assert CloseCode.CANCELLED == 4001
    assert booked.booking_id not in server.rooms
    assert await departures(booked) == [("candidate", "cancelled"), ("evaluator", "cancelled")]
    # What happened in the room stays on record.
    assert (await booked.report())["room"]["admitted_at"] is not None

    # Coming back: both links are dead, for the room and for the connection test alike.
    for role in ROLES:
        for path in ("ws", "echo"):
            tab = Tab(await client.ws_connect(f"/r/{booked.token(role)}/{path}"))
            error, code = await tab.refused()
            assert (error["code"], code) == ("not_found", CloseCode.NOT_FOUND), (role, path)
        assert (await client.get(f"/r/{booked.token(role)}/info")).status == 404
    assert not server.rooms


@pytest.mark.parametrize("where", ["page", "json"])
async def test_the_candidates_own_cancellation_reaches_the_room_and_the_connection_test(
    client: TestClient, booked: Booked, where: str
) -> None:
    evaluator = await enter(client, booked, "evaluator")
    candidate = await enter(client, booked, "candidate")
    test = await connection_test(client, booked.candidate_token)

    if where == "page":
        response = await client.post(
            f"/c/{booked.candidate_link}/cancel", data={}, allow_redirects=False
        )
        assert response.status == 303, await response.text()
    else:
        response = await client.delete(f"/c/{booked.candidate_link}/booking")
        assert response.status == 200, await response.text()
    assert (await booked.report())["status"] == "cancelled"

    for tab in (evaluator, candidate, test):
        await sent_out(tab, "cancelled")
    assert await departures(booked) == [("candidate", "cancelled"), ("evaluator", "cancelled")]
    error, code = await (await Tab.open(client, booked.evaluator_token)).refused()
    assert (error["code"], code) == ("not_found", CloseCode.NOT_FOUND)


# --- moved -------------------------------------------------------------------------------


async def test_a_move_sends_everyone_out_and_the_links_then_open_at_the_new_time(
    client: TestClient, booked: Booked, clock: Any
) -> None:
    evaluator = await enter(client, booked, "evaluator")
    candidate = await enter(client, booked, "candidate")
    test = await connection_test(client, booked.candidate_token)
    server = client.app[keys.ROOMS]
    later = booked.start + timedelta(days=2)

    moved = await force_majeure(booked, action="move", start=utc(later), reason="Network down")
    assert moved["start"] == utc(later)

    for tab in (evaluator, candidate):
        error = await sent_out(tab, "moved")
        assert error["message"] == "the interview has been moved"
        assert error["start"] == utc(later)
        assert error["end"] == utc(later + timedelta(minutes=20))
        assert error["opens_at"] == utc(later - timedelta(minutes=15))
        assert error["closes_at"] == utc(later + timedelta(minutes=20 + 30))
    assert CloseCode.MOVED == 4002
    assert booked.booking_id not in server.rooms
    assert await departures(booked) == [("candidate", "moved"), ("evaluator", "moved")]
    # A move does not concern the connection test: it runs on.
    await test.send(type="ping")
    await test.expect("pong")
    await test.close()

    # The same links, the new time: the room is not open yet.
    for role in ROLES:
        error, code = await (await Tab.open(client, booked.token(role))).refused()
        assert (error["code"], code) == ("too_early", CloseCode.TOO_EARLY), role
        assert error["start"] == utc(later)
        assert error["opens_at"] == utc(later - timedelta(minutes=15))
        info = await (await client.get(f"/r/{booked.token(role)}/info")).json()
        assert (info["start"], info["window"]) == (utc(later), "too_early")

    clock.set(later - timedelta(minutes=5))
    again = await enter(client, booked, "candidate")
    assert again.hello is not None
    assert again.hello["booking"]["start"] == utc(later)
    assert again.hello["booking"]["closes_at"] == utc(later + timedelta(minutes=50))
    await again.close()


async def test_a_move_within_the_window_starts_the_interview_over_and_keeps_the_notes(
    client: TestClient, booked: Booked
) -> None:
    evaluator, candidate = await admitted(client, booked)
    await evaluator.send(type="notes", text="Sound broke down after two minutes.")
    await evaluator.expect("notes_saved")
    await evaluator.send(type="end", outcome="interrupted")
    await evaluator.state(phase_is("ended"))
    await candidate.closed()  # an ended interview sends the candidate away
    server = client.app[keys.ROOMS]
    before = server.rooms[booked.booking_id]
    later = booked.start + timedelta(minutes=10)

    await force_majeure(booked, action="move", start=utc(later), reason="Room change")

    error = await sent_out(evaluator, "moved")
    assert error["start"] == utc(later)
    # Still inside the (new) window: back in at once, in a room built for the new time.
    again = await enter(client, booked, "evaluator")
    assert again.hello is not None
    assert again.hello["booking"]["start"] == utc(later)
    assert again.hello["booking"]["closes_at"] == utc(later + timedelta(minutes=50))
    assert server.rooms[booked.booking_id] is not before
    # A new time is a new interview: back to the lobby, the notes kept.
    assert again.hello["notes"] == "Sound broke down after two minutes."
    assert again.hello["room"]["phase"] == "lobby"
    assert again.hello["room"]["outcome"] is None
    back = await enter(client, booked, "candidate")  # let in again, unlike after an end
    await again.send(type="admit")
    await back.state(phase_is("admitted"))
    await back.close()
    await again.close()
    report = await room_row(booked)
    assert report["ended_at"] is None and report["outcome"] is None
    assert ("evaluator", "moved") in await departures(booked)


@pytest.mark.parametrize("where", ["page", "json"])
async def test_the_candidates_own_reschedule_reaches_the_room(
    client: TestClient, booked: Booked, where: str
) -> None:
    evaluator = await enter(client, booked, "evaluator")
    candidate = await enter(client, booked, "candidate")
    later = booked.start + timedelta(days=1)  # Wednesday 09:00 in Paris, a green slot

    if where == "page":
        response = await client.post(
            f"/c/{booked.candidate_link}/reschedule",
            data={"start": utc(later)},
            allow_redirects=False,
        )
        assert response.status == 303, await response.text()
    else:
        response = await client.put(
            f"/c/{booked.candidate_link}/booking", json={"start": utc(later)}
        )
        assert response.status == 200, await response.text()

    for tab in (evaluator, candidate):
        error = await sent_out(tab, "moved")
        assert error["start"] == utc(later)
    assert await departures(booked) == [("candidate", "moved"), ("evaluator", "moved")]
    error, code = await (await Tab.open(client, booked.candidate_token)).refused()
    assert (error["code"], error["start"], code) == ("too_early", utc(later), CloseCode.TOO_EARLY)


# --- held: no_show, completed ------------------------------------------------------------


async def test_after_the_no_show_mark_the_evaluator_stays_and_may_come_back_not_the_candidate(
    client: TestClient, booked: Booked, clock: Any
) -> None:
    evaluator = await enter(client, booked, "evaluator")
    clock.set(booked.start + timedelta(minutes=10))  # [rooms] no_show_after_minutes
    await client.app[keys.TIMERS].run_due()
    assert (await booked.report())["status"] == "no_show"

    notice = await evaluator.expect("notice")
    assert notice["code"] == "no_show"
    assert notice["message"] == "the candidate did not join in time and is marked absent"
    # Nobody was sent away.
    await evaluator.send(type="ping")
    await evaluator.expect("pong")

    # The candidate's link no longer opens the room, and says why.
    error, code = await (await Tab.open(client, booked.candidate_token)).refused()
    assert (error["code"], code) == ("missed", CloseCode.ENDED)
    page = await client.get(f"/r/{booked.candidate_token}")
    assert page.status == 200
    text = await page.text()
    assert "You were marked absent" in text
    assert 'id="join"' not in text
    # Nothing left to prepare for: no device check, no "open this link before the start".
    assert re.search(r'<section id="devcheck"[^>]* hidden>', text)
    assert "Open this link a few minutes before the start" not in text

    # The evaluator ends it, leaves, and comes back within the window to finish the notes.
    await evaluator.send(type="end", outcome="no_show")
    await evaluator.state(phase_is("ended"))
    await evaluator.send(type="leave")
    assert await evaluator.closed() == CloseCode.NORMAL
    clock.advance(timedelta(minutes=25))
    page = await client.get(f"/r/{booked.evaluator_token}")
    assert page.status == 200
    assert 'id="notes"' in await page.text()
    info = await (await client.get(f"/r/{booked.evaluator_token}/info")).json()
    assert info["window"] == "open"
    again = await enter(client, booked, "evaluator")
    assert again.hello is not None and again.hello["room"]["outcome"] == "no_show"
    await again.send(type="notes", text="The candidate never came.")
    await again.expect("notes_saved")
    await again.close()
    assert await departures(booked) == [("evaluator", "disconnected"), ("evaluator", "left")]

    # Once the room has closed, the evaluator's link says so, as for any booking.
    clock.set(booked.end + timedelta(minutes=30))
    error, code = await (await Tab.open(client, booked.evaluator_token)).refused()
    assert (error["code"], code) == ("too_late", CloseCode.TOO_LATE)


async def test_the_no_show_mark_with_nobody_in_the_room_tells_nobody(
    client: TestClient, booked: Booked, clock: Any
) -> None:
    clock.set(booked.start + timedelta(minutes=10))
    await client.app[keys.TIMERS].run_due()
    assert (await booked.report())["status"] == "no_show"
    assert not client.app[keys.ROOMS].rooms
    # The evaluator who arrives afterwards gets the room as usual.
    evaluator = await enter(client, booked, "evaluator")
    assert evaluator.hello is not None and evaluator.hello["room"]["phase"] == "lobby"
    await evaluator.close()


async def test_a_completed_interview_closes_the_booking_and_keeps_the_evaluators_link_only(
    client: TestClient, booked: Booked
) -> None:
    evaluator, candidate = await admitted(client, booked)
    await evaluator.send(type="id_checked", checked=True)
    await evaluator.send(type="end", outcome="completed")
    await evaluator.state(phase_is("ended"))
    await candidate.closed()

    # The end and the booking's status were written in one transaction.
    booking = await booked.report()
    assert booking["status"] == "completed"
    events = (await booked.org.ok("GET", f"/bookings/{booked.booking_id}/history"))["events"]
    last = events[-1]
    assert (last["actor"], last["action"]) == ("evaluator", "completed")
    assert last["actor_name"] == "Évelyne Examinatrice"
    status, problem = await booked.org.call(
        "POST",
        f"/bookings/{booked.booking_id}/force-majeure",
        json={"action": "cancel", "reason": "too late for that"},
    )
    assert status == 409, problem

    # The evaluator may come back to finish the notes; the candidate's turn is over.
    await evaluator.close()
    again = await enter(client, booked, "evaluator")
    assert again.hello is not None and again.hello["room"]["phase"] == "ended"
    await again.send(type="notes", text="B2 overall.")
    await again.expect("notes_saved")
    await again.close()
    assert (await client.get(f"/r/{booked.evaluator_token}/info")).status == 200
    error, code = await (await Tab.open(client, booked.candidate_token)).refused()
    assert (error["code"], code) == ("ended", CloseCode.ENDED)
    page = await client.get(f"/r/{booked.candidate_token}")
    assert "Your interview is over" in await page.text()


async def test_an_interrupted_interview_leaves_the_booking_to_the_organisation(
    client: TestClient, booked: Booked
) -> None:
    evaluator, candidate = await admitted(client, booked)
    await evaluator.send(type="end", outcome="interrupted")
    await evaluator.state(phase_is("ended"))
    booking = await booked.report()
    assert booking["status"] in ("confirmed", "locked")
    assert booking["room"]["outcome"] == "interrupted"
    for tab in (candidate, evaluator):
        await tab.close()
