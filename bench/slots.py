"""GET /c/{token}/slots for a 31-day range over HTTP, beside one raw SQL fetch of the same rows.

Usage: .venv/bin/python bench/slots.py [--backends sqlite,postgresql] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import LANGUAGES, Server, fresh_database, machine, pct, seed, table

RAW_SQL = (
    "SELECT evaluator_id, start_at, end_at FROM bookings WHERE evaluator_id IN ({ids}) "
    "AND status IN ('confirmed', 'locked') AND start_at < {p2} AND end_at > {p1} "
    "ORDER BY start_at"
)


async def raw_fetch(url: str, ids: list, lo: datetime, hi: datetime, n: int) -> list[float]:
    """The rows the slots endpoint reads, fetched with the bare driver, n times."""
    times = []
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.split(":///", 1)[1])
        marks = ",".join("?" * len(ids))
        sql = RAW_SQL.format(ids=marks, p1="?", p2="?")
        args = [i.hex for i in ids] + [
            (hi + timedelta(days=2)).replace(tzinfo=None).isoformat(" "),
            (lo - timedelta(days=2)).replace(tzinfo=None).isoformat(" "),
        ]
        for _ in range(n):
            t = time.perf_counter()
            rows = conn.execute(sql, args).fetchall()
            times.append(time.perf_counter() - t)
        conn.close()
    else:
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        sql = RAW_SQL.format(ids="SELECT unnest($1::uuid[])", p1="$3", p2="$2")
        for _ in range(n):
            t = time.perf_counter()
            rows = await conn.fetch(sql, ids, hi + timedelta(days=2), lo - timedelta(days=2))
            times.append(time.perf_counter() - t)
        await conn.close()
    assert rows, "the raw query found the seeded bookings"
    return times


async def run(backend: str, requests: int, folder: Path) -> list[str]:
    now = datetime.now(UTC)
    url = await fresh_database(backend, folder)
    seeded = await seed(url, now, candidates_per_language=10)
    server = Server(url, folder / f"data-{backend}")
    try:
        await server.wait()
        rng = random.Random(7)
        start_day = (now + timedelta(days=1)).date()
        params = {"from": start_day.isoformat(), "to": (start_day + timedelta(days=30)).isoformat()}
        latencies, counts = [], []
        async with aiohttp.ClientSession() as http:
            for i in range(requests + 20):
                lang = rng.choice(LANGUAGES)
                token = rng.choice(seeded.candidate_tokens[lang])
                t = time.perf_counter()
                async with http.get(f"{server.base}/c/{token}/slots", params=params) as resp:
                    body = await resp.json()
                elapsed = time.perf_counter() - t
                assert resp.status == 200, body
                if i >= 20:  # warm-up excluded
                    latencies.append(elapsed)
                    counts.append(len(body["slots"]))
    finally:
        server.stop()
    lo = datetime.combine(start_day, datetime.min.time(), UTC)
    raw = await raw_fetch(url, seeded.evaluators["en"], lo, lo + timedelta(days=31), requests)
    p95, raw95 = pct(latencies, 95) * 1000, pct(raw, 95) * 1000
    return [
        backend,
        f"{pct(latencies, 50) * 1000:.1f}",
        f"{p95:.1f}",
        f"{pct(raw, 50) * 1000:.2f}",
        f"{raw95:.2f}",
        f"{p95 / raw95:.1f}×",
        f"{sum(counts) // len(counts)}",
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            rows.append(await run(backend, args.requests, Path(tmp)))
    print(f"# slots: GET /c/{{token}}/slots, 31 days, {args.requests} sequential requests")
    print(f"# machine: {machine()}; {datetime.now(UTC):%Y-%m-%d}")
    print(
        table(
            [
                "backend",
                "HTTP p50 ms",
                "HTTP p95 ms",
                "raw p50 ms",
                "raw p95 ms",
                "p95 / raw p95",
                "slots/answer",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
