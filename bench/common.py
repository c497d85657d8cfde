"""Shared set-up for the benchmarks: a seeded database and a real `viva serve` process.

One organisation, 200 evaluators across 4 languages with weekday availability, a 60-day
horizon and 20,000 existing bookings, as the booking-core issue specifies.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
from sqlalchemy import insert

from rooms.tokens import LinkKind, LinkSigner, new_nonce
from scheduler.availability import Availability
from scheduler.db import Database
from scheduler.migrate import migrate
from scheduler.models import Booking, Candidate, Evaluator
from scheduler.orgs import create_organisation

LANGUAGES = ("en", "fr", "de", "es")
EVALUATORS = 200
BOOKINGS = 20_000
SECRET = "bench-secret-key-0123456789abcdef"
PARIS = ZoneInfo("Europe/Paris")
# Existing bookings were made a while ago: a booking made in the last two days without any
# message would be taken for one whose confirmations a crash lost (scheduler.confirmations).
EARLIER = timedelta(days=7)
PG_ADMIN = os.environ.get("VIVA_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass
class Seeded:
    url: str
    org_id: uuid.UUID
    evaluators: dict[str, list[uuid.UUID]]
    candidate_tokens: dict[str, list[str]]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {sys.version.split()[0]}"


def _fresh_sqlite(path: Path) -> str:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return f"sqlite+aiosqlite:///{path}"


async def fresh_database(backend: str, folder: Path, name: str = "viva_bench") -> str:
    """An empty database: a file in `folder`, or PostgreSQL database `name`, dropped first.

    A benchmark that may run beside another one passes its own `name`, since creating the
    database drops (WITH FORCE) whatever another run has in a database of the same name.
    """
    if backend == "sqlite":
        return _fresh_sqlite(folder / "bench.db")
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return "postgresql+asyncpg://" + PG_ADMIN.split("://", 1)[1].rsplit("/", 1)[0] + f"/{name}"


async def seed(url: str, now: datetime, candidates_per_language: int) -> Seeded:
    rng = random.Random(42)
    db = Database(url)
    await migrate(db)
    signer = LinkSigner(SECRET.encode())
    weekly = [
        {"day": d, "start": "09:00", "end": "17:00"} for d in ("mon", "tue", "wed", "thu", "fri")
    ]
    doc = Availability.from_document({"weekly": weekly}).to_document()
    evaluators: dict[str, list[uuid.UUID]] = {lang: [] for lang in LANGUAGES}
    tokens: dict[str, list[str]] = {lang: [] for lang in LANGUAGES}
    async with db.write() as session:
        org = (
            await create_organisation(
                session, name="Bench", contact_email="b@bench.example", now=now
            )
        ).organisation
        ev_rows = []
        for i in range(EVALUATORS):
            lang = LANGUAGES[i % len(LANGUAGES)]
            eid = uuid.uuid4()
            evaluators[lang].append(eid)
            ev_rows.append(
                dict(
                    id=eid,
                    organisation_id=org.id,
                    name=f"Evaluator {i}",
                    email=f"e{i}@bench.example",
                    timezone="Europe/Paris",
                    languages=[lang],
                    locale="fr",
                    availability=doc,
                    created_at=now,
                )
            )
        await session.execute(insert(Evaluator), ev_rows)
        # Existing bookings: 100 per evaluator on every other 20-minute start (so they never
        # overlap with the 10-minute buffer), over the next 60 days, each with its own candidate.
        cand_rows, booking_rows = [], []
        per_evaluator = BOOKINGS // EVALUATORS
        starts = []
        day0 = now.astimezone(PARIS).date()
        for d in range(1, 61):
            day = day0 + timedelta(days=d)
            if day.weekday() >= 5:
                continue
            base = datetime(day.year, day.month, day.day, 9, 0, tzinfo=PARIS)
            starts += [(base + timedelta(minutes=40 * k)).astimezone(UTC) for k in range(12)]
        for lang, ids in evaluators.items():
            for eid in ids:
                for start in rng.sample(starts, per_evaluator):
                    cid = uuid.uuid4()
                    cand_rows.append(
                        dict(
                            id=cid,
                            organisation_id=org.id,
                            name="Past",
                            email="p@bench.example",
                            language=lang,
                            locale="fr",
                            timezone="Europe/Paris",
                            book_by=None,
                            link_nonce=new_nonce(),
                            created_at=now,
                        )
                    )
                    booking_rows.append(
                        dict(
                            id=uuid.uuid4(),
                            organisation_id=org.id,
                            candidate_id=cid,
                            evaluator_id=eid,
                            start_at=start,
                            end_at=start + timedelta(minutes=20),
                            block_end=start + timedelta(minutes=30),
                            status="confirmed",
                            sequence=0,
                            candidate_room_nonce=new_nonce(),
                            evaluator_room_nonce=new_nonce(),
                            created_at=now - EARLIER,
                            updated_at=now - EARLIER,
                        )
                    )
        for chunk in range(0, len(cand_rows), 2000):
            await session.execute(insert(Candidate), cand_rows[chunk : chunk + 2000])
            await session.execute(insert(Booking), booking_rows[chunk : chunk + 2000])
        new_cands = []
        for lang in LANGUAGES:
            for i in range(candidates_per_language):
                cid, nonce = uuid.uuid4(), new_nonce()
                new_cands.append(
                    dict(
                        id=cid,
                        organisation_id=org.id,
                        name=f"New {lang} {i}",
                        email=f"n{i}@bench.example",
                        language=lang,
                        locale="fr",
                        timezone="Europe/Paris",
                        book_by=None,
                        link_nonce=nonce,
                        created_at=now,
                    )
                )
                tokens[lang].append(signer.make(LinkKind.CANDIDATE, cid, nonce))
        for chunk in range(0, len(new_cands), 2000):
            await session.execute(insert(Candidate), new_cands[chunk : chunk + 2000])
    if not db.sqlite:
        async with db.engine.connect() as conn:
            await conn.exec_driver_sql("ANALYZE")
    await db.dispose()
    return Seeded(url, org.id, evaluators, tokens)


async def until_up(
    http: aiohttp.ClientSession, base: str, proc: subprocess.Popen[bytes], log: Path
) -> None:
    """Wait for a `viva serve` to answer /healthz (it migrates before it listens)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            async with http.get(base + "/healthz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(log.read_text()[-4000:] or "server died")  # noqa: ASYNC240 (it died)
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{base} did not answer /healthz")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`viva serve` in its own process, as deployed; the benchmark client is another."""

    def __init__(
        self, url: str, data_dir: Path, profile: Path | None = None, pool_size: int = 20
    ) -> None:
        """`profile`: run the server under cProfile (bench.profiled), between `profiling()`'s
        start and stop, its stats written there. `pool_size`: its PostgreSQL connections."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "VIVA_DATABASE_URL": url,
            "VIVA_SERVER_PORT": str(self.port),
            "VIVA_SERVER_BASE_URL": self.base,
            "VIVA_SERVER_SECRET_KEY": SECRET,
            "VIVA_SERVER_DATA_DIR": str(data_dir),
            "VIVA_SERVER_LOG_LEVEL": "WARNING",
            "VIVA_DATABASE_POOL_SIZE": str(pool_size),
        }
        # A file, not a pipe: nobody reads the pipe while the benchmark runs, and a full pipe
        # would block the server on its next log line.
        self.log = data_dir.parent / f"server-{self.port}.log"
        self._log_file = open(self.log, "wb")  # closed in stop()
        command = ["-m", "scheduler.cli", "serve"]
        if profile is not None:
            command = ["-m", "bench.profiled", str(profile)]
        self.proc = subprocess.Popen(
            [sys.executable, *command],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
        )

    async def wait(self) -> None:
        async with aiohttp.ClientSession() as http:
            await until_up(http, self.base, self.proc, self.log)

    def profiling(self, on: bool) -> None:
        """Start (or stop and write) the profile of a server started with `profile`."""
        self.proc.send_signal(signal.SIGUSR1 if on else signal.SIGUSR2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log_file.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join(
        [
            line(headers),
            "|" + "|".join("-" * (w + 2) for w in widths) + "|",
            *(line(r) for r in rows),
        ]
    )


__all__ = ["Seeded", "Server", "fresh_database", "machine", "pct", "seed", "statistics", "table"]
