"""After an SMTP outage longer than the retries, the organisation resends a message.

A real aiosmtpd server, down while the invitations fail for good, then up again and slow
(its DATA reply waits for the test) so that a message is seen while it is being sent.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from scheduler import keys
from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.config import load_settings
from scheduler.orgs import create_organisation
from tests.conftest import Org, app_environ, token_of
from tests.mailer.mailer_support import SmtpServer
from tests.mailer.test_leases import SlowHandler
from tests.support.polling import eventually


async def _org(client, clock: FrozenClock, name: str) -> Org:
    async with client.app[keys.DB].write() as session:
        new = await create_organisation(
            session, name=name, contact_email="oral@cci.test", now=clock.now()
        )
    return Org(client, new.organisation.id, new.api_key)


async def test_a_message_failed_for_good_can_be_resent(
    aiohttp_client, db_url: str, tmp_path: Path, clock: FrozenClock, caplog
) -> None:
    server = SmtpServer()
    handler = SlowHandler()
    server.handler = handler  # not started: the SMTP server is down
    settings = load_settings(
        environ=app_environ(
            db_url,
            tmp_path / "data",
            VIVA_SMTP_HOST="127.0.0.1",
            VIVA_SMTP_PORT=str(server.port),
            VIVA_SMTP_SECURITY="none",
            VIVA_SMTP_MAX_ATTEMPTS="1",  # the outage outlasts the retry budget at once
        )
    )
    client = await aiohttp_client(create_app(settings, clock=clock))
    org = await _org(client, clock, "CCI")
    other = await _org(client, clock, "Elsewhere")
    await org.make_evaluator()
    cand = await org.make_candidate()
    token = token_of(cand["link"])
    with caplog.at_level(logging.ERROR, logger="viva.mailer"):
        resp = await client.post(f"/c/{token}/booking", json={"start": "2026-12-01T09:00:00+01:00"})
        assert resp.status == 201
        booking_id = (await resp.json())["id"]

        async def messages() -> list[dict]:
            return (await org.ok("GET", f"/bookings/{booking_id}"))["messages"]

        async def all_failed() -> bool:
            found = await messages()
            return len(found) == 2 and all(m["status"] == "failed" for m in found)

        await eventually(all_failed, "both invitations to fail for good")
    first, _second = await messages()
    assert first["attempts"] == 1 and "cannot connect" in first["last_error"]
    assert first["next_attempt_at"] is None
    assert len([r for r in caplog.records if "failed for good" in r.getMessage()]) == 2
    registry = client.app[keys.METRICS].registry
    assert registry.get_sample_value("viva_mail_failed_total") == 2

    path = f"/bookings/{booking_id}/messages/{first['id']}/resend"
    # Another organisation's key, an unknown message: 404, nothing queued.
    assert (await other.call("POST", path))[0] == 404
    unknown = f"/bookings/{booking_id}/messages/{uuid.uuid4()}/resend"
    assert (await org.call("POST", unknown))[0] == 404
    assert [m["status"] for m in await messages()] == ["failed", "failed"]

    server.start()
    try:
        status, body = await org.call("POST", path)
        assert status == 202, body
        assert (body["id"], body["status"], body["attempts"]) == (first["id"], "pending", 0)

        await eventually(handler.arrived.is_set, "the resent message to reach the server")
        assert (await messages())[0]["status"] == "sending"
        status, body = await org.call("POST", path)  # queued or sending: not twice
        assert status == 409, body
        assert body["detail"] == "this message is already sending; wait for its outcome"

        handler.gate.set()

        async def sent() -> bool:
            return (await messages())[0]["status"] == "sent"

        await eventually(sent, "the resent message to be sent")
    finally:
        handler.gate.set()
        server.stop()
    assert [r.message["Message-ID"] for r in server.received] == [first["message_id"]]
    assert (await messages())[1]["status"] == "failed"  # only what was resent went
    events = (await org.ok("GET", f"/bookings/{booking_id}/history"))["events"]
    assert events[-1]["action"] == "message_resent"
    assert events[-1]["reason"] == f"{first['kind']} to {first['recipient']}"
    spec = await (await client.get("/api/v1/openapi.json")).json()
    operation = spec["paths"]["/api/v1" + "/bookings/{id}/messages/{message_id}/resend"]["post"]
    assert set(operation["responses"]) >= {"202", "404", "409"}
