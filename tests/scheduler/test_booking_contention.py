"""Crowds confirming at once on PostgreSQL, through several processes: never a 500.

Three apps (as three `viva serve` processes would be) share one PostgreSQL. Ten evaluators
examine one language and their week loads differ, so transactions see them in different
orders of preference; each of three rounds sends 100 confirmations at once, a tenth on
three slots and the rest on distinct consecutive slots, which the buffer makes conflict, so
a confirmation often finds its preferred evaluator busy and has to try another. Before the
evaluator choice was deadlock-free, such a run answered many of them 500
(DeadlockDetectedError: 83 of the first 200); with the retry alone, one run needed 14
deadlock retries, which the test counts. The crowd is 100 rather than the issue's 200 so
that the test stays within CI's time on a shared 2-core machine (it is one process serving
three apps and the crowd); it still reproduces the deadlocks.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.tokens import LinkKind, LinkSigner, new_nonce
from scheduler import keys
from scheduler.app import create_app
from scheduler.availability import Availability
from scheduler.clock import FrozenClock
from scheduler.config import load_settings, secret_key
from scheduler.db import Database
from scheduler.evaluator_choice import free_evaluator, lock_evaluator
from scheduler.models import Booking, Candidate, Evaluator
from scheduler.orgs import create_organisation
from scheduler.policy import Policy
from scheduler.slots import choose_evaluator
from tests.conftest import T0, _run, _truncate, app_environ

pytestmark = pytest.mark.postgres

APPS = 3
EVALUATORS = 10
ROUNDS = 3
CROWD = 100
HOT = CROWD // 10  # aimed at three slots
PARIS = ZoneInfo("Europe/Paris")
OVERLAP = text(
    """
    SELECT count(*) FROM bookings a JOIN bookings b
      ON a.evaluator_id = b.evaluator_id AND a.id < b.id
     AND a.start_at < b.block_end AND b.start_at < a.block_end
    WHERE a.status IN ('confirmed', 'locked') AND b.status IN ('confirmed', 'locked')
    """
)
TWICE = text(
    """
    SELECT count(*) FROM (
      SELECT candidate_id FROM bookings WHERE status IN ('confirmed', 'locked')
      GROUP BY candidate_id HAVING count(*) > 1) AS twice
    """
)


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    _run(_truncate(postgres_url))
    return postgres_url


async def _seed(app_settings, db) -> list[str]:  # type: ignore[no-untyped-def]
    """Ten evaluators with different loads that week, and the crowd's candidates; returns
    the candidates' link tokens."""
    signer = LinkSigner(secret_key(app_settings))
    weekly = [
        {"day": d, "start": "09:00", "end": "17:00"} for d in ("mon", "tue", "wed", "thu", "fri")
    ]
    doc = Availability.from_document({"weekly": weekly}).to_document()
    async with db.write() as session:
        org = (
            await create_organisation(session, name="Org", contact_email="o@org.test", now=T0)
        ).organisation
        evaluators = [
            dict(
                id=uuid.uuid4(),
                organisation_id=org.id,
                name=f"Evaluator {i}",
                email=f"e{i}@org.test",
                timezone="Europe/Paris",
                languages=["en"],
                locale="fr",
                availability=doc,
                created_at=T0,
            )
            for i in range(EVALUATORS)
        ]
        await session.execute(insert(Evaluator), evaluators)
        # Loads that differ: evaluator i already has i bookings on Friday evenings of the
        # weeks the crowd books, outside everyone's hours the crowd aims at.
        rows, past = [], []
        for i, evaluator in enumerate(evaluators):
            for week in range(3):
                for k in range(i % 5):
                    start = datetime(2026, 12, 4 + 7 * week, 16, 40, tzinfo=PARIS).astimezone(
                        UTC
                    ) - timedelta(minutes=40 * k)
                    cid = uuid.uuid4()
                    past.append(_candidate(org.id, cid, "Earlier"))
                    rows.append(
                        dict(
                            id=uuid.uuid4(),
                            organisation_id=org.id,
                            candidate_id=cid,
                            evaluator_id=evaluator["id"],
                            start_at=start,
                            end_at=start + timedelta(minutes=20),
                            block_end=start + timedelta(minutes=30),
                            status="confirmed",
                            sequence=0,
                            room_nonce=new_nonce(),
                            created_at=T0,
                            updated_at=T0,
                        )
                    )
        crowd = [_candidate(org.id, uuid.uuid4(), f"Racer {n}") for n in range(ROUNDS * CROWD)]
        await session.execute(insert(Candidate), past + crowd)
        await session.execute(insert(Booking), rows)
    return [signer.make(LinkKind.CANDIDATE, c["id"], c["link_nonce"]) for c in crowd]


def _candidate(org_id: uuid.UUID, cid: uuid.UUID, name: str) -> dict[str, object]:
    return dict(
        id=cid,
        organisation_id=org_id,
        name=name,
        email=f"{cid.hex[:10]}@example.org",
        language="en",
        locale="en",
        timezone="Europe/Paris",
        book_by=None,
        link_nonce=new_nonce(),
        created_at=T0,
    )


@pytest.mark.slow
async def test_crowds_through_three_apps_get_201_or_409_never_5xx(
    aiohttp_client: Callable[..., Awaitable[TestClient]], pg_url: str, tmp_path: Path
) -> None:
    clock = FrozenClock(T0)
    clients = []
    for n in range(APPS):
        # Small pools: three apps, and other test runs, share the server's connections.
        settings = load_settings(
            environ=app_environ(pg_url, tmp_path / f"data{n}", VIVA_DATABASE_POOL_SIZE="5")
        )
        clients.append(await aiohttp_client(create_app(settings, clock=clock)))
    db = clients[0].app[keys.DB]
    tokens = await _seed(clients[0].app[keys.SETTINGS], db)

    statuses: Counter[int] = Counter()
    for r in range(ROUNDS):
        crowd = tokens[r * CROWD : (r + 1) * CROWD]
        resp = await clients[0].get(
            f"/c/{crowd[0]}/slots", params={"from": "2026-12-01", "to": "2026-12-18"}
        )
        free = [s["start"] for s in (await resp.json())["slots"]]
        hot = [free[0], free[3], free[6]]
        rest = free[7 : 7 + CROWD - HOT]
        assert len(rest) == CROWD - HOT, "enough consecutive slots for the round"
        plan = [hot[n % 3] for n in range(HOT)] + rest

        async def confirm(n: int, token: str, start: str) -> tuple[int, str]:
            resp = await clients[n % APPS].post(f"/c/{token}/booking", json={"start": start})
            return resp.status, await resp.text()

        answers = await asyncio.gather(
            *(confirm(n, t, s) for n, (t, s) in enumerate(zip(crowd, plan, strict=True)))
        )
        statuses.update(status for status, _ in answers)
        errors = [body[:300] for status, body in answers if status >= 500]
        assert not errors, (r, Counter(s for s, _ in answers), errors[:3])

    assert set(statuses) <= {201, 409}, statuses
    # Not even the retry behind it was needed: the evaluator choice cannot deadlock.
    assert [c.app[keys.CONTENTION].deadlock_retries for c in clients] == [0] * APPS
    assert statuses[201] > ROUNDS * CROWD // 2, statuses  # most consecutive slots got someone
    async with db.read() as session:
        assert await session.scalar(OVERLAP) == 0
        assert await session.scalar(TWICE) == 0
        booked = await session.scalar(
            text(
                "SELECT count(*) FROM bookings WHERE candidate_id IN (SELECT id FROM "
                "candidates WHERE name LIKE 'Racer %')"
            )
        )
    assert booked == statuses[201]


async def _equal_evaluators(db: Database, count: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """An organisation with `count` English evaluators, free on Tuesday mornings and without
    bookings, so only the draw among equals orders them: (organisation id, the ids in the
    order of preference for `_choose`'s start)."""
    weekly = [{"day": "tue", "start": "09:00", "end": "12:00"}]
    doc = Availability.from_document({"weekly": weekly}).to_document()
    async with db.write() as session:
        org = (
            await create_organisation(session, name="Org", contact_email="o@org.test", now=T0)
        ).organisation
        ids = choose_evaluator([uuid.uuid4() for _ in range(count)], {}, _START)
        await session.execute(
            insert(Evaluator),
            [
                dict(
                    id=eid,
                    organisation_id=org.id,
                    name="E",
                    email="e@org.test",
                    timezone="Europe/Paris",
                    languages=["en"],
                    locale="fr",
                    availability=doc,
                    created_at=T0,
                )
                for eid in ids
            ],
        )
    return org.id, ids


_START = datetime(2026, 12, 1, 9, 0, tzinfo=PARIS).astimezone(UTC)


async def _choose(db: Database, session: AsyncSession, org_id: uuid.UUID) -> uuid.UUID:
    """The evaluator for Tuesday 1 December 09:00 Paris (`_START`), bounded only so that a
    regression fails instead of hanging on a held lock."""
    return await asyncio.wait_for(
        free_evaluator(
            db,
            session,
            organisation_id=org_id,
            language="en",
            start=_START,
            policy=Policy(),
            now=T0,
            deadline=None,
        ),
        timeout=60,
    )


async def test_concurrent_bookings_spread_over_equally_loaded_evaluators(pg_url: str) -> None:
    """Two transactions booking one start at once take two evaluators with the same load,
    rather than the second queuing behind the first one's lock to find them busy."""
    db = Database(pg_url)
    try:
        org_id, ids = await _equal_evaluators(db, 2)
        async with db.write() as first:
            chosen = await _choose(db, first, org_id)
            assert chosen == ids[0]  # alone, the rule: fewest that week, then the draw
            async with db.write() as second:
                # Were the lock waited for, this would wait for `first`, which waits for this.
                other = await _choose(db, second, org_id)
        assert other == ids[1]
    finally:
        await db.dispose()


async def test_a_booking_goes_past_every_held_evaluator_batch_after_batch(pg_url: str) -> None:
    """The evaluators' bookings are read in growing batches, only as far as needed: with the
    first six of eight equally loaded evaluators held by other transactions, the choice goes
    through the first batches (1, then 4) to the first evaluator nobody holds, in the order
    of preference, without waiting for any held one."""
    db = Database(pg_url)
    try:
        org_id, ids = await _equal_evaluators(db, 8)
        async with db.write() as holder:
            for held in ids[:6]:
                assert await lock_evaluator(holder, held)
            async with db.write() as session:
                chosen = await _choose(db, session, org_id)
        assert chosen == ids[6]
    finally:
        await db.dispose()
