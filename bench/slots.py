"""GET /c/{token}/slots for a 31-day range over HTTP, beside one raw SQL fetch of the same rows.

Three measurements per database, against one `viva serve` process:
- sequential: one client, one request after another (the process's cache warm);
- cold: the first request after an invalidation (the organisation's calendar version raised
  in SQL, as a booking committed by another process would), one at a time;
- concurrent: `--clients` clients for `--seconds`, random candidates of all languages, with
  the server's CPU per request read from /proc (user + system time of the process).

Usage: .venv/bin/python bench/slots.py [--backends sqlite,postgresql] [--requests 200]
                                       [--clients 32] [--seconds 15] [--cold 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.booking import cpu_seconds
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


BUMP = "UPDATE organisations SET calendar_version = calendar_version + 1 WHERE id = {p}"


async def bump(url: str, org_id: uuid.UUID) -> None:
    """Raise the calendar version as a committed booking would: every cache entry goes stale."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.split(":///", 1)[1])
        conn.execute(BUMP.format(p="?"), [org_id.hex])
        conn.commit()
        conn.close()
    else:
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        await conn.execute(BUMP.format(p="$1"), org_id)
        await conn.close()


def _tokens(seeded: Any, rng: random.Random) -> str:
    return rng.choice(seeded.candidate_tokens[rng.choice(LANGUAGES)])


async def _get(http: aiohttp.ClientSession, url: str, params: dict[str, str]) -> int:
    async with http.get(url, params=params) as resp:
        body = await resp.read()
        assert resp.status == 200, body[:300]
        return body.count(b'"start"')


async def crowd(
    http: aiohttp.ClientSession,
    server: Server,
    seeded: Any,
    params: dict[str, str],
    clients: int,
    seconds: float,
) -> tuple[int, list[float], float]:
    """(requests answered, latencies, server CPU seconds) of `clients` clients for `seconds`."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def client(n: int) -> None:
        rng = random.Random(n)
        while time.perf_counter() < stop:
            token = _tokens(seeded, rng)
            t = time.perf_counter()
            await _get(http, f"{server.base}/c/{token}/slots", params)
            latencies.append(time.perf_counter() - t)

    cpu0 = cpu_seconds(server.proc.pid)
    await asyncio.gather(*(client(n) for n in range(clients)))
    return len(latencies), latencies, cpu_seconds(server.proc.pid) - cpu0


async def run(
    backend: str, requests: int, clients: int, seconds: float, colds: int, folder: Path
) -> tuple[list[str], list[str]]:
    now = datetime.now(UTC)
    url = await fresh_database(backend, folder)
    seeded = await seed(url, now, candidates_per_language=10)
    server = Server(url, folder / f"data-{backend}")
    try:
        await server.wait()
        rng = random.Random(7)
        start_day = (now + timedelta(days=1)).date()
        params = {"from": start_day.isoformat(), "to": (start_day + timedelta(days=30)).isoformat()}
        latencies, counts, cold = [], [], []
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(connector=connector) as http:
            for i in range(requests + 20):
                token = _tokens(seeded, rng)
                t = time.perf_counter()
                found = await _get(http, f"{server.base}/c/{token}/slots", params)
                elapsed = time.perf_counter() - t
                if i >= 20:  # warm-up excluded
                    latencies.append(elapsed)
                    counts.append(found)
            for _ in range(colds):
                await bump(url, seeded.org_id)
                token = _tokens(seeded, rng)
                t = time.perf_counter()
                await _get(http, f"{server.base}/c/{token}/slots", params)
                cold.append(time.perf_counter() - t)
            load = os.getloadavg()[0]
            done, crowd_latencies, cpu = await crowd(http, server, seeded, params, clients, seconds)
    finally:
        server.stop()
    lo = datetime.combine(start_day, datetime.min.time(), UTC)
    raw = await raw_fetch(url, seeded.evaluators["en"], lo, lo + timedelta(days=31), requests)
    p95, raw95 = pct(latencies, 95) * 1000, pct(raw, 95) * 1000
    sequential = [
        backend,
        f"{pct(latencies, 50) * 1000:.1f}",
        f"{p95:.1f}",
        f"{pct(cold, 50) * 1000:.1f}",
        f"{pct(cold, 95) * 1000:.1f}",
        f"{pct(raw, 50) * 1000:.2f}",
        f"{raw95:.2f}",
        f"{p95 / raw95:.1f}×",
        f"{sum(counts) // len(counts)}",
    ]
    concurrent = [
        backend,
        str(clients),
        f"{done / seconds:.0f}",
        f"{pct(crowd_latencies, 50) * 1000:.1f}",
        f"{pct(crowd_latencies, 95) * 1000:.1f}",
        f"{1000 * cpu / max(done, 1):.2f}",
        f"{load:.2f}",
    ]
    return sequential, concurrent


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--cold", type=int, default=30, help="requests after an invalidation")
    args = parser.parse_args()
    sequential, concurrent = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            row, crowd_row = await run(
                backend, args.requests, args.clients, args.seconds, args.cold, Path(tmp)
            )
            sequential.append(row)
            concurrent.append(crowd_row)
    print(f"# slots: GET /c/{{token}}/slots, 31 days, {args.requests} sequential requests")
    print(f"# machine: {machine()}; {datetime.now(UTC):%Y-%m-%d}")
    print(
        table(
            [
                "backend",
                "HTTP p50 ms",
                "HTTP p95 ms",
                "cold p50 ms",
                "cold p95 ms",
                "raw p50 ms",
                "raw p95 ms",
                "p95 / raw p95",
                "slots/answer",
            ],
            sequential,
        )
    )
    print(f"# concurrent: {args.clients} clients for {args.seconds:.0f} s, one process")
    print(
        table(
            [
                "backend",
                "clients",
                "requests/s",
                "p50 ms",
                "p95 ms",
                "server CPU ms/request",
                "load avg (1 min) before",
            ],
            concurrent,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
