"""1,000 candidates confirming at once over HTTP, beside the raw one-row-insert transaction rate.

Usage: .venv/bin/python bench/booking.py [--backends sqlite,postgresql] [--candidates 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import LANGUAGES, Server, fresh_database, machine, seed, table

CONCURRENCY = 100  # open connections from the crowd of candidates


async def raw_insert_rate(url: str, n: int) -> float:
    """Transactions per second, each inserting one row, with the bare driver."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.split(":///", 1)[1], isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE IF NOT EXISTS bench_raw (id TEXT PRIMARY KEY, at TEXT)")
        t = time.perf_counter()
        for _ in range(n):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO bench_raw VALUES (?, ?)",
                         (uuid.uuid4().hex, datetime.now(UTC).isoformat()))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - t
        conn.close()
        return n / elapsed
    import asyncpg

    pool = await asyncpg.create_pool(url.replace("postgresql+asyncpg", "postgresql"),
                                     min_size=20, max_size=20)
    await pool.execute("CREATE TABLE IF NOT EXISTS bench_raw (id uuid PRIMARY KEY, at timestamptz)")

    async def one() -> None:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO bench_raw VALUES ($1, $2)", uuid.uuid4(),
                               datetime.now(UTC))

    t = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    elapsed = time.perf_counter() - t
    await pool.close()
    return n / elapsed


async def run(backend: str, candidates: int, folder: Path) -> list[str]:
    now = datetime.now(UTC)
    url = await fresh_database(backend, folder)
    per_language = candidates // len(LANGUAGES)
    seeded = await seed(url, now, candidates_per_language=per_language)
    server = Server(url, folder / f"data-{backend}")
    try:
        await server.wait()
        start_day = (now + timedelta(days=2)).date()
        params = {"from": start_day.isoformat(),
                  "to": (start_day + timedelta(days=40)).isoformat()}
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector) as http:
            plan = []
            for lang in LANGUAGES:
                tokens = seeded.candidate_tokens[lang]
                async with http.get(f"{server.base}/c/{tokens[0]}/slots", params=params) as r:
                    slots = (await r.json())["slots"]
                assert len(slots) >= len(tokens), "enough distinct slots for the crowd"
                plan += [(tok, slot["start"]) for tok, slot in zip(tokens, slots, strict=False)]

            async def confirm(token: str, start: str) -> int:
                async with http.post(f"{server.base}/c/{token}/booking",
                                     json={"start": start}) as resp:
                    await resp.read()
                    return resp.status

            t = time.perf_counter()
            statuses = await asyncio.gather(*(confirm(tok, st) for tok, st in plan))
            elapsed = time.perf_counter() - t
    finally:
        server.stop()
    counts = Counter(statuses)
    rate = counts[201] / elapsed
    raw = await raw_insert_rate(url, 1000)
    return [backend, str(len(plan)), str(counts[201]), f"{elapsed:.2f}", f"{rate:.0f}",
            f"{raw:.0f}", f"{100 * rate / raw:.0f} %"]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--candidates", type=int, default=1000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            rows.append(await run(backend, args.candidates, Path(tmp)))
    print(f"# booking: {args.candidates} candidates confirming at once, {CONCURRENCY} connections")
    print(f"# machine: {machine()}; {datetime.now(UTC):%Y-%m-%d}")
    print(table(["backend", "confirmations", "booked (201)", "seconds", "bookings/s",
                 "raw insert tx/s", "ratio"], rows))


if __name__ == "__main__":
    asyncio.run(main())
