"""The events that come from the rooms and the mail outbox, through their real machinery:
a candidate entering a real room over its WebSocket, the evaluator ending the interview,
and an SMTP server (aiosmtpd) refusing a recipient for good. Both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from scheduler import keys
from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.config import Settings, load_settings
from tests.conftest import app_environ, token_of
from tests.mailer.mailer_support import SmtpServer
from tests.rooms.room_support import book_interview, inside_window
from tests.rooms.test_booking_changes import admitted
from tests.rooms.test_signaling import enter, phase_is
from tests.scheduler.test_webhooks import FAST, checked, received, subscribe
from tests.scheduler.webhook_support import Receiver
from tests.support.polling import eventually


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return load_settings(environ=app_environ(db_url, tmp_path / "data", **FAST))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    await found.start()
    yield found
    await found.stop()


@pytest.mark.parametrize("outcome", ["completed", "interrupted"])
async def test_the_room_tells_a_candidates_arrival_once_and_the_interviews_end(
    client: TestClient, make_org, clock, receiver: Receiver, outcome: str
) -> None:
    org = await make_org()
    await subscribe(org, receiver, ["room.candidate_joined", "booking.completed"])
    booked = await book_interview(org)
    clock.set(inside_window(booked))
    evaluator, candidate = await admitted(client, booked)
    # Back after a dropped connection: not news.
    await candidate.close()
    candidate = await enter(client, booked, "candidate")
    assert candidate.hello is not None and candidate.hello["room"]["phase"] == "admitted"
    if outcome == "completed":
        await evaluator.send(type="id_checked", checked=True)
    await evaluator.send(type="end", outcome=outcome)
    await evaluator.state(phase_is("ended"))
    await candidate.closed()
    await evaluator.close()

    events = await received(receiver, 2)
    assert [e["type"] for e in events] == ["room.candidate_joined", "booking.completed"]
    joined, ended = map(checked, events)
    assert joined["booking_id"] == str(booked.booking_id)
    assert joined["joined_at"].startswith(inside_window(booked).isoformat()[:16])
    assert ended["outcome"] == outcome
    # A completed interview holds the booking; an interrupted one leaves it active.
    assert ended["status"] == ("completed" if outcome == "completed" else "locked")
    assert len(receiver.received) == 2


async def test_a_message_refused_for_good_is_told_without_its_address(
    aiohttp_client, db_url: str, tmp_path: Path, clock: FrozenClock, receiver: Receiver
) -> None:
    smtp = SmtpServer()
    smtp.handler.rcpt_reply = "550 5.1.1 <{rcpt}> no such user"
    smtp.start()
    try:
        settings = load_settings(
            environ=app_environ(
                db_url,
                tmp_path / "data",
                VIVA_SMTP_HOST="127.0.0.1",
                VIVA_SMTP_PORT=str(smtp.port),
                VIVA_SMTP_SECURITY="none",
                **FAST,
            )
        )
        client = await aiohttp_client(create_app(settings, clock=clock))
        from tests.scheduler.test_resend import _org

        org = await _org(client, clock, "CCI")
        await subscribe(org, receiver, ["message.failed", "booking.created"])
        await org.make_evaluator()
        cand = await org.make_candidate(email="refused@example.org")
        token = token_of(cand["link"])
        resp = await client.post(f"/c/{token}/booking", json={"start": "2026-12-02T09:00:00+01:00"})
        booking_id = (await resp.json())["id"]
        events = await received(receiver, 3)
    finally:
        smtp.stop()
    assert [e["type"] for e in events] == ["booking.created", "message.failed", "message.failed"]
    messages = (await org.ok("GET", f"/bookings/{booking_id}"))["messages"]
    failures = [checked(e) for e in events[1:]]
    assert {f["message_id"] for f in failures} == {m["id"] for m in messages}
    for failure in failures:
        assert failure["booking_id"] == booking_id and failure["attempts"] == 1
        assert failure["kind"] == "booking_confirmed"
        assert failure["error"].startswith("550") and "refused@example.org" not in failure["error"]
    registry = client.app[keys.METRICS].registry
    await eventually(
        lambda: registry.get_sample_value("viva_mail_failed_total") == 2, "both failures counted"
    )
