"""A booking's confirmations are written after its commit; a crash in between loses none.

The sweep finds a booking without any message and writes the very messages the request
would have written (same bytes but for the Message-ID and the random MIME boundaries).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from mailer.models import outbox_messages
from scheduler import keys
from scheduler.bookings import book
from scheduler.clock import FrozenClock
from scheduler.confirmations import GRACE, sweep
from tests.conftest import token_of

_BOUNDARY = re.compile(rb"={15}\d+==")


async def _messages(db, booking_id: uuid.UUID) -> list[tuple[str, bytes]]:  # type: ignore[no-untyped-def]
    async with db.read() as session:
        rows = (
            await session.execute(
                select(
                    outbox_messages.c.recipient, outbox_messages.c.message_id, outbox_messages.c.raw
                ).where(outbox_messages.c.booking_id == booking_id)
            )
        ).all()
    return sorted(
        (recipient, _BOUNDARY.sub(b"BOUNDARY", raw.replace(mid.encode(), b"MESSAGE-ID")))
        for recipient, mid, raw in rows
    )


async def test_a_booking_left_without_its_messages_gets_them_from_the_sweep(
    make_org, clock: FrozenClock
) -> None:
    org = await make_org()
    evaluator = await org.make_evaluator(email="eve@example.org")
    cand = await org.make_candidate(email="cam@example.org")
    slots = (await (await org.client.get(f"/c/{token_of(cand['link'])}/slots")).json())["slots"]
    resp = await org.client.post(
        f"/c/{token_of(cand['link'])}/booking", json={"start": slots[0]["start"]}
    )
    assert resp.status == 201
    booking_id = uuid.UUID((await resp.json())["id"])
    app = org.client.app
    db, notifier = app[keys.DB], app[keys.NOTIFIER]
    written = await _messages(db, booking_id)
    assert [r for r, _ in written] == ["cam@example.org", "eve@example.org"]

    # The process died between the booking's commit and its messages: none in the outbox.
    async with db.write() as session:
        await session.execute(
            delete(outbox_messages).where(outbox_messages.c.booking_id == booking_id)
        )
    # (The same state as the booking service stopped after the commit, as this shows.)
    other = await org.make_candidate()
    async with db.write() as session:
        stopped, _ = await book(
            db,
            session,
            candidate_id=uuid.UUID(other["id"]),
            start=datetime.fromisoformat(slots[3]["start"]).astimezone(UTC),
            policy=app[keys.POLICY],
            now=clock.now(),
            effects=app[keys.BOOKINGS].effects,
        )
    assert await _messages(db, stopped.id) == []
    assert evaluator["id"] == str(stopped.evaluator_id)

    assert await sweep(db, notifier, clock.now()) == 0  # the request may still be writing them
    clock.advance(GRACE + timedelta(seconds=1))
    assert await sweep(db, notifier, clock.now()) == 2
    assert await _messages(db, booking_id) == written  # the very messages it would have had
    assert len(await _messages(db, stopped.id)) == 2
    assert await sweep(db, notifier, clock.now()) == 0  # and only once
