"""The outbox's stored e-mails are sealed: a copy of the database alone holds none of the
links they carry (docs/security.md), while the app reads and sends them as written."""

from __future__ import annotations

import email
import email.policy
import uuid

from sqlalchemy import insert

from mailer.models import outbox_messages
from mailer.store import booking_messages, get_message
from scheduler import keys
from scheduler.db import Database
from tests.conftest import token_of


async def test_a_database_copy_holds_no_link_the_app_mails(make_org, clock) -> None:  # type: ignore[no-untyped-def]
    org = await make_org()
    await org.make_evaluator(email="eve@example.org")
    cand = await org.make_candidate(email="cam@example.org")
    token = token_of(cand["link"])
    slots = (await (await org.client.get(f"/c/{token}/slots")).json())["slots"]
    resp = await org.client.post(f"/c/{token}/booking", json={"start": slots[0]["start"]})
    assert resp.status == 201
    booking_id = uuid.UUID((await resp.json())["id"])
    db = org.client.app[keys.DB]

    # What the app reads: the messages as written, the candidate's personal link in one.
    async with db.read() as session:
        stored = await booking_messages(session, booking_id)
    assert len(stored) == 2
    bodies = [email.message_from_bytes(m.raw, policy=email.policy.default) for m in stored]
    texts = [
        part.get_content()
        for message in bodies
        for part in message.walk()
        if part.get_content_type() == "text/plain"
    ]
    assert any(token in text for text in texts)

    # What a copy of the database holds: the columns as stored, read past the app's types.
    async with db.engine.connect() as conn:
        rows = (await conn.exec_driver_sql("SELECT raw, subject FROM outbox_messages")).all()
    assert len(rows) >= 2
    for raw, _subject in rows:
        assert token.encode() not in bytes(raw)
        assert b"cam@example.org" not in bytes(raw)


async def test_bodies_stored_before_sealing_are_still_read_and_empty_ones_stay_empty(
    make_org, clock
) -> None:  # type: ignore[no-untyped-def]
    org = await make_org()
    db = org.client.app[keys.DB]
    plain, empty = uuid.uuid4(), uuid.uuid4()
    body = b"Subject: before\r\n\r\nwritten before bodies were sealed\r\n"
    older = Database(db.url)  # an engine without the seal writes as an older version did
    try:
        async with older.write() as session:
            await session.execute(
                insert(outbox_messages),
                [
                    {
                        "id": row_id,
                        "organisation_id": org.id,
                        "kind": "test",
                        "recipient": "x@example.org",
                        "subject": "s",
                        "message_id": f"<{row_id}@example.org>",
                        "raw": raw,
                        "status": "sent",
                        "attempts": 1,
                        "next_attempt_at": clock.now(),
                        "created_at": clock.now(),
                    }
                    for row_id, raw in ((plain, body), (empty, b""))
                ],
            )
    finally:
        await older.dispose()
    async with db.read() as session:
        old = await get_message(session, plain)
        gone = await get_message(session, empty)
    assert old is not None and old.raw == body
    assert gone is not None and gone.raw == b""
