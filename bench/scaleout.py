"""Several `viva serve` processes on one PostgreSQL, under bursts of confirmations and kill -9.

The run that decides whether Viva can be scaled out: N processes share one database, crowds
of candidates confirm at once (half of each burst aimed at three slots, the rest at distinct
consecutive slots, which the buffer makes conflict), and in some bursts one process is killed
with SIGKILL mid-burst and started again. Afterwards the database, a real SMTP sink (aiosmtpd)
and the timers are checked:

- every answer is 201 or 409 (a request cut by the kill is counted apart, never as a 5xx);
- no evaluator is booked twice (checked in SQL) and no candidate holds two bookings;
- every booking's two confirmations reach the sink, duplicates counted (at most the ones a
  crash interrupted on the wire);
- every lock timer ran exactly once: after the bursts the processes restart with a lock window
  wider than the horizon and every pending lock row is made due at once (the rows are the
  truth, so this is its moment arriving); one process is killed while they run; each booking
  must end locked with exactly one "locked" event in its history.

Usage: .venv/bin/python bench/scaleout.py [--processes 3] [--bursts 5] [--size 300]
       [--kill-bursts 2,4] [--evaluators 10]
Exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiosmtpd.controller import Controller
from sqlalchemy import insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import SECRET, free_port, fresh_database, machine, table, until_up
from rooms.tokens import LinkKind, LinkSigner, new_nonce
from scheduler.availability import Availability
from scheduler.db import Database
from scheduler.migrate import migrate
from scheduler.models import Candidate, Evaluator
from scheduler.orgs import create_organisation

HOT_SLOTS = 3


class Sink:
    """An SMTP server that counts what it receives by Message-ID."""

    def __init__(self) -> None:
        self.received: Counter[str] = Counter()
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        content = envelope.original_content or b""  # type: ignore[attr-defined]
        for line in content.split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                self.received[line.split(b":", 1)[1].strip().decode()] += 1
                break
        return "250 OK"

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


class Process:
    """One `viva serve`, started again on the same port after a kill."""

    def __init__(self, url: str, folder: Path, sink_port: int, index: int) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = folder / f"server-{index}.log"
        self.env = {
            **os.environ,
            "VIVA_DATABASE_URL": url,
            # Each process may open twice its pool (overflow): 3 x 2 x 10 stays under
            # PostgreSQL's default max_connections of 100, as a deployment must.
            "VIVA_DATABASE_POOL_SIZE": "10",
            "VIVA_SERVER_PORT": str(self.port),
            "VIVA_SERVER_BASE_URL": self.base,
            "VIVA_SERVER_SECRET_KEY": SECRET,
            "VIVA_SERVER_DATA_DIR": str(folder / f"data-{index}"),
            "VIVA_SERVER_LOG_LEVEL": "WARNING",
            "VIVA_SMTP_HOST": "127.0.0.1",
            "VIVA_SMTP_PORT": str(sink_port),
            "VIVA_SMTP_SECURITY": "none",
            "VIVA_SMTP_POLL_INTERVAL_SECONDS": "1",
            "VIVA_POLICY_MIN_NOTICE_HOURS": "0",
            "VIVA_POLICY_MAX_INTERVIEWS_PER_EVALUATOR_PER_DAY": "40",
            "VIVA_REMINDERS_SWEEP_SECONDS": "2",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scheduler.cli", "serve"],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    async def ready(self, http: aiohttp.ClientSession) -> None:
        assert self.proc is not None
        await until_up(http, self.base, self.proc, self.log)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@dataclass
class Burst:
    number: int
    killed: bool
    statuses: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


async def seed(url: str, now: datetime, evaluators: int, candidates: int) -> list[str]:
    """One organisation, one exam language, evaluators of unequal week loads; candidate links."""
    db = Database(url)
    await migrate(db)
    signer = LinkSigner(SECRET.encode())
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    doc = Availability.from_document(
        {"weekly": [{"day": d, "start": "07:00", "end": "21:00"} for d in days]}
    ).to_document()
    tokens: list[str] = []
    async with db.write() as session:
        org = (
            await create_organisation(
                session, name="Scale-out", contact_email="org@scale.example", now=now
            )
        ).organisation
        await session.execute(
            insert(Evaluator),
            [
                dict(
                    id=uuid.uuid4(),
                    organisation_id=org.id,
                    name=f"Evaluator {i}",
                    email=f"e{i}@scale.example",
                    timezone="Europe/Paris",
                    languages=["en"],
                    locale="en",
                    availability=doc,
                    created_at=now,
                )
                for i in range(evaluators)
            ],
        )
        rows = []
        for i in range(candidates):
            cid, nonce = uuid.uuid4(), new_nonce()
            rows.append(
                dict(
                    id=cid,
                    organisation_id=org.id,
                    name=f"Candidate {i}",
                    email=f"c{i}@scale.example",
                    language="en",
                    locale="en",
                    timezone="Europe/Paris",
                    book_by=None,
                    link_nonce=nonce,
                    created_at=now,
                )
            )
            tokens.append(signer.make(LinkKind.CANDIDATE, cid, nonce))
        for chunk in range(0, len(rows), 2000):
            await session.execute(insert(Candidate), rows[chunk : chunk + 2000])
    await db.dispose()
    return tokens


async def burst(
    http: aiohttp.ClientSession,
    processes: list[Process],
    tokens: list[str],
    number: int,
    kill: bool,
    rng: random.Random,
) -> Burst:
    result = Burst(number, kill)
    today = datetime.now(UTC).date()
    window = {"from": today.isoformat(), "to": (today + timedelta(days=59)).isoformat()}
    async with http.get(f"{processes[0].base}/c/{tokens[0]}/slots", params=window) as resp:
        slots = [s["start"] for s in (await resp.json())["slots"]]
    half = len(tokens) // 2
    if len(slots) < HOT_SLOTS + len(tokens) - half:
        raise RuntimeError(f"only {len(slots)} free slots left for a burst of {len(tokens)}")
    hot = rng.sample(slots[: 4 * HOT_SLOTS], HOT_SLOTS)
    rest = [s for s in slots if s not in hot]
    start = rng.randrange(0, max(1, len(rest) - (len(tokens) - half)))
    plan = [hot[i % HOT_SLOTS] for i in range(half)] + rest[start : start + len(tokens) - half]
    rng.shuffle(plan)

    async def confirm(i: int, token: str, slot: str) -> None:
        process = processes[i % len(processes)]
        try:
            async with http.post(f"{process.base}/c/{token}/booking", json={"start": slot}) as resp:
                await resp.read()
                result.statuses[str(resp.status)] += 1
        except (TimeoutError, aiohttp.ClientError):
            result.statuses["cut by kill" if kill else "connection error"] += 1

    async def killer() -> None:
        await asyncio.sleep(rng.uniform(0.05, 0.4))
        processes[number % len(processes)].kill()

    began = time.perf_counter()
    jobs = [confirm(i, tok, slot) for i, (tok, slot) in enumerate(zip(tokens, plan, strict=True))]
    await asyncio.gather(*jobs, *([killer()] if kill else []))
    result.seconds = time.perf_counter() - began
    if kill:
        victim = processes[number % len(processes)]
        victim.start()
        await victim.ready(http)
    return result


async def locks_now(db: Database, http: aiohttp.ClientSession, processes: list[Process]) -> int:
    """Every lock comes due at once; one process dies while the timers run them."""
    for p in processes:
        p.stop()
        p.env["VIVA_POLICY_CHANGE_LOCK_HOURS"] = str(24 * 90)
        p.start()
    for p in processes:
        await p.ready(http)
    pending = "kind = 'lock' AND done_at IS NULL"
    async with db.engine.begin() as conn:
        locks = (await conn.execute(text(f"SELECT count(*) FROM timers WHERE {pending}"))).one()[0]
        await conn.execute(text(f"UPDATE timers SET due_at = now() WHERE {pending}"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # kill once the first locks have run
        async with db.engine.connect() as conn:
            left = (await conn.execute(text(f"SELECT count(*) FROM timers WHERE {pending}"))).one()
        if left[0] < locks:
            break
        await asyncio.sleep(0.02)
    processes[0].kill()
    processes[0].start()
    await processes[0].ready(http)
    return int(locks)


async def settle(db: Database, seconds: float) -> tuple[int, int]:
    """Wait until no message is pending and every due timer has run; (unsent, timers due)."""
    deadline = time.monotonic() + seconds
    while True:
        async with db.engine.connect() as conn:
            unsent = (
                await conn.execute(
                    text("SELECT count(*) FROM outbox_messages WHERE status <> 'sent'")
                )
            ).scalar_one()
            due = (
                await conn.execute(
                    text("SELECT count(*) FROM timers WHERE done_at IS NULL AND due_at <= now()")
                )
            ).scalar_one()
        if (unsent == 0 and due == 0) or time.monotonic() > deadline:
            return int(unsent), int(due)
        await asyncio.sleep(1)


async def check(db: Database, sink: Sink) -> dict[str, int]:
    async with db.engine.connect() as conn:

        async def one(sql: str) -> int:
            return int((await conn.execute(text(sql))).scalar_one())

        figures = {
            "bookings": await one("SELECT count(*) FROM bookings"),
            "evaluator overlaps": await one(
                "SELECT count(*) FROM bookings a JOIN bookings b ON a.evaluator_id = b.evaluator_id"
                " AND a.id < b.id AND a.start_at < b.block_end AND b.start_at < a.block_end"
                " WHERE a.status <> 'cancelled' AND b.status <> 'cancelled'"
            ),
            "candidates with two bookings": await one(
                "SELECT count(*) FROM (SELECT candidate_id FROM bookings"
                " WHERE status <> 'cancelled' GROUP BY candidate_id HAVING count(*) > 1) t"
            ),
            "bookings without two confirmations": await one(
                "SELECT count(*) FROM bookings b WHERE (SELECT count(*) FROM outbox_messages m"
                " WHERE m.booking_id = b.id AND m.kind LIKE 'booking_confirmed%') <> 2"
            ),
            "messages failed": await one(
                "SELECT count(*) FROM outbox_messages WHERE status = 'failed'"
            ),
            "bookings not locked": await one(
                "SELECT count(*) FROM bookings WHERE status <> 'locked'"
            ),
            "bookings without exactly one lock": await one(
                "SELECT count(*) FROM bookings b WHERE (SELECT count(*) FROM booking_events e"
                " WHERE e.booking_id = b.id AND e.action = 'locked') <> 1"
                " AND EXISTS (SELECT 1 FROM timers t WHERE t.booking_id = b.id AND t.kind = 'lock')"
            ),
        }
        sent = [
            row[0]
            for row in await conn.execute(
                text("SELECT message_id FROM outbox_messages WHERE status = 'sent'")
            )
        ]
    figures["messages sent"] = len(sent)
    figures["sent but never received"] = sum(1 for m in sent if sink.received[m] == 0)
    figures["duplicate deliveries"] = sum(n - 1 for n in sink.received.values() if n > 1)
    return figures


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--bursts", type=int, default=5)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--kill-bursts", default="2,4")
    parser.add_argument("--evaluators", type=int, default=10)
    args = parser.parse_args()
    kill_bursts = {int(b) for b in args.kill_bursts.split(",") if b}
    rng = random.Random(7)
    now = datetime.now(UTC)
    sink = Sink()
    sink.start()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = await fresh_database("postgresql", folder, name="viva_scaleout")
        tokens = await seed(url, now, args.evaluators, args.bursts * args.size)
        processes = [Process(url, folder, sink.port, i) for i in range(args.processes)]
        bursts: list[Burst] = []
        db = Database(url)
        try:
            for p in processes:
                p.start()
            timeout = aiohttp.ClientTimeout(total=120)
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
                for p in processes:
                    await p.ready(http)
                for b in range(1, args.bursts + 1):
                    crowd = tokens[(b - 1) * args.size : b * args.size]
                    bursts.append(await burst(http, processes, crowd, b, b in kill_bursts, rng))
                locks = await locks_now(db, http, processes)
            unsent, due = await settle(db, 180)
            figures = await check(db, sink)
        finally:
            for p in processes:
                p.stop()
            await db.dispose()
            sink.stop()
            logs = "".join(p.log.read_text(errors="replace") for p in processes)
            if "Traceback" in logs:  # kept for whoever reads the verdict
                kept = Path(tempfile.gettempdir(), "viva-scaleout-servers.log")
                kept.write_text(logs)  # noqa: ASYNC240 (the run is over)
    rows = [
        [
            str(b.number),
            "yes" if b.killed else "no",
            str(sum(b.statuses.values())),
            str(b.statuses["201"]),
            str(b.statuses["409"]),
            str(sum(n for s, n in b.statuses.items() if s.startswith("5"))),
            str(sum(n for s, n in b.statuses.items() if not s.isdigit())),
            ", ".join(
                f"{s}×{n}"
                for s, n in sorted(b.statuses.items())
                if s not in ("201", "409") and s.isdigit() and not s.startswith("5")
            )
            or "-",
            f"{b.seconds:.1f}",
        ]
        for b in bursts
    ]
    print(
        f"# scale-out: {args.processes} processes on one PostgreSQL, {args.bursts} bursts of "
        f"{args.size}, kill -9 in bursts {sorted(kill_bursts) or 'none'}"
    )
    print(f"# machine: {machine()}; {datetime.now(UTC):%Y-%m-%d}")
    print(table(["burst", "kill -9", "requests", "201", "409", "5xx", "cut", "other", "s"], rows))
    print()
    figures["lock timers run after the bursts"] = locks
    figures["messages still unsent after settling"] = unsent
    figures["timers due and not run after settling"] = due
    figures["tracebacks in server logs"] = logs.count("Traceback")
    print(table(["check", "value"], [[k, str(v)] for k, v in figures.items()]))
    crashes = sum(p.kills for p in processes)
    failed = [
        sum(int(r[5]) for r in rows) > 0,
        figures["evaluator overlaps"] > 0,
        figures["candidates with two bookings"] > 0,
        figures["bookings without two confirmations"] > 0,
        figures["messages failed"] > 0,
        figures["sent but never received"] > 0,
        # The outbox's documented bound: the last two accepted messages per crash.
        figures["duplicate deliveries"] > 2 * crashes,
        figures["bookings not locked"] > 0,
        figures["bookings without exactly one lock"] > 0,
        unsent > 0,
        due > 0,
    ]
    print("\nverdict:", "FAIL" if any(failed) else "PASS")
    return 1 if any(failed) else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
