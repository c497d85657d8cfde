"""1,000 booking confirmations through the outbox to a local aiosmtpd, beside a bare SMTP loop.

Usage: .venv/bin/python bench/mail.py [--backends sqlite,postgresql] [--messages 1000]
                                      [--batch-size 50] [--rounds 3] [--profile]

The messages are composed and enqueued as the app does it (`mailer.compose.booking_confirmed`
for the candidate and the evaluator of each booking, French and English alternating, then
`mailer.outbox.enqueue_content`, one transaction per booking); that part is timed on its
own. Then `Outbox.deliver_due()` runs pass after pass until every message is sent: that is
the measured rate. The reference is one `aiosmtplib.SMTP` connection sending the very same
stored bytes (read back from the outbox rows) in a plain loop. The SMTP server is aiosmtpd
in its own process (`bench/mail.py smtpd PORT`), so it does not share this process's GIL; it
only counts messages and answers 250, and the counts are checked after each run.

Each round runs the bare loop, then the outbox; between rounds every row is made due again
(status 'pending', attempts 0), so each round sends the same 1,000 messages. The best round
of each is kept, which tames a noisy (shared) machine; the outbox's range is shown too.

`--profile` then delivers the same messages twice more: once with every step of the
delivery path timed (wall clock), once under cProfile (CPU of this process, by package and
function). Those runs are slower than the measured ones and are not in the table.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# Run as `python bench/mail.py`, this folder comes first on sys.path, where `rooms` would be
# bench/rooms.py rather than the package: put the repository root there instead.
_HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == _HERE:
    sys.path[0] = str(_HERE.parent)

import aiosmtplib  # noqa: E402
from sqlalchemy import func, select, update  # noqa: E402

from bench.common import LANGUAGES, free_port, fresh_database, machine, table  # noqa: E402
from mailer import compose  # noqa: E402
from mailer.heartbeat import Claimed  # noqa: E402
from mailer.message import MailContent  # noqa: E402
from mailer.models import outbox_messages as t  # noqa: E402
from mailer.outbox import Outbox, enqueue_content  # noqa: E402
from mailer.settings import SmtpSettings  # noqa: E402
from rooms.tokens import LinkKind, LinkSigner, new_nonce  # noqa: E402
from scheduler.clock import SystemClock  # noqa: E402
from scheduler.db import Database  # noqa: E402
from scheduler.i18n import Catalogs, create_env  # noqa: E402
from scheduler.migrate import migrate  # noqa: E402
from scheduler.policy import Policy, lock_time  # noqa: E402

FROM_ADDRESS = "viva@bench.example"
BASE_URL = "https://viva.bench.example"
SECRET = b"bench-secret-key-0123456789abcdef"
TARGET = 0.5  # the target: at least half the bare loop's rate


# --- the SMTP server, in its own process ---------------------------------------------------


class CountingHandler:
    """Accepts every message and counts it; nothing else, so the server stays cheap."""

    def __init__(self) -> None:
        self.messages = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages += 1
        return "250 2.0.0 OK"


def smtpd_main(port: int) -> None:
    """The child: aiosmtpd on 127.0.0.1:PORT; answers "count" on stdin, stops at EOF."""
    from aiosmtpd.controller import Controller

    handler = CountingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            if line.strip() == "count":
                print(handler.messages, flush=True)
    finally:
        controller.stop()


class SmtpdProcess:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "smtpd", str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the aiosmtpd process did not start")

    def count(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# --- realistic confirmations ---------------------------------------------------------------

CANDIDATES = (
    ("Élodie Martin-Lefèvre", "Europe/Paris"),
    ("James O'Connor", "Europe/London"),
    ("Nguyễn Thị Hương", "Asia/Ho_Chi_Minh"),
    ("François Côté", "America/Toronto"),
    ("Aïssatou Diallo", "Africa/Dakar"),
    ("María José García", "Europe/Madrid"),
)
EVALUATORS = ("Claire Dubois", "Thomas Müller", "Sophie Laurent", "Daniel Smith")


def booking_mails(n: int, now: datetime) -> list[tuple[uuid.UUID, list[tuple[str, Any]]]]:
    """Bookings as `scheduler.notify.Notifier` sees them: (booking id, [(locale, mail)...]).

    Two mails per booking (candidate, evaluator), locales alternating fr/en from one message
    to the next, so n messages come from ceil(n / 2) bookings.
    """
    signer = LinkSigner(SECRET)
    policy = Policy()
    organisation = compose.Organisation(
        "Institut de langues de Lyon", "contact@ill.bench.example", "+33 4 72 00 00 00"
    )
    day0 = (now + timedelta(days=3)).replace(hour=8, minute=0, second=0, microsecond=0)
    bookings = []
    for i in range((n + 1) // 2):
        booking_id = uuid.uuid4()
        start = day0 + timedelta(days=i // 24, minutes=30 * (i % 24))
        name, zone = CANDIDATES[i % len(CANDIDATES)]
        evaluator = EVALUATORS[i % len(EVALUATORS)]
        candidate_id = uuid.uuid4()
        common = dict(
            booking_id=booking_id,
            sequence=0,
            start=start,
            end=start + timedelta(minutes=policy.interview_minutes),
            exam_language=LANGUAGES[i % len(LANGUAGES)],
            candidate_name=name,
            organisation=organisation,
        )
        room_nonce = new_nonce()
        candidate_mail = compose.BookingMail(
            **common,
            reader=compose.Reader(name, f"candidate{i}@bench.example", zone),
            role="candidate",
            room_url=f"{BASE_URL}/r/{signer.make(LinkKind.ROOM_CANDIDATE, booking_id, room_nonce)}",
            manage_url=f"{BASE_URL}/c/{signer.make(LinkKind.CANDIDATE, candidate_id, new_nonce())}",
            manage_until=lock_time(start, policy),
        )
        evaluator_mail = compose.BookingMail(
            **common,
            reader=compose.Reader(evaluator, f"evaluator{i % 200}@bench.example", "Europe/Paris"),
            role="evaluator",
            room_url=f"{BASE_URL}/r/{signer.make(LinkKind.ROOM_EVALUATOR, booking_id, room_nonce)}",
        )
        first, second = ("fr", "en") if i % 2 == 0 else ("en", "fr")
        bookings.append((booking_id, [(first, candidate_mail), (second, evaluator_mail)]))
    if n % 2:
        bookings[-1][1].pop()
    return bookings


def compose_all(
    bookings: list[tuple[uuid.UUID, list[tuple[str, Any]]]], now: datetime
) -> list[tuple[uuid.UUID, list[MailContent]]]:
    env = create_env()
    catalogs = Catalogs.load()
    return [
        (
            booking_id,
            [
                compose.booking_confirmed(env, catalogs.get(locale), locale, mail, now=now)
                for locale, mail in mails
            ],
        )
        for booking_id, mails in bookings
    ]


async def enqueue_all(
    db: Database,
    composed: list[tuple[uuid.UUID, list[MailContent]]],
    settings: SmtpSettings,
    organisation_id: uuid.UUID,
) -> None:
    """One transaction per booking, as the booking transaction writes its messages."""
    clock = SystemClock()
    for booking_id, contents in composed:
        async with db.write() as session:
            now = clock.now()
            for content in contents:
                await enqueue_content(
                    session,
                    content=content,
                    settings=settings,
                    organisation_id=organisation_id,
                    booking_id=booking_id,
                    now=now,
                )


async def pending_messages(db: Database) -> list[tuple[str, bytes]]:
    async with db.read() as session:
        query = (
            select(t.c.recipient, t.c.raw)
            .where(t.c.status == "pending")
            .order_by(t.c.created_at, t.c.id)
        )
        return [(recipient, raw) for recipient, raw in (await session.execute(query)).all()]


async def count_status(db: Database, status: str) -> int:
    async with db.read() as session:
        query = select(func.count()).select_from(t).where(t.c.status == status)
        return int((await session.execute(query)).scalar_one())


# --- the two senders -----------------------------------------------------------------------


async def bare_loop(port: int, messages: Sequence[tuple[str, bytes]]) -> float:
    """Seconds to send the messages over one connection with nothing else around."""
    started = time.perf_counter()
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
    await smtp.connect()
    for recipient, raw in messages:
        await smtp.sendmail(FROM_ADDRESS, [recipient], raw)
    await smtp.quit()
    return time.perf_counter() - started


async def drain(outbox: Outbox, n: int) -> float:
    """Seconds of `deliver_due()` passes until n messages are delivered."""
    started = time.perf_counter()
    sent = 0
    while sent < n:
        delivered = await outbox.deliver_due()
        if delivered == 0:
            raise RuntimeError(f"deliver_due() delivered nothing after {sent} of {n}")
        sent += delivered
    return time.perf_counter() - started


# --- profiling -----------------------------------------------------------------------------


class TimedOutbox(Outbox):
    """The real Outbox with a wall-clock stopwatch around each step of the delivery path."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    async def _timed(self, step: str, call: Awaitable[Any]) -> Any:
        started = time.perf_counter()
        try:
            return await call
        finally:
            self.seconds[step] += time.perf_counter() - started
            self.calls[step] += 1

    def _wrap(self, step: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Awaitable[Any]:
            return self._timed(step, method(*args, **kwargs))

        return wrapped

    async def _claim(self) -> list[Claimed]:
        result: list[Claimed] = await self._timed(
            "claim (UPDATE..RETURNING, 1 tx/pass)", super()._claim()
        )
        return result

    async def _still_ours(self, row: Claimed) -> bool:
        result: bool = await self._timed(
            "renew lease (_still_ours, 1 tx/msg)", super()._still_ours(row)
        )
        return result

    async def _finish(self, row: Claimed, **values: object) -> bool:
        result: bool = await self._timed(
            "record 'sent' (_finish, 1 tx/msg)", super()._finish(row, **values)
        )
        return result

    def _client(self) -> aiosmtplib.SMTP:
        smtp = super()._client()
        smtp.connect = self._wrap("SMTP connect + EHLO (1/pass)", smtp.connect)  # type: ignore[method-assign]
        smtp.sendmail = self._wrap("SMTP sendmail (1/msg)", smtp.sendmail)  # type: ignore[method-assign]
        smtp.quit = self._wrap("SMTP QUIT (1/pass)", smtp.quit)  # type: ignore[method-assign]
        return smtp


def where(filename: str, name: str) -> str:
    """A profiler entry as "package: function"; C functions keep their own name."""
    if filename == "~":
        if "poll" in name and "epoll" in name:
            return "idle: epoll.poll (waiting for SMTP / database answers)"
        return "C: " + name.replace("<built-in method ", "").replace("<method ", "").rstrip(">")
    parts = Path(filename).parts
    if "site-packages" in parts:
        package = parts[parts.index("site-packages") + 1]
    elif "mailer" in parts or "bench" in parts:
        package = "/".join(parts[-2:])
    else:
        package = "stdlib " + Path(filename).stem
    return f"{package}: {name}"


def package_of(filename: str, name: str) -> str:
    label = where(filename, name)
    return label if label.startswith(("idle", "C: ")) else label.split(":")[0].split("/")[0]


def cpu_report(profile: cProfile.Profile, n: int, top: int = 12) -> str:
    """Own time per package and the heaviest functions, per message."""
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]]
    raw = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    by_package: dict[str, float] = defaultdict(float)
    by_function: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for (filename, line, name), (_cc, calls, own, _cum, _callers) in raw.items():
        by_package[package_of(filename, name)] += own
        label = where(filename, name) + ("" if filename == "~" else f" (line {line})")
        by_function[label][0] += own
        by_function[label][1] += calls

    def share(seconds: float) -> list[str]:
        return [f"{seconds:.3f}", f"{1000 * seconds / n:.3f}", f"{100 * seconds / total:.0f} %"]

    packages = sorted(by_package.items(), key=lambda item: -item[1])[:top]
    functions = sorted(by_function.items(), key=lambda item: -item[1][0])[:top]
    return "\n".join(
        [
            f"cProfile (this process only; aiosqlite's worker thread is not seen), {total:.2f} s:",
            table(
                ["own time in", "s", "ms/msg", "share"],
                [[package, *share(seconds)] for package, seconds in packages],
            ),
            "",
            table(
                ["function", "calls", "s", "ms/msg", "share"],
                [[name, f"{calls:.0f}", *share(own)] for name, (own, calls) in functions],
            ),
        ]
    )


# --- one backend ---------------------------------------------------------------------------


@dataclass
class Result:
    row: list[str]
    report: str


async def reset(db: Database) -> None:
    """Every row due again, as freshly enqueued: the next round sends the same messages."""
    async with db.write() as session:
        await session.execute(
            update(t).values(
                status="pending",
                attempts=0,
                next_attempt_at=datetime.now(UTC),
                sent_at=None,
                last_error=None,
            )
        )


async def run(
    backend: str, n: int, batch_size: int, rounds: int, folder: Path, profile: bool
) -> Result:
    url = await fresh_database(backend, folder, name="viva_bench_mail")
    db = Database(url)
    smtpd = SmtpdProcess()
    report = ""
    try:
        await migrate(db)
        settings = SmtpSettings(
            host="127.0.0.1",
            port=smtpd.port,
            security="none",
            from_address=FROM_ADDRESS,
            batch_size=batch_size,
        )
        organisation_id = uuid.uuid4()
        now = datetime.now(UTC)

        started = time.perf_counter()
        composed = compose_all(booking_mails(n, now), now)
        compose_seconds = time.perf_counter() - started
        started = time.perf_counter()
        await enqueue_all(db, composed, settings, organisation_id)
        enqueue_seconds = time.perf_counter() - started
        messages = await pending_messages(db)
        assert len(messages) == n, f"{len(messages)} pending messages, expected {n}"

        bare_times, outbox_times = [], []
        for index in range(rounds):
            if index:
                await reset(db)
            expected = smtpd.count() + n
            bare_times.append(await bare_loop(smtpd.port, messages))
            assert smtpd.count() == expected, f"the server counted {smtpd.count()}, not {expected}"
            expected += n
            outbox = Outbox(db.writer_sessions, settings, SystemClock())
            outbox_times.append(await drain(outbox, n))
            assert smtpd.count() == expected, f"the server counted {smtpd.count()}, not {expected}"
            assert await count_status(db, "sent") == n, "every outbox row is marked 'sent'"

        if profile:
            report = await profile_delivery(db, smtpd, settings, n, min(bare_times))
    finally:
        smtpd.stop()
        await db.dispose()
    outbox_seconds, bare_seconds = min(outbox_times), min(bare_times)
    outbox_rate, bare_rate = n / outbox_seconds, n / bare_seconds
    spread = f"{n / max(outbox_times):.0f}–{outbox_rate:.0f}"
    return Result(
        [
            backend,
            str(n),
            f"{compose_seconds:.2f}",
            f"{enqueue_seconds:.2f}",
            f"{outbox_seconds:.2f}",
            f"{outbox_rate:.0f}",
            spread,
            f"{bare_rate:.0f}",
            f"{100 * outbox_rate / bare_rate:.0f} %",
        ],
        report,
    )


async def profile_delivery(
    db: Database, smtpd: SmtpdProcess, settings: SmtpSettings, n: int, bare_seconds: float
) -> str:
    backend = "sqlite" if db.sqlite else "postgresql"
    before = smtpd.count()
    await reset(db)
    timed = TimedOutbox(db.writer_sessions, settings, SystemClock())
    total = await drain(timed, n)
    assert smtpd.count() == before + n
    accounted = sum(timed.seconds.values())

    def cells(seconds: float) -> list[str]:
        return [f"{seconds:.3f}", f"{1000 * seconds / n:.3f}", f"{100 * seconds / total:.0f} %"]

    rows = [
        [step, str(timed.calls[step]), *cells(seconds)]
        for step, seconds in sorted(timed.seconds.items(), key=lambda item: -item[1])
    ]
    rows.append(["other (Python between the steps, logging)", "", *cells(total - accounted)])
    rows.append(["total", "", *cells(total)])
    rows.append(
        [
            "(best bare loop, for comparison)",
            str(n),
            f"{bare_seconds:.3f}",
            f"{1000 * bare_seconds / n:.3f}",
            "",
        ]
    )
    lines = [
        f"## profile: {backend}, batch_size={settings.batch_size}",
        "",
        "Wall clock of each step of Outbox.deliver_due (run without cProfile):",
        table(["step", "calls", "s", "ms/msg", "share"], rows),
        "",
    ]

    await reset(db)
    profiler = cProfile.Profile()
    profiler.enable()
    profiled = await drain(Outbox(db.writer_sessions, settings, SystemClock()), n)
    profiler.disable()
    assert smtpd.count() == before + 2 * n
    lines += [f"Under cProfile the same delivery took {profiled:.2f} s.", cpu_report(profiler, n)]
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=SmtpSettings().batch_size)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="bare loop and outbox alternated this many times; best one kept",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also break the outbox's delivery time down (wall clock, cProfile)",
    )
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            results.append(
                await run(
                    backend, args.messages, args.batch_size, args.rounds, Path(tmp), args.profile
                )
            )
    print(
        f"# mail: {args.messages} booking confirmations, Outbox.deliver_due "
        f"(batch_size={args.batch_size}) vs a bare aiosmtplib loop on one connection, "
        f"to aiosmtpd in its own process; best of {args.rounds} alternated rounds; "
        f"target ratio >= {TARGET:.0%}"
    )
    print(f"# machine: {machine()}; {datetime.now(UTC):%Y-%m-%d}")
    print(
        table(
            [
                "backend",
                "messages",
                "compose s",
                "enqueue s",
                "outbox s",
                "outbox msg/s",
                "outbox range",
                "bare msg/s",
                "ratio",
            ],
            [r.row for r in results],
        )
    )
    for result in results:
        if result.report:
            print()
            print(result.report)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "smtpd":
        smtpd_main(int(sys.argv[2]))
    else:
        asyncio.run(main())
