"""Benchmark the rooms: N concurrent 1:1 rooms on the real server, relay "forward" vs "transcode".

    .venv/bin/python bench/rooms.py                       # N = 1 2 4 8, both modes
    .venv/bin/python bench/rooms.py --sizes 1,4 --modes forward --duration 5

The server is the real Viva application (`scheduler.app.create_app`: the room WebSocket at
`/r/{token}/ws`, `RoomServer`, its SQLite database), run by `bench/rooms.py serve` in a child
process, a fresh one per (mode, N): it migrates an empty database in a temporary folder,
books N interviews starting five minutes from now (so that their rooms are open), prints
`READY <base URL> <JSON of the room links>` and serves until SIGTERM.

The participants run in this process and speak docs/rooms.md like a browser would: open the
link's WebSocket, take `hello` and the server's `offer`, send the `answer`; the evaluator
sends `admit` as soon as a `state` shows the candidate present. Each participant is an
`EncodedParticipant` sending 640x480 VP8 at 30 fps (about 0.85 Mbit/s) and Opus: media
encoded once before the run and replayed, and only the first remote frame decoded, so that
they cost little next to the server.

The server is measured from the outside through /proc/<pid>: CPU (all threads) over a
steady-state window, resident memory above its idle baseline, and join times (see
`JOIN_LEGEND`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web

# Run as `python bench/rooms.py`, this folder comes first on sys.path and `rooms` would be
# this very file rather than the package: put the repository root there instead.
_HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == _HERE:
    sys.path[0] = str(_HERE.parent)

from bench.common import SECRET, machine  # noqa: E402
from rooms.relay import Role  # noqa: E402
from rooms.settings import RelayMode  # noqa: E402
from rooms.tokens import LinkSigner  # noqa: E402
from scheduler.app import create_app  # noqa: E402
from scheduler.availability import Availability  # noqa: E402
from scheduler.bookings import book  # noqa: E402
from scheduler.clock import SystemClock  # noqa: E402
from scheduler.config import Settings, load_settings, secret_key  # noqa: E402
from scheduler.db import Database  # noqa: E402
from scheduler.links import Links  # noqa: E402
from scheduler.migrate import migrate  # noqa: E402
from scheduler.orgs import create_organisation  # noqa: E402
from scheduler.people import NewCandidate, NewEvaluator, create_candidate, create_evaluator  # noqa: E402
from tests.support.synthetic import EncodedParticipant, encode_opus_loop, encode_vp8_loop  # noqa: E402

JOIN_TIMEOUT = 30.0
SIGNALING_TIMEOUT = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Far enough ahead that the whole run happens before the interview's start, close enough
# that its room is already open ([rooms] open_before_minutes, 15).
START_IN = timedelta(minutes=5)
JOIN_LEGEND = (
    "join: evaluator = opening its WebSocket -> first candidate frame decoded (it admits the "
    "candidate as soon as a state shows them present); candidate = the evaluator's admit -> "
    "first evaluator frame decoded (its time in the lobby is the evaluator's decision, not "
    "the server's). Both open their links at the same moment."
)

Media = tuple[list[bytes], list[bytes]]


# --- the server side ---------------------------------------------------------------------


@dataclass(frozen=True)
class BookedRoom:
    """One booking's two room links, as the server hands them to the participants."""

    booking: str
    evaluator: str  # room tokens: /r/{token}/ws
    candidate: str

    def token(self, role: Role) -> str:
        return self.evaluator if role == "evaluator" else self.candidate


def _midday_zone(at: datetime) -> str:
    """A fixed-offset zone where `at` falls near noon.

    Availability is given in the evaluator's local days, and an interview must fit inside one
    availability interval: with the interview at local noon, a run near midnight UTC cannot
    straddle two days.
    """
    offset = 12 - at.astimezone(UTC).hour  # -11..12; Etc/GMT-3 is UTC+3 (POSIX sign)
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"


class _NoMail:
    """`scheduler.bookings.BookingEffects` that writes nothing: the benchmark's bookings
    need their rooms, not their messages or timers."""

    async def booked(self, *args: object, **kwargs: object) -> None:
        return None

    async def confirm(self, *args: object, **kwargs: object) -> None:
        return None

    async def moved(self, *args: object, **kwargs: object) -> None:
        return None

    async def cancelled(self, *args: object, **kwargs: object) -> None:
        return None


async def book_rooms(
    settings: Settings, count: int, *, record: bool = False
) -> tuple[list[BookedRoom], list[str]]:
    """`count` interviews, all starting `START_IN` from now, through the scheduler's own code.

    One evaluator per interview (an evaluator cannot hold two at once) and one candidate
    each, booked with `scheduler.bookings.book` as a candidate's confirmation is, minus the
    e-mails and timers (`_NoMail`): nothing but the rooms should cost the server CPU.
    Returns the rooms and their links as full URLs (for a person trying `serve` by hand).
    """
    now = SystemClock().now()
    start = (now + START_IN).replace(second=0, microsecond=0) + timedelta(minutes=1)
    policy = settings.policy.to_policy()
    zone = _midday_zone(start)
    local = start.astimezone(ZoneInfo(zone))
    end = local + policy.interview
    availability = Availability.from_document(
        {
            "overrides": [
                {
                    "date": local.date().isoformat(),
                    "intervals": [{"start": f"{local:%H:%M}", "end": f"{end:%H:%M}"}],
                }
            ]
        }
    )
    links = Links(LinkSigner(secret_key(settings)), settings.server.base_url)
    db = Database(settings.database.url)
    try:
        await migrate(db)
        async with db.write() as session:
            org = (
                await create_organisation(
                    session, name="Rooms bench", contact_email="rooms@bench.example", now=now
                )
            ).organisation
            org.recording = record  # as PATCH /api/v1/organisation {"recording": true} does
            candidates: list[uuid.UUID] = []
            for index in range(count):
                await create_evaluator(
                    session,
                    org.id,
                    NewEvaluator(
                        name=f"Evaluator {index}",
                        email=f"e{index}@bench.example",
                        timezone=zone,
                        languages=["en"],
                        locale="en",
                    ),
                    now=now,
                    availability=availability,
                )
                candidate = await create_candidate(
                    session,
                    org.id,
                    NewCandidate(
                        name=f"Candidate {index}",
                        email=f"c{index}@bench.example",
                        language="en",
                        locale="en",
                        timezone="Europe/Paris",
                    ),
                    now=now,
                )
                candidates.append(candidate.id)
        rooms: list[BookedRoom] = []
        urls: list[str] = []
        for candidate_id in candidates:
            async with db.write() as session:
                booking, _ = await book(
                    db,
                    session,
                    candidate_id=candidate_id,
                    start=start,
                    policy=policy,
                    now=now,
                    effects=_NoMail(),
                )
            rooms.append(
                BookedRoom(
                    booking=str(booking.id),
                    evaluator=links.room_token(booking, "evaluator"),
                    candidate=links.room_token(booking, "candidate"),
                )
            )
            urls += [links.room_url(booking, "evaluator"), links.room_url(booking, "candidate")]
        return rooms, urls
    finally:
        await db.dispose()


async def serve(relay: RelayMode, rooms: int, port: int, *, record: bool = False) -> None:
    """The real application on a fresh database holding `rooms` bookings, until SIGTERM."""
    logging.basicConfig(level=logging.WARNING, format="server: %(levelname)s %(name)s %(message)s")
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))  # bound first, so that the links carry the real port
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    with tempfile.TemporaryDirectory(prefix="viva-bench-rooms-") as folder:
        settings = load_settings(
            environ={
                "VIVA_DATABASE_URL": f"sqlite+aiosqlite:///{folder}/viva.db",
                "VIVA_SERVER_SECRET_KEY": SECRET,
                "VIVA_SERVER_BASE_URL": base,
                "VIVA_SERVER_DATA_DIR": f"{folder}/data",
                "VIVA_SERVER_LOG_LEVEL": "WARNING",
                "VIVA_ROOMS_RELAY": relay,
                # Book a few minutes ahead, where the room is already open.
                "VIVA_POLICY_MIN_NOTICE_HOURS": "0",
            }
        )
        booked, urls = await book_rooms(settings, rooms, record=record)
        runner = web.AppRunner(create_app(settings), access_log=None)
        await runner.setup()
        await web.SockSite(runner, listener).start()
        # As `viva serve` does (scheduler/cli.py): start-up objects out of the collector's way.
        gc.collect()
        gc.freeze()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        links = {"rooms": [asdict(room) for room in booked], "urls": urls}
        print(f"READY {base} {json.dumps(links)}", flush=True)
        await stop.wait()
        await runner.cleanup()  # 1001 to anyone still connected, departures recorded


# --- the participants' side --------------------------------------------------------------


class Refused(Exception):
    """The server turned a participant away (an `error` or a close before its offer)."""


class Attendee:
    """One participant's tab: the room's WebSocket, with an `EncodedParticipant` as its media.

    The WebSocket is read for as long as the participant stays, as a page does: the server's
    heartbeat pings are answered while reading, and an unread socket would be dropped.
    """

    def __init__(self, role: Role, media: Media) -> None:
        self.role = role
        self.peer = EncodedParticipant(*media)
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.opened_at: float | None = None
        self.admit_sent_at: float | None = None
        self.errors: list[dict[str, Any]] = []
        self._version = -1
        self._reader: asyncio.Task[None] | None = None

    async def join(self, session: aiohttp.ClientSession, base: str, token: str) -> None:
        """Open the link, answer the server's offer, then keep listening in the background."""
        self.opened_at = asyncio.get_running_loop().time()
        self.ws = await session.ws_connect(f"{base}/r/{token}/ws")
        async with asyncio.timeout(SIGNALING_TIMEOUT):
            await self._until("hello")
            offer = await self._until("offer")
        answer = await self.peer.answer({"type": "offer", "sdp": offer["sdp"]})
        # aiortc gathers before answering: the candidates are in the SDP, nothing to trickle.
        await self._send(type="answer", sdp=answer["sdp"])
        self._reader = asyncio.create_task(self._listen())

    async def _receive(self) -> dict[str, Any] | None:
        assert self.ws is not None
        msg = await self.ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            return None
        message: dict[str, Any] = json.loads(msg.data)
        await self._handle(message)
        return message

    async def _until(self, kind: str) -> dict[str, Any]:
        while True:
            message = await self._receive()
            if message is None:
                code = self.ws.close_code if self.ws is not None else None
                raise Refused(f"{self.role}: closed ({code}) while waiting for {kind}")
            if message["type"] == kind:
                return message
            if message["type"] == "error":
                raise Refused(f"{self.role}: {message.get('code')}: {message.get('message')}")

    async def _listen(self) -> None:
        while await self._receive() is not None:
            pass

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "hello":
            await self._on_state(message["room"])
        elif kind == "state":
            await self._on_state(message)
        elif kind == "error":
            self.errors.append(message)
            print(f"{self.role}: error {message}", file=sys.stderr, flush=True)
            if message.get("about") == "admit":
                self.admit_sent_at = None  # e.g. candidate_absent: the next state retries

    async def _on_state(self, state: dict[str, Any]) -> None:
        """The evaluator admits the candidate the moment a state shows them in the lobby."""
        if state["version"] < self._version:
            return  # overtaken by a newer one (docs/rooms.md)
        self._version = state["version"]
        if (
            self.role == "evaluator"
            and self.admit_sent_at is None
            and state["phase"] == "lobby"
            and state["present"]["candidate"]
        ):
            self.admit_sent_at = asyncio.get_running_loop().time()
            await self._send(type="admit")

    async def _send(self, **message: Any) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps(message))

    async def leave(self) -> None:
        """Leave on purpose (the server closes with 1000), then hang up the peer connection."""
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._send(type="leave")
            if self._reader is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._reader), 5)
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self.peer.close()


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
    # Video frames each participant received in the measured window (evaluator, candidate,
    # room by room): a participant at 0 saw nothing of the other.
    video_frames: list[int] = field(default_factory=list)
    join_ms_by_role: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0  # `error` messages the server sent the participants
    server_exit: int | None = None  # the server's exit status after SIGTERM (0: clean)


async def join_room(
    session: aiohttp.ClientSession,
    base: str,
    room: BookedRoom,
    media: Media,
    everyone: list[Attendee],
) -> dict[Role, float]:
    """Both participants open their links at once; their join times (`JOIN_LEGEND`), in ms."""
    evaluator, candidate = Attendee("evaluator", media), Attendee("candidate", media)
    everyone += [evaluator, candidate]  # the caller cleans up, whatever happens here
    await asyncio.gather(
        *(a.join(session, base, room.token(a.role)) for a in (evaluator, candidate))
    )
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(JOIN_TIMEOUT):
            await asyncio.gather(
                evaluator.peer.first_video.wait(), candidate.peer.first_video.wait()
            )
    latencies: dict[Role, float] = {}
    if evaluator.peer.first_video_at is not None and evaluator.opened_at is not None:
        latencies["evaluator"] = (evaluator.peer.first_video_at - evaluator.opened_at) * 1000
    if candidate.peer.first_video_at is not None and evaluator.admit_sent_at is not None:
        latencies["candidate"] = (candidate.peer.first_video_at - evaluator.admit_sent_at) * 1000
    return latencies


async def measure(
    base: str, pid: int, booked: list[BookedRoom], mode: str, duration: float, warmup: float
) -> Result:
    media = (encode_vp8_loop(640, 480), encode_opus_loop(440))
    await asyncio.sleep(1.0)
    idle = sample(pid)
    everyone: list[Attendee] = []
    by_role: dict[str, list[float]] = {"evaluator": [], "candidate": []}
    rooms = len(booked)
    async with aiohttp.ClientSession() as session:
        try:
            for room in booked:
                for role, ms in (await join_room(session, base, room, media, everyone)).items():
                    by_role[role].append(ms)
            await asyncio.sleep(warmup)
            frames0 = [a.peer.video_frames for a in everyone]
            bytes0 = sum(a.peer.video_bytes for a in everyone)
            before, mine_before = sample(pid), time.process_time()
            await asyncio.sleep(duration)
            after, mine_after = sample(pid), time.process_time()
            wall = after.at - before.at
            frames = [a.peer.video_frames - f0 for a, f0 in zip(everyone, frames0, strict=True)]
            received = sum(a.peer.video_bytes for a in everyone) - bytes0
            streams = max(len(everyone), 1)
            return Result(
                mode=mode,
                rooms=rooms,
                server_cores=(after.cpu_seconds - before.cpu_seconds) / wall,
                rss_per_room=(after.rss_bytes - idle.rss_bytes) / rooms,
                join_ms=[*by_role["evaluator"], *by_role["candidate"]],
                joined=sum(map(len, by_role.values())),
                recv_fps=sum(frames) / wall / streams,
                recv_kbps=received * 8 / 1000 / wall / streams,
                bench_cores=(mine_after - mine_before) / wall,
                video_frames=frames,
                join_ms_by_role=by_role,
                errors=sum(len(a.errors) for a in everyone),
            )
        finally:
            await asyncio.gather(*(a.leave() for a in everyone), return_exceptions=True)


def parse_ready(line: str) -> tuple[str, list[BookedRoom]]:
    """`READY <base URL> <JSON>` as `serve` prints it."""
    if not line.startswith("READY "):
        raise RuntimeError(f"server did not start: {line!r}")
    base, payload = line.removeprefix("READY ").split(" ", 1)
    return base, [BookedRoom(**room) for room in json.loads(payload)["rooms"]]


async def run_against_spawned_server(
    mode: RelayMode, rooms: int, duration: float, warmup: float, *, record: bool = False
) -> Result:
    """A fresh server per configuration, so memory growth is this configuration's own."""
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "serve",
        "--relay",
        mode,
        "--rooms",
        str(rooms),
        *(["--record"] if record else []),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        line = (await asyncio.wait_for(server.stdout.readline(), 60)).decode().strip()
        base, booked = parse_ready(line)
        label = f"{mode}+rec" if record else mode
        result = await measure(base, server.pid, booked, label, duration, warmup)
    finally:
        if server.returncode is None:
            server.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(server.wait(), 15)
            except TimeoutError:
                server.kill()
                await server.wait()
                print(f"{mode} x{rooms}: server killed after SIGTERM", file=sys.stderr)
    result.server_exit = server.returncode
    return result


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
        "srv cores: the Viva server process's CPU (all threads) / wall time in steady state; "
        "/video: per forwarded video stream (2 per room, audio included). RSS: above the "
        "idle server's. recv fps / kbit/s: video received per participant."
    )
    lines.append(JOIN_LEGEND)
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    sizes = [int(n) for n in args.sizes.split(",")]
    modes: list[RelayMode] = [m for m in ("forward", "transcode") if m in args.modes.split(",")]
    results: list[Result] = []
    for rooms in sizes:
        for mode in modes:
            result = await run_against_spawned_server(
                mode, rooms, args.duration, args.warmup, record=args.record
            )
            results.append(result)
            joins = ", ".join(
                f"{role} {percentile(ms, 50):.0f}/{percentile(ms, 95):.0f} ms"
                for role, ms in result.join_ms_by_role.items()
                if ms
            )
            print(
                f"{mode} x{rooms}: {result.server_cores:.2f} server cores, "
                f"{result.joined}/{2 * rooms} joined (p50/p95 {joins}), "
                f"{result.errors} errors, server exit {result.server_exit}",
                file=sys.stderr,
                flush=True,
            )
    print(
        f"{machine()}; {args.duration:.0f} s window after {args.warmup:.0f} s warm-up; "
        "real Viva server (room WebSocket, RoomServer, SQLite) in its own process"
    )
    print(table(results))


def cli(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    server = sub.add_parser("serve", help="run the server (started by the bench itself)")
    server.add_argument("--relay", choices=["forward", "transcode"], default="forward")
    server.add_argument("--rooms", type=int, default=1, help="bookings to create")
    server.add_argument("--port", type=int, default=0)
    server.add_argument("--record", action="store_true", help="the organisation records")
    parser.add_argument("--sizes", default="1,2,4,8", help="numbers of rooms, comma-separated")
    parser.add_argument("--modes", default="forward,transcode")
    parser.add_argument("--duration", type=float, default=10.0, help="measured window, seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds after the last join")
    parser.add_argument(
        "--record", action="store_true", help="the organisation records its interviews"
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        asyncio.run(serve(args.relay, args.rooms, args.port, record=args.record))
        return
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
