"""Candidates confirming at once over HTTP, against one `viva serve` process and against two
on the same database, side by side, with the servers' CPU time per booking.

Each configuration gets a fresh database seeded alike (bench.common: 200 evaluators, 4
languages, 20,000 existing bookings), a warm-up of `WARMUP` confirmations not counted, and
the same crowd: every candidate confirms a distinct
slot of their language, all at once over `CONCURRENCY` connections, spread round-robin over
the processes as a load balancer would. The servers' CPU is read from /proc (user + system
time of each `viva serve` process) just before and just after the crowd, with the PostgreSQL
processes' CPU, the benchmark client's own, and how busy the whole machine was (all cores,
/proc/stat): on a machine where they share the cores, they bound what more processes add.

Usage: .venv/bin/python bench/booking.py [--backends sqlite,postgresql] [--candidates 1000]
                                          [--processes 1,2] [--profile DIR]
                                          [--database NAME] [--pool-size 10]

`--profile DIR` runs every server under cProfile (bench.profiled: CPU time, the crowd only) and
writes DIR/<backend>-<processes>-<n>.prof (read with pstats); the profiler inflates the CPU
column, so compare profiles with profiles.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import LANGUAGES, Server, fresh_database, machine, seed, table

CONCURRENCY = 100  # open connections from the crowd of candidates
# Confirmations sent, and not counted, before the crowd: a server that has just started opens
# its pooled connections, and PostgreSQL prepares and plans every statement for each of them,
# during its first bookings; a server in service did that long ago.
WARMUP = 200
TICK = os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields) - idle) / TICK, sum(fields) / TICK


def postgres_cpu() -> float:
    """CPU seconds so far of every PostgreSQL process on this machine (0 without any)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        if "(postgres)" in text:
            total += cpu_seconds(int(stat.parent.name))
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; no psutil needed)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15)


async def run(
    backend: str,
    candidates: int,
    processes: int,
    folder: Path,
    profile: Path | None = None,
    database: str = "viva_bench_booking",
    pool_size: int = 10,
) -> list[str]:
    now = datetime.now(UTC)
    url = await fresh_database(backend, folder, name=database)
    per_language = (candidates + WARMUP) // len(LANGUAGES)
    seeded = await seed(url, now, candidates_per_language=per_language)
    servers = [
        Server(
            url,
            folder / f"data-{backend}-{n}",
            profile / f"{backend}-{processes}-{n}.prof" if profile is not None else None,
            pool_size,
        )
        for n in range(processes)
    ]
    try:
        for server in servers:
            await server.wait()
        start_day = (now + timedelta(days=2)).date()
        params = {"from": start_day.isoformat(), "to": (start_day + timedelta(days=40)).isoformat()}
        warm_each = WARMUP // len(LANGUAGES)
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        # No client timeout: on a loaded machine the last of the crowd waits minutes for a
        # connection, and an answer late is still an answer to count.
        timeout = aiohttp.ClientTimeout(total=None)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            plan = []
            for lang in LANGUAGES:
                tokens = seeded.candidate_tokens[lang]
                base = servers[0].base
                async with http.get(f"{base}/c/{tokens[0]}/slots", params=params) as r:
                    slots = (await r.json())["slots"]
                assert len(slots) >= len(tokens), "enough distinct slots for the crowd"
                plan += [(tok, slot["start"]) for tok, slot in zip(tokens, slots, strict=False)]

            async def confirm(n: int, token: str, start: str) -> int:
                base = servers[n % processes].base
                async with http.post(f"{base}/c/{token}/booking", json={"start": start}) as r:
                    await r.read()
                    return r.status

            warmup = [step for n, step in enumerate(plan) if n % per_language < warm_each]
            plan = [step for n, step in enumerate(plan) if n % per_language >= warm_each]
            await asyncio.gather(*(confirm(n, tok, st) for n, (tok, st) in enumerate(warmup)))
            if profile is not None:
                for server in servers:
                    server.profiling(True)
            cpu0 = sum(cpu_seconds(s.proc.pid) for s in servers)
            client0, pg0, (busy0, total0) = time.process_time(), postgres_cpu(), machine_busy()
            t = time.perf_counter()
            statuses = await asyncio.gather(
                *(confirm(n, tok, st) for n, (tok, st) in enumerate(plan))
            )
            elapsed = time.perf_counter() - t
            cpu = sum(cpu_seconds(s.proc.pid) for s in servers) - cpu0
            client, pg = time.process_time() - client0, postgres_cpu() - pg0
            busy1, total1 = machine_busy()
            if profile is not None:
                for server in servers:
                    server.profiling(False)
                await asyncio.sleep(2)  # the stats are written before the server is stopped
    finally:
        for server in servers:
            server.stop()
    counts = Counter(statuses)
    booked = counts[201]
    others = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()) if k != 201) or "-"
    return [
        backend,
        str(processes),
        str(len(plan)),
        str(booked),
        others,
        f"{elapsed:.2f}",
        f"{booked / elapsed:.0f}",
        f"{1000 * cpu / max(booked, 1):.1f}",
        f"{1000 * pg / max(booked, 1):.1f}",
        f"{1000 * client / max(booked, 1):.1f}",
        f"{100 * (busy1 - busy0) / max(total1 - total0, 1e-9):.0f} %",
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--processes", default="1,2", help="process counts to compare")
    parser.add_argument("--profile", type=Path, help="folder for the servers' cProfile stats")
    parser.add_argument(
        "--database",
        default="viva_bench_booking",
        help="the PostgreSQL database to (re)create: another name lets two runs share a server",
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=10,
        help="each server's PostgreSQL connections (config.toml's default: 10)",
    )
    args = parser.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    counts = [int(n) for n in args.processes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            first: float | None = None
            for processes in counts:
                row = await run(
                    backend,
                    args.candidates,
                    processes,
                    Path(tmp),
                    args.profile,
                    args.database,
                    args.pool_size,
                )
                rate = float(row[6])
                first = first or rate
                rows.append([*row, f"{rate / first:.2f}×"])
                print("#", " | ".join(rows[-1]), flush=True)  # kept if a later one fails
    print(
        f"# booking: {args.candidates} candidates confirming at once, {CONCURRENCY} connections,"
        f" {WARMUP} confirmations of warm-up first; {args.pool_size} pooled connections a server"
    )
    print(
        f"# machine: {machine()}; load average {os.getloadavg()[0]:.1f}; "
        f"{datetime.now(UTC):%Y-%m-%d}"
    )
    headers = [
        "backend",
        "processes",
        "confirmations",
        "booked (201)",
        "other answers",
        "seconds",
        "bookings/s",
        "server CPU ms/booking",
        "PostgreSQL CPU ms/booking",
        "client CPU ms/booking",
        "machine busy",
        "vs 1 process",
    ]
    print(table(headers, rows))


if __name__ == "__main__":
    asyncio.run(main())
