"""Booking a slot delivers two invitations through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

from datetime import UTC, datetime

import icalendar
import vobject

from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.config import Settings
from tests.conftest import Org, token_of
from tests.mailer.mailer_support import SmtpServer
from tests.support.polling import eventually

PARIS_NINE = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)  # 09:00 in Paris, 03:00 in New York


async def test_booking_sends_candidate_and_evaluator_invitations(
    aiohttp_client, mail_settings: Settings, clock: FrozenClock, smtp_server: SmtpServer
) -> None:
    from scheduler import keys
    from scheduler.orgs import create_organisation

    client = await aiohttp_client(create_app(mail_settings, clock=clock))
    async with client.app[keys.DB].write() as session:
        new = await create_organisation(
            session, name="CCI Paris", contact_email="oral@cci.test", now=clock.now()
        )
    org = Org(client, new.organisation.id, new.api_key)
    evaluator = await org.make_evaluator(
        name="Hugo Bernard", email="hugo@cci.test", locale="fr", timezone="Europe/Paris"
    )
    cand = await org.make_candidate(
        name="Sarah Johnson", email="sarah@example.test", locale="en", timezone="America/New_York"
    )
    token = token_of(cand["link"])
    resp = await client.post(f"/c/{token}/booking", json={"start": "2026-12-01T09:00:00+01:00"})
    assert resp.status == 201
    booking = await resp.json()

    await eventually(lambda: len(smtp_server.received) == 2, "both invitations delivered")
    by_rcpt = {r.rcpt_tos[0]: r.message for r in smtp_server.received}
    assert set(by_rcpt) == {"sarah@example.test", "hugo@cci.test"}

    to_candidate = by_rcpt["sarah@example.test"]
    text = to_candidate.get_body(("plain",)).get_content()
    # The candidate reads New York time, in English: 09:00 Paris is 3:00 AM there.
    assert "Tuesday, December 1, 2026" in text and "3:00" in text
    assert cand["link"] in text and booking["room"] in text
    to_evaluator = by_rcpt["hugo@cci.test"]
    eval_text = to_evaluator.get_body(("plain",)).get_content()
    assert "mardi 1 décembre 2026" in eval_text and "Sarah Johnson" in eval_text
    assert booking["room"] not in eval_text  # each person gets their own room link

    for message, address in ((to_candidate, "sarah@example.test"), (to_evaluator, "hugo@cci.test")):
        calendar_part = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
        assert calendar_part.get_param("method") == "REQUEST"
        raw_ics = calendar_part.get_payload(decode=True)
        cal = icalendar.Calendar.from_ical(raw_ics)
        event = next(iter(cal.walk("VEVENT")))
        assert str(event["UID"]).startswith(booking["id"])
        assert int(event["SEQUENCE"]) == 0
        assert event.decoded("DTSTART") == PARIS_NINE
        assert str(event["ATTENDEE"]).lower() == f"mailto:{address}"
        assert str(event["ORGANIZER"]).lower() == "mailto:oral@cci.test"
        parsed = vobject.readOne(raw_ics.decode())
        assert parsed.vevent.dtstart.value == PARIS_NINE

    detail = await org.ok("GET", f"/bookings/{booking['id']}")
    assert sorted(m["recipient"] for m in detail["messages"]) == [
        "hugo@cci.test",
        "sarah@example.test",
    ]
    assert {m["status"] for m in detail["messages"]} <= {"sent", "sending"}
    assert evaluator["id"] == detail["evaluator_id"]
