"""Logs name objects by id, never people: a booking, its mails, a cancellation whose reason
names the candidate, an erasure, a retention run and an evaluator's erasure leave neither
name nor e-mail address in any log line (docs/privacy.md, "What the logs hold")."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from scheduler import keys
from scheduler.db import Database
from tests.conftest import token_of
from tests.scheduler.test_retention import _all_sent, mail_org  # noqa: F401

CANDIDATE = "Ottilie Brandywyne"
CANDIDATE_EMAIL = "ottilie.brandywyne@example.org"
EVALUATOR = "Barnabé Quillfeather"
EVALUATOR_EMAIL = "b.quillfeather@example.org"
NEEDLES = [CANDIDATE, *CANDIDATE.split(), CANDIDATE_EMAIL, EVALUATOR, EVALUATOR_EMAIL]


async def test_logs_hold_no_names_nor_addresses(
    mail_org: Any,  # noqa: F811
    clock: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="viva")
    caplog.set_level(logging.DEBUG, logger="scheduler")
    caplog.set_level(logging.DEBUG, logger="rooms")
    caplog.set_level(logging.DEBUG, logger="mailer")
    caplog.set_level(logging.INFO)  # the access log and every library at the default level
    org = mail_org
    app = org.client.app
    ev = await org.make_evaluator(name=EVALUATOR, email=EVALUATOR_EMAIL)
    cand = await org.make_candidate(name=CANDIDATE, email=CANDIDATE_EMAIL)
    token = token_of(cand["link"])
    slots = await (await org.client.get(f"/c/{token}/slots")).json()
    booked = await org.client.post(
        f"/c/{token}/booking", json={"start": slots["slots"][0]["start"]}
    )
    assert booked.status == 201
    booking_id = (await booked.json())["id"]
    await _all_sent(app)
    await org.ok(
        "POST",
        f"/bookings/{booking_id}/force-majeure",
        json={"action": "cancel", "reason": f"{CANDIDATE} ({CANDIDATE_EMAIL}) is ill."},
    )
    await _all_sent(app)
    # A database error carrying their data: SQLAlchemy quotes no parameter.
    db = Database(app[keys.SETTINGS].database.url)
    try:
        with pytest.raises(IntegrityError) as raised:
            async with db.write() as session:
                await session.execute(
                    text("INSERT INTO candidates (id, name) VALUES (:id, :name)"),
                    {"id": cand["id"].replace("-", ""), "name": CANDIDATE},
                )
        logging.getLogger("viva.test").error("refused: %s", raised.value)
    finally:
        await db.dispose()
    await org.ok("DELETE", f"/candidates/{cand['id']}", json={"mode": "erase"})
    end = datetime.fromisoformat((await org.ok("GET", f"/bookings/{booking_id}"))["end"])
    clock.set(end + timedelta(days=1))
    await org.ok("DELETE", f"/evaluators/{ev['id']}", json={"mode": "erase"})
    await app[keys.RETENTION].plan()
    clock.set(clock.now() + timedelta(days=800))
    assert await app[keys.RETENTION].run_due()

    # Viva's records and the libraries' it runs, not the test's own SMTP server (aiosmtpd's
    # "mail.log" shows the conversation it received, addresses included).
    records = [r for r in caplog.records if not r.name.startswith("mail.log")]
    logged = "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''} {r.args!s}" for r in records
    ).lower()
    assert "erased" in logged, "the erasure's own line was captured"
    assert [n for n in NEEDLES if n.lower() in logged] == []
