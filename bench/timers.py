"""Timers at scale: 100,000 future bookings with their 300,000 timer rows.

Measured in a fresh process per case, on a seeded database:
- start-up: from `TimerService.start()` until it returns, i.e. until the scheduler holds a
  job for every pending timer it is meant to hold (those due within the look-ahead window;
  with `--all`-style look-ahead, all 300,000);
- resident memory of that process once started (and the growth caused by the start);
- lag between a timer's due time and the commit of its action, for 1,000 reminders falling
  due within one minute (each renders and enqueues two e-mails in its transaction).

Usage: .venv/bin/python bench/timers.py [--backends sqlite,postgresql] [--bookings 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert

from bench.common import SECRET, fresh_database, machine, pct, table
from mailer.settings import SmtpSettings
from rooms.tokens import LinkSigner, new_nonce
from scheduler.clock import SystemClock
from scheduler.config import ReminderSettings
from scheduler.db import Database
from scheduler.i18n import Catalogs, create_env
from scheduler.links import Links
from scheduler.migrate import migrate
from scheduler.models import Booking, Candidate, Evaluator, Organisation, Timer
from scheduler.notify import Notifier
from scheduler.policy import Policy
from scheduler.timers import Fired, TimerService, plan

EVALUATORS = 2000  # the first 1,000 examine the soon bookings of case 0, the next of case 1
SOON = 1000  # reminders falling due within one minute
CHUNK = 5000


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _people(org_id: uuid.UUID, n: int, now: datetime, prefix: str) -> list[dict[str, object]]:
    return [
        dict(
            id=uuid.uuid4(),
            organisation_id=org_id,
            name=f"Candidate {prefix}{i}",
            email=f"{prefix}{i}@bench.example",
            language="en",
            locale="fr" if i % 2 else "en",
            timezone="Europe/Paris",
            book_by=None,
            link_nonce=new_nonce(),
            created_at=now,
        )
        for i in range(n)
    ]


def _booking(
    org_id: uuid.UUID, cid: object, eid: uuid.UUID, start: datetime, status: str, now: datetime
) -> dict[str, object]:
    return dict(
        id=uuid.uuid4(),
        organisation_id=org_id,
        candidate_id=cid,
        evaluator_id=eid,
        start_at=start,
        end_at=start + timedelta(minutes=20),
        block_end=start + timedelta(minutes=30),
        status=status,
        sequence=0,
        candidate_room_nonce=new_nonce(),
        evaluator_room_nonce=new_nonce(),
        created_at=now,
        updated_at=now,
    )


async def _insert(db: Database, model: type, rows: list[dict[str, object]]) -> None:
    for chunk in range(0, len(rows), CHUNK):
        async with db.write() as session:
            await session.execute(insert(model), rows[chunk : chunk + CHUNK])


async def seed(url: str, bookings: int) -> float:
    """100,000 confirmed bookings 2 to 61 days ahead, each with its 3 timer rows."""
    t = time.perf_counter()
    rng = random.Random(7)
    now = SystemClock().now()
    db = Database(url)
    await migrate(db)
    org_id = uuid.uuid4()
    async with db.write() as session:
        session.add(
            Organisation(
                id=org_id,
                name="Bench",
                contact_email="b@bench.example",
                contact_phone=None,
                created_at=now,
            )
        )
    evaluators = [
        dict(
            id=uuid.uuid4(),
            organisation_id=org_id,
            name=f"Evaluator {i}",
            email=f"e{i}@bench.example",
            timezone="Europe/Paris",
            languages=["en"],
            locale="fr",
            availability={"weekly": [], "overrides": []},
            created_at=now,
        )
        for i in range(EVALUATORS)
    ]
    await _insert(db, Evaluator, evaluators)
    # From 3 days ahead, so that no 48 h reminder is already due at start-up.
    day0 = (now + timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    grid = [day0 + timedelta(minutes=40 * k) for k in range(58 * 36)]  # 40-min steps, 58 days
    candidates = _people(org_id, bookings, now, "c")
    rows: list[dict[str, object]] = []
    per_evaluator = -(-bookings // EVALUATORS)
    for ev in evaluators:
        for start in rng.sample(grid, per_evaluator):  # distinct, so never overlapping
            if len(rows) < bookings:
                cid = candidates[len(rows)]["id"]
                rows.append(_booking(org_id, cid, ev["id"], start, "confirmed", now))  # type: ignore[arg-type]
    timers = [
        dict(
            id=uuid.uuid4(),
            booking_id=b["id"],
            organisation_id=org_id,
            kind=kind,
            due_at=due,
            done_at=None,
            outcome=None,
            created_at=now,
        )
        for b in rows
        for kind, due in plan(b["start_at"], Policy(), ReminderSettings())  # type: ignore[arg-type]
    ]
    await _insert(db, Candidate, candidates)
    await _insert(db, Booking, rows)
    await _insert(db, Timer, timers)
    if not db.sqlite:
        # VACUUM as well: otherwise autovacuum visits the 400,000 new rows during a measurement.
        async with db.engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.exec_driver_sql("VACUUM ANALYZE")
    await db.dispose()
    return time.perf_counter() - t


async def _soon(db: Database, lead: timedelta, case: int) -> None:
    """1,000 bookings about an hour away whose 1 h reminder falls due within one minute,
    `lead` from now (already locked, so that the reminder is their only pending timer)."""
    now = SystemClock().now()
    async with db.read() as session:
        org_id = (await session.execute(Organisation.__table__.select().limit(1))).first().id  # type: ignore[union-attr]
        evaluator_ids = [
            row.id
            for row in await session.execute(
                Evaluator.__table__.select()
                .order_by(Evaluator.__table__.c.email)
                .offset(case * SOON)
                .limit(SOON)
            )
        ]
    candidates = _people(org_id, SOON, now, f"soon{case}-")
    rng = random.Random(11)
    rows, timers = [], []
    for i in range(SOON):
        due = now + lead + timedelta(seconds=rng.uniform(0, 60))
        start = due + timedelta(hours=1)
        b = _booking(org_id, candidates[i]["id"], evaluator_ids[i], start, "locked", now)
        rows.append(b)
        timers.append(
            dict(
                id=uuid.uuid4(),
                booking_id=b["id"],
                organisation_id=org_id,
                kind="reminder_1h",
                due_at=due,
                done_at=None,
                outcome=None,
                created_at=now,
            )
        )
    await _insert(db, Candidate, candidates)
    await _insert(db, Booking, rows)
    await _insert(db, Timer, timers)


async def measure(url: str, lookahead_minutes: int, case: int) -> dict[str, object]:
    """One case, in its own process: start-up, memory, and the lag of 1,000 due timers."""
    db = Database(url)
    lead = timedelta(seconds=60)  # the soon timers start falling due after the start-up
    await _soon(db, lead, case)
    catalogs = Catalogs.load()
    links = Links(LinkSigner(SECRET.encode()), "http://viva.bench")
    policy = Policy()
    notifier = Notifier(create_env(), catalogs, links, policy, SmtpSettings())
    lags: list[float] = []
    clock = SystemClock()

    def on_fired(fired: list[Fired]) -> None:
        committed = clock.now()
        lags.extend((committed - f.due_at).total_seconds() for f in fired if f.kind != "lock")

    service = TimerService(
        db,
        clock=clock,
        policy=policy,
        reminders=ReminderSettings(),
        notifier=notifier,
        on_fired=on_fired,
        lookahead=timedelta(minutes=lookahead_minutes),
    )
    rss_before = _rss_kb()
    t = time.perf_counter()
    await service.start()
    startup = time.perf_counter() - t
    rss_after = _rss_kb()
    held = len(service.held)
    async with asyncio.timeout(600):
        while len(lags) < SOON:  # noqa: ASYNC110 - filled by the service's callback
            await asyncio.sleep(0.2)
    await service.stop()
    await db.dispose()
    return {
        "startup": startup,
        "held": held,
        "rss_mb": rss_after / 1024,
        "rss_growth_mb": (rss_after - rss_before) / 1024,
        "p50": pct(lags, 50),
        "p99": pct(lags, 99),
        "max": max(lags),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--bookings", type=int, default=100_000)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--lookahead", type=int, default=10, help=argparse.SUPPRESS)
    parser.add_argument("--case", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(await measure(args.measure, args.lookahead, args.case)))
        return
    print(f"# timers: {args.bookings:,} future bookings ({3 * args.bookings:,} timer rows)")
    print(f"# machine: {machine()}; {datetime.now(UTC):%Y-%m-%d}")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for backend in args.backends.split(","):
            url = await fresh_database(backend, Path(folder))
            seconds = await seed(url, args.bookings)
            print(f"# {backend}: seeded in {seconds:.0f} s", file=sys.stderr)
            # The default 10-minute window, then every row as a job (61 days).
            cases = (("10 min window", 10), ("all rows as jobs", 61 * 24 * 60))
            for case, (label, minutes) in enumerate(cases):
                command = [sys.executable, __file__, "--measure", url]
                command += ["--lookahead", str(minutes), "--case", str(case)]
                proc = await asyncio.create_subprocess_exec(
                    *command, stdout=asyncio.subprocess.PIPE
                )
                stdout, _ = await proc.communicate()
                if proc.returncode != 0:
                    raise RuntimeError(f"{label} on {backend} failed")
                r = json.loads(stdout.decode().strip().splitlines()[-1])
                results.append(
                    [
                        backend,
                        label,
                        f"{r['held']:,}",
                        f"{r['startup']:.2f}",
                        f"{r['rss_mb']:.0f} (+{r['rss_growth_mb']:.0f})",
                        f"{r['p50'] * 1000:.0f}",
                        f"{r['p99'] * 1000:.0f}",
                        f"{r['max'] * 1000:.0f}",
                    ]
                )
    print(
        table(
            [
                "backend",
                "case",
                "jobs held",
                "start-up s",
                "RSS MB (growth at start)",
                "lag p50 ms",
                "lag p99 ms",
                "lag max ms",
            ],
            results,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
