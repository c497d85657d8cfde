"""A booking's confirmations are written after its commit; a crash in between loses none.

The sweep finds a booking without its confirmations and writes the very messages the request
would have written (same bytes but for the Message-ID and the random MIME boundaries).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select

from mailer.models import outbox_messages
from scheduler import keys
from scheduler.bookings import book
from scheduler.clock import FrozenClock
from scheduler.confirmations import GRACE, sweep, write_confirmations
from scheduler.notify import Notifier
from tests.conftest import token_of
from tests.support.locks import waiting_on_a_lock
from tests.support.polling import eventually

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


async def _booked_without_confirmations(org, clock: FrozenClock):  # type: ignore[no-untyped-def]
    """A booking as the service leaves it when the process dies right after its commit."""
    await org.make_evaluator(email="eve@example.org")
    cand = await org.make_candidate(email="cam@example.org")
    slots = (await (await org.client.get(f"/c/{token_of(cand['link'])}/slots")).json())["slots"]
    app = org.client.app
    db = app[keys.DB]
    async with db.write() as session:
        booking, candidate = await book(
            db,
            session,
            candidate_id=uuid.UUID(cand["id"]),
            start=datetime.fromisoformat(slots[0]["start"]).astimezone(UTC),
            policy=app[keys.POLICY],
            now=clock.now(),
            effects=app[keys.BOOKINGS].effects,
        )
    return booking, candidate


async def test_two_writers_of_one_bookings_confirmations_write_them_once(
    make_org, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request and a sweep (or the sweeps of two processes restarted together) at once:
    the second to get the booking's lock must see the first's messages and write none."""
    org = await make_org()
    booking, candidate = await _booked_without_confirmations(org, clock)
    app = org.client.app
    db, notifier = app[keys.DB], app[keys.NOTIFIER]
    compose = Notifier.confirmations
    composing = asyncio.Event()
    release = asyncio.Event()

    async def held(self: Notifier, *args: object, **kwargs: object) -> object:
        if not composing.is_set():  # the first writer holds the booking's row meanwhile
            composing.set()
            await asyncio.wait_for(release.wait(), 20)
        return await compose(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Notifier, "confirmations", held)
    first = asyncio.ensure_future(
        write_confirmations(db, notifier, booking, candidate, clock.now())
    )
    await composing.wait()
    second = asyncio.ensure_future(
        write_confirmations(db, notifier, booking, candidate, clock.now())
    )
    if not db.sqlite:  # (SQLite's one write lock puts them one after the other anyway)
        await eventually(
            lambda: waiting_on_a_lock(db), "the second writer waiting for the booking's row"
        )
    release.set()
    results = await asyncio.gather(first, second)
    assert sorted(results) == [False, True]
    assert len(await _messages(db, booking.id)) == 2


async def test_a_booking_with_another_message_but_no_confirmations_gets_them(
    make_org, clock: FrozenClock
) -> None:
    """The process died after the commit, and the candidate's links were re-issued in that
    minute: the new-links message is in the outbox, the confirmations still are not."""
    org = await make_org()
    booking, _ = await _booked_without_confirmations(org, clock)
    await org.ok("POST", f"/candidates/{booking.candidate_id}/link")
    db = org.client.app[keys.DB]
    assert len(await _messages(db, booking.id)) == 1  # the new links, about this booking
    clock.advance(GRACE + timedelta(seconds=1))
    assert await sweep(db, org.client.app[keys.NOTIFIER], clock.now()) == 1
    assert len(await _messages(db, booking.id)) == 3
