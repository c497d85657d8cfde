"""Benchmark the media core: N concurrent 1:1 rooms, relay "forward" against "transcode".

    .venv/bin/python bench/rooms.py                       # N = 1 2 4 8, both modes
    .venv/bin/python bench/rooms.py --sizes 1,4 --modes forward --duration 5

Each room has two participants sending 640x480 VP8 at 30 fps (about 0.85 Mbit/s) and Opus
both ways. The participants run in this process as `EncodedParticipant`s: their media is
encoded once before the run and replayed, and only each participant's first remote frame is
decoded, so that they cost little next to the server. The server runs in a child process
(`bench/rooms.py serve`), a fresh one per (mode, N), and is measured from the outside through
/proc/<pid>: CPU (all threads) over a steady-state window, resident memory above its idle
baseline, and for each participant the time from asking to join to decoding the first frame
of the other one.

Pointing it at the real server later: the participants only need a `Signaling` (offer,
answer, close a room) and the server's pid. `--server URL --server-pid PID` uses a running
server that speaks the small JSON API of `serve` below; a WebSocket `Signaling` for the real
room page can replace `HttpSignaling` without touching the measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp
from aiohttp import web

# Run as `python bench/rooms.py`, this folder comes first on sys.path and `rooms` would be
# this very file rather than the package: put the repository root there instead.
_HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == _HERE:
    sys.path[0] = str(_HERE.parent)

from rooms.relay import MediaBridge, Role  # noqa: E402
from rooms.settings import RelayMode, RoomsSettings  # noqa: E402
from rooms.synthetic import EncodedParticipant, encode_opus_loop, encode_vp8_loop  # noqa: E402

ROLES: tuple[Role, Role] = ("evaluator", "candidate")
JOIN_TIMEOUT = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- the server side ---------------------------------------------------------------------


async def serve(relay: RelayMode, port: int) -> None:
    """A bare signaling endpoint in front of one MediaBridge per room."""
    settings = RoomsSettings(relay=relay)
    bridges: dict[str, MediaBridge] = {}

    def bridge(request: web.Request) -> MediaBridge:
        room = request.match_info["room"]
        if room not in bridges:
            bridges[room] = MediaBridge.from_settings(settings)
        return bridges[room]

    def role(request: web.Request) -> Role:
        value = request.match_info["role"]
        if value not in ROLES:
            raise web.HTTPNotFound()
        return value  # type: ignore[return-value]

    async def offer(request: web.Request) -> web.Response:
        return web.json_response(await bridge(request).offer(role(request)))

    async def answer(request: web.Request) -> web.Response:
        await bridge(request).answer(role(request), await request.json())
        return web.Response(status=204)

    async def close_room(request: web.Request) -> web.Response:
        room = bridges.pop(request.match_info["room"], None)
        if room is not None:
            await room.close()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/bench/rooms/{room}/{role}/offer", offer)
    app.router.add_post("/bench/rooms/{room}/{role}/answer", answer)
    app.router.add_delete("/bench/rooms/{room}", close_room)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    host, bound = runner.addresses[0][:2]
    print(f"READY http://{host}:{bound}", flush=True)
    await stop.wait()
    for room in bridges.values():
        await room.close()
    await runner.cleanup()


# --- the participants' side --------------------------------------------------------------


class Signaling(Protocol):
    """How a participant reaches the server: the only part tied to a server's API."""

    async def offer(self, room: str, role: Role) -> dict[str, str]: ...

    async def answer(self, room: str, role: Role, answer: dict[str, str]) -> None: ...

    async def close_room(self, room: str) -> None: ...


class HttpSignaling:
    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self._base = base_url.rstrip("/") + "/bench/rooms"

    async def offer(self, room: str, role: Role) -> dict[str, str]:
        async with self._session.post(f"{self._base}/{room}/{role}/offer") as response:
            response.raise_for_status()
            result: dict[str, str] = await response.json()
            return result

    async def answer(self, room: str, role: Role, answer: dict[str, str]) -> None:
        async with self._session.post(f"{self._base}/{room}/{role}/answer", json=answer) as r:
            r.raise_for_status()

    async def close_room(self, room: str) -> None:
        async with self._session.delete(f"{self._base}/{room}") as response:
            response.raise_for_status()


@dataclass(frozen=True)
class ProcSample:
    at: float
    cpu_seconds: float
    rss_bytes: int


def sample(pid: int) -> ProcSample:
    """CPU time (all threads) and resident memory of a process, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return ProcSample(time.monotonic(), cpu, rss)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: with few samples, report a value that was observed."""
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Result:
    mode: str
    rooms: int
    server_cores: float
    rss_per_room: float
    join_ms: list[float]
    joined: int
    recv_fps: float
    recv_kbps: float
    bench_cores: float


async def join_room(
    signaling: Signaling, room: str, media: tuple[list[bytes], list[bytes]]
) -> tuple[list[EncodedParticipant], list[float]]:
    """Both participants join at once; returns them and their join-to-first-frame times."""
    participants = [EncodedParticipant(*media) for _ in ROLES]
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def join(role: Role, participant: EncodedParticipant) -> None:
        offer = await signaling.offer(room, role)
        await signaling.answer(room, role, await participant.answer(offer))

    await asyncio.gather(*(join(r, p) for r, p in zip(ROLES, participants, strict=True)))
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(JOIN_TIMEOUT):
            await asyncio.gather(*(p.first_video.wait() for p in participants))
    latencies = [(p.first_video_at - started) * 1000 for p in participants if p.first_video_at]
    return participants, latencies


async def measure(
    signaling: Signaling, pid: int, mode: str, rooms: int, duration: float, warmup: float
) -> Result:
    media = (encode_vp8_loop(640, 480), encode_opus_loop(440))
    await asyncio.sleep(1.0)
    idle = sample(pid)
    everyone: list[EncodedParticipant] = []
    join_ms: list[float] = []
    try:
        for index in range(rooms):
            participants, latencies = await join_room(signaling, f"room{index}", media)
            everyone.extend(participants)
            join_ms.extend(latencies)
        await asyncio.sleep(warmup)
        frames0 = sum(p.video_frames for p in everyone)
        bytes0 = sum(p.video_bytes for p in everyone)
        before, mine_before = sample(pid), time.process_time()
        await asyncio.sleep(duration)
        after, mine_after = sample(pid), time.process_time()
        wall = after.at - before.at
        streams = max(len(everyone), 1)
        return Result(
            mode=mode,
            rooms=rooms,
            server_cores=(after.cpu_seconds - before.cpu_seconds) / wall,
            rss_per_room=(after.rss_bytes - idle.rss_bytes) / rooms,
            join_ms=join_ms,
            joined=len(join_ms),
            recv_fps=(sum(p.video_frames for p in everyone) - frames0) / wall / streams,
            recv_kbps=(sum(p.video_bytes for p in everyone) - bytes0) * 8 / 1000 / wall / streams,
            bench_cores=(mine_after - mine_before) / wall,
        )
    finally:
        for participant in everyone:
            await participant.close()
        for index in range(rooms):
            with contextlib.suppress(aiohttp.ClientError):
                await signaling.close_room(f"room{index}")


async def run_against_spawned_server(
    mode: RelayMode, rooms: int, duration: float, warmup: float
) -> Result:
    """A fresh server per configuration, so memory growth is this configuration's own."""
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "serve",
        "--relay",
        mode,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        line = (await asyncio.wait_for(server.stdout.readline(), 30)).decode().strip()
        if not line.startswith("READY "):
            raise RuntimeError(f"server did not start: {line!r}")
        async with aiohttp.ClientSession() as session:
            signaling = HttpSignaling(session, line.removeprefix("READY "))
            return await measure(signaling, server.pid, mode, rooms, duration, warmup)
    finally:
        if server.returncode is None:
            server.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(server.wait(), 15)
            except TimeoutError:
                server.kill()
                await server.wait()


def table(results: list[Result]) -> str:
    header = (
        f"{'relay':<10} {'rooms':>5} {'srv cores':>9} {'/room':>6} {'/video':>7} "
        f"{'RSS MB/room':>11} {'join p50 ms':>11} {'p95 ms':>7} {'joined':>7} "
        f"{'recv fps':>8} {'kbit/s':>7} {'bench cores':>11}"
    )
    lines = [header, "-" * len(header)]
    for r in sorted(results, key=lambda r: (r.rooms, r.mode)):
        p50 = f"{percentile(r.join_ms, 50):.0f}" if r.join_ms else "-"
        p95 = f"{percentile(r.join_ms, 95):.0f}" if r.join_ms else "-"
        lines.append(
            f"{r.mode:<10} {r.rooms:>5} {r.server_cores:>9.2f} {r.server_cores / r.rooms:>6.3f} "
            f"{r.server_cores / (2 * r.rooms):>7.3f} {r.rss_per_room / 2**20:>11.1f} "
            f"{p50:>11} {p95:>7} {r.joined:>3}/{2 * r.rooms:<3} {r.recv_fps:>8.1f} "
            f"{r.recv_kbps:>7.0f} {r.bench_cores:>11.2f}"
        )
    lines.append(
        "srv cores: server process CPU (all threads) / wall time in steady state; /video: per "
        "forwarded video stream (2 per room, audio included). join: asking to join -> first "
        "remote frame decoded. recv fps / kbit/s: video received per participant."
    )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    sizes = [int(n) for n in args.sizes.split(",")]
    modes: list[RelayMode] = [m for m in ("forward", "transcode") if m in args.modes.split(",")]
    results: list[Result] = []
    for rooms in sizes:
        for mode in modes:
            if args.server:
                async with aiohttp.ClientSession() as session:
                    signaling = HttpSignaling(session, args.server)
                    result = await measure(
                        signaling, args.server_pid, mode, rooms, args.duration, args.warmup
                    )
            else:
                result = await run_against_spawned_server(mode, rooms, args.duration, args.warmup)
            results.append(result)
            print(
                f"{mode} x{rooms}: {result.server_cores:.2f} server cores, "
                f"{result.joined}/{2 * rooms} joined",
                file=sys.stderr,
                flush=True,
            )
    print(f"{os.cpu_count()} CPUs; {args.duration:.0f} s window after {args.warmup:.0f} s warm-up")
    print(table(results))


def cli(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    server = sub.add_parser("serve", help="run the bench server (started by the bench itself)")
    server.add_argument("--relay", choices=["forward", "transcode"], default="forward")
    server.add_argument("--port", type=int, default=0)
    parser.add_argument("--sizes", default="1,2,4,8", help="numbers of rooms, comma-separated")
    parser.add_argument("--modes", default="forward,transcode")
    parser.add_argument("--duration", type=float, default=10.0, help="measured window, seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds after the last join")
    parser.add_argument("--server", help="base URL of a running server (skips spawning one)")
    parser.add_argument("--server-pid", type=int, help="its pid, to read CPU and memory")
    args = parser.parse_args(argv)
    if args.command == "serve":
        asyncio.run(serve(args.relay, args.port))
        return
    if args.server and not args.server_pid:
        parser.error("--server needs --server-pid")
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
