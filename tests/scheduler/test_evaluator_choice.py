"""Who gets a booking: the booking transaction's choice against the rule written out plainly.

`free_evaluator` tries the qualified evaluators in order of preference and reads the bookings
of the first one alone before the others'; whatever the order of its reads, the evaluator it
returns must be the one the rule names: among the qualified evaluators free at that start,
the one with the fewest active bookings that ISO week (UTC), equals in the order drawn for
that start (a hash of the evaluator and the start).
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from hashlib import blake2b
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select

from rooms.tokens import new_nonce
from scheduler.availability import Availability, to_us
from scheduler.calendars import load_calendars, qualified_evaluators
from scheduler.db import Database
from scheduler.errors import SlotTaken
from scheduler.evaluator_choice import free_evaluator
from scheduler.models import ACTIVE_STATUSES, Booking, Candidate, Evaluator
from scheduler.orgs import create_organisation
from scheduler.policy import Policy
from scheduler.slots import is_free, week_bounds
from tests.conftest import T0

PARIS = ZoneInfo("Europe/Paris")
DAYS = ("mon", "tue", "wed", "thu", "fri")
# Evaluators' hours differ, so the preferred evaluator is often not free at a given start.
HOURS = (("09:00", "17:00"), ("08:00", "12:00"), ("13:00", "18:00"), ("10:00", "16:00"))


async def _seed(db: Database, rng: random.Random) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """Two languages, evaluators with different weeks, bookings on a 40-minute grid (some
    cancelled, which must not count); returns the organisation and the bookings' ids."""
    async with db.write() as session:
        org = (
            await create_organisation(session, name="Org", contact_email="o@org.test", now=T0)
        ).organisation
        evaluators = []
        for i in range(14):
            start, end = HOURS[i % len(HOURS)]
            days = rng.sample(DAYS, rng.randint(2, 5))
            weekly = [{"day": d, "start": start, "end": end} for d in days]
            evaluators.append(
                dict(
                    id=uuid.uuid4(),
                    organisation_id=org.id,
                    name=f"Evaluator {i}",
                    email=f"e{i}@org.test",
                    timezone="Europe/Paris" if i % 3 else "America/New_York",
                    languages=["en"] if i % 2 else ["en", "fr"],
                    locale="fr",
                    availability=Availability.from_document({"weekly": weekly}).to_document(),
                    created_at=T0,
                )
            )
        await session.execute(insert(Evaluator), evaluators)
        candidates, bookings = [], []
        first_day = T0.astimezone(PARIS).date()
        for evaluator in evaluators:
            for day in rng.sample(range(1, 22), 8):
                date = first_day + timedelta(days=day)
                base = datetime(date.year, date.month, date.day, 8, 0, tzinfo=PARIS)
                for k in rng.sample(range(15), rng.randint(1, 5)):
                    start = (base + timedelta(minutes=40 * k)).astimezone(UTC)
                    candidate_id = uuid.uuid4()
                    candidates.append(
                        dict(
                            id=candidate_id,
                            organisation_id=org.id,
                            name="C",
                            email="c@org.test",
                            language="en",
                            locale="fr",
                            timezone="Europe/Paris",
                            book_by=None,
                            link_nonce=new_nonce(),
                            created_at=T0,
                        )
                    )
                    bookings.append(
                        dict(
                            id=uuid.uuid4(),
                            organisation_id=org.id,
                            candidate_id=candidate_id,
                            evaluator_id=evaluator["id"],
                            start_at=start,
                            end_at=start + timedelta(minutes=20),
                            block_end=start + timedelta(minutes=30),
                            status=rng.choice(["confirmed", "confirmed", "locked", "cancelled"]),
                            sequence=0,
                            candidate_room_nonce=new_nonce(),
                            evaluator_room_nonce=new_nonce(),
                            created_at=T0,
                            updated_at=T0,
                        )
                    )
        await session.execute(insert(Candidate), candidates)
        await session.execute(insert(Booking), bookings)
    return org.id, [b["id"] for b in bookings]


async def _by_the_rule(
    db: Database,
    organisation_id: uuid.UUID,
    language: str,
    start: datetime,
    policy: Policy,
    deadline: datetime | None,
    exclude: uuid.UUID | None,
) -> uuid.UUID | None:
    day = timedelta(days=1)
    async with db.read() as session:
        calendars = await load_calendars(
            session,
            organisation_id,
            language,
            start - day,
            start + day,
            margin=timedelta(0),
            exclude=exclude,
        )
        rows = (
            await session.execute(select(Booking.evaluator_id, Booking.status, Booking.start_at))
        ).all()
    free = [c.id for c in calendars if is_free(c, policy, T0, start, deadline)]
    week_start, week_end = week_bounds(start)
    load = {
        evaluator: sum(
            1
            for eid, status, at in rows
            if eid == evaluator and status in ACTIVE_STATUSES and week_start <= at < week_end
        )
        for evaluator in free
    }
    # Equals in the order of a hash of the evaluator and the start (the draw per start).
    salt = to_us(start).to_bytes(8, "big", signed=True)
    return (
        min(free, key=lambda e: (load[e], blake2b(e.bytes + salt, digest_size=8).digest()))
        if free
        else None
    )


async def test_the_chosen_evaluator_is_the_one_the_rule_names(db: Database) -> None:
    rng = random.Random(20261125)
    organisation_id, booking_ids = await _seed(db, rng)
    policy = Policy()
    first_day = T0.astimezone(PARIS).date()
    chosen = 0
    for _ in range(60):
        date = first_day + timedelta(days=rng.randrange(1, 22))
        local = datetime(date.year, date.month, date.day, 7, 0, tzinfo=PARIS)
        start = (local + timedelta(minutes=20 * rng.randrange(36))).astimezone(UTC)
        language = rng.choice(["en", "fr"])
        deadline = rng.choice([None, None, start + timedelta(minutes=19)])
        exclude = rng.choice([None, None, rng.choice(booking_ids)])
        expected = await _by_the_rule(
            db, organisation_id, language, start, policy, deadline, exclude
        )
        async with db.read() as session:
            try:
                got: uuid.UUID | None = await free_evaluator(
                    db,
                    session,
                    organisation_id=organisation_id,
                    language=language,
                    start=start,
                    policy=policy,
                    now=T0,
                    deadline=deadline,
                    exclude=exclude,
                )
            except SlotTaken:
                got = None
        assert got == expected, (start, language, deadline, exclude)
        chosen += got is not None
    # The draw must exercise both outcomes, and a good number of real choices.
    assert 15 <= chosen < 60


async def test_qualified_evaluators_are_exactly_those_examining_the_language(
    db: Database,
) -> None:
    """The query narrows the evaluators by a LIKE on the stored JSON text; whatever that
    lets through, the answer is exactly the evaluators whose list holds the language."""
    lists = [["en"], ["en", "fr"], ["pt-br", "fr"], ["EN"], ['a"b'], ["a_b"], ["axb"], ["é"]]
    doc = Availability.from_document({"weekly": []}).to_document()
    async with db.write() as session:
        org = (
            await create_organisation(session, name="Org", contact_email="o@org.test", now=T0)
        ).organisation
        ids = [uuid.uuid4() for _ in lists]
        await session.execute(
            insert(Evaluator),
            [
                dict(
                    id=eid,
                    organisation_id=org.id,
                    name="E",
                    email="e@org.test",
                    timezone="Europe/Paris",
                    languages=languages,
                    locale="fr",
                    availability=doc,
                    created_at=T0,
                )
                for eid, languages in zip(ids, lists, strict=True)
            ],
        )
    for language in ("en", "fr", "pt-br", "EN", 'a"b', "a_b", "é", "de", "e"):
        async with db.read() as session:
            found = {eid for eid, _, _ in await qualified_evaluators(session, org.id, language)}
        expected = {eid for eid, langs in zip(ids, lists, strict=True) if language in langs}
        assert found == expected, language
