"""Mail leases: kept alive while a slow server answers, a send stopped when its lease is
lost, a restarted worker taking its own rows back at once, and lease time from PostgreSQL.

A real aiosmtpd server whose DATA reply waits for the test (a gate), two workers on one
database; the clock that leases are compared with is moved by hand, never slept.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailer.heartbeat import Claimed
from mailer.models import outbox_messages as t
from mailer.outbox import Outbox
from mailer.settings import SmtpSettings
from scheduler.leases import lease_clock
from tests.mailer.mailer_support import MovableClock, RecordingHandler, SmtpServer
from tests.mailer.test_outbox import enqueue_simple, received_ids
from tests.support.polling import eventually


class SlowHandler(RecordingHandler):
    """Answers DATA only once the test opens the gate: a server slower than anyone waits."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Event()
        self.gate = threading.Event()
        # Set when a client hangs up while its DATA waits: aiosmtpd then cancels the
        # handler, and that message is never kept.
        self.cut_off = threading.Event()

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        self.arrived.set()
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 30)
        except asyncio.CancelledError:
            self.cut_off.set()
            raise
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def slow_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.handler = SlowHandler()
    server.start()
    yield server
    server.handler.gate.set()
    server.stop()


@pytest.fixture
def slow_settings(smtp_settings: SmtpSettings, slow_server: SmtpServer) -> SmtpSettings:
    # A short lease (its heartbeat every 0.2 s), a timeout far longer than the test.
    return smtp_settings.model_copy(
        update={"port": slow_server.port, "lease_seconds": 0.6, "timeout": 60}
    )


async def _row(sessions: async_sessionmaker[AsyncSession], row_id: uuid.UUID) -> dict:
    async with sessions() as session:
        found = (await session.execute(select(t).where(t.c.id == row_id))).mappings().one()
    return dict(found)


async def test_a_slow_server_is_sent_each_message_once_while_the_lease_is_kept(
    mail_sessions, slow_settings, slow_server, clock: MovableClock
) -> None:
    (row_id,) = await enqueue_simple(mail_sessions, clock, ["zoe@example.test"])
    first = Outbox(mail_sessions, slow_settings, clock)
    sending = asyncio.create_task(first.deliver_due())
    handler: SlowHandler = slow_server.handler  # type: ignore[assignment]
    await eventually(handler.arrived.is_set, "the DATA to arrive")

    # Far past the claim's lease by the clock leases are compared with: without a
    # heartbeat another worker would take the message and send it again.
    clock.advance(timedelta(seconds=120))

    async def renewed() -> bool:
        return (await _row(mail_sessions, row_id))["next_attempt_at"] > clock.now()

    await eventually(renewed, "the heartbeat to extend the lease")
    other = Outbox(mail_sessions, slow_settings, clock)
    assert await other.deliver_due() == 0

    handler.gate.set()
    assert await sending == 1
    assert received_ids(slow_server) == [f"<{row_id}@viva.example.test>"]
    assert (await _row(mail_sessions, row_id))["status"] == "sent"


async def test_a_send_whose_lease_is_lost_is_stopped_at_once(
    mail_sessions, slow_settings, slow_server, clock: MovableClock
) -> None:
    (row_id,) = await enqueue_simple(mail_sessions, clock, ["zoe@example.test"])
    lost: list[int] = []
    first = Outbox(mail_sessions, slow_settings, clock, on_lease_lost=lambda: lost.append(1))
    sending = asyncio.create_task(first.deliver_due())
    handler: SlowHandler = slow_server.handler  # type: ignore[assignment]
    await eventually(handler.arrived.is_set, "the DATA to arrive")
    # Another worker takes the row over (what its claim does once a lease has ended).
    async with mail_sessions() as session, session.begin():
        await session.execute(
            update(t).where(t.c.id == row_id).values(claimed_by="elsewhere:1 x", attempts=2)
        )
    # The server still has not answered, and the send is stopped anyway.
    async with asyncio.timeout(20):
        assert await sending == 0
    assert not handler.gate.is_set()
    assert lost == [1]
    row = await _row(mail_sessions, row_id)
    assert (row["status"], row["claimed_by"]) == ("sending", "elsewhere:1 x")  # untouched


async def test_a_renewal_that_never_answers_stops_the_send_before_the_lease_ends(
    mail_sessions, slow_settings, slow_server, clock: MovableClock
) -> None:
    (row_id,) = await enqueue_simple(mail_sessions, clock, ["zoe@example.test"])
    loop = asyncio.get_running_loop()
    lost_at: list[float] = []
    # A longer lease than the other tests': the stop comes at nine tenths of it, and a loaded
    # machine must not make a late but correct stop look like one after the lease ended.
    slow_settings = slow_settings.model_copy(update={"lease_seconds": 3.0})
    first = Outbox(
        mail_sessions, slow_settings, clock, on_lease_lost=lambda: lost_at.append(loop.time())
    )
    real_renew = first._renew
    renewed_from: list[float] = []

    async def renew(rows: Sequence[Claimed]) -> set[uuid.UUID]:
        if renewed_from:
            await asyncio.Event().wait()  # the database stops answering (half-open TCP)
        renewed_from.append(loop.time())  # the lease runs at least a lease from here
        return await real_renew(rows)

    first._renew = renew  # type: ignore[method-assign]
    sending = asyncio.create_task(first.deliver_due())
    handler: SlowHandler = slow_server.handler  # type: ignore[assignment]
    await eventually(handler.arrived.is_set, "the DATA to arrive")

    # The server never answers and no renewal after the first ever returns: the send is
    # stopped anyway, before the one lease the first renewal vouched for has ended.
    async with asyncio.timeout(20):
        assert await sending == 0
    assert len(lost_at) == 1
    assert lost_at[0] < renewed_from[0] + slow_settings.lease_seconds
    assert not handler.gate.is_set()
    assert (await _row(mail_sessions, row_id))["status"] == "sending"  # left for the next claim

    # Once the lease has ended another worker sends the message: the server has it once.
    await eventually(handler.cut_off.is_set, "the server to see the cut-off send")
    clock.advance(timedelta(seconds=10))
    handler.gate.set()
    assert await Outbox(mail_sessions, slow_settings, clock).deliver_due() == 1
    assert received_ids(slow_server) == [f"<{row_id}@viva.example.test>"]
    assert (await _row(mail_sessions, row_id))["status"] == "sent"


async def test_a_message_just_recorded_failed_is_not_taken_for_a_lost_lease(
    mail_sessions, smtp_settings, smtp_server, clock: MovableClock
) -> None:
    (row_id,) = await enqueue_simple(mail_sessions, clock, ["nobody@example.test"])
    smtp_server.handler.rcpt_reply = "550 5.1.1 No such user"
    settings = smtp_settings.model_copy(update={"lease_seconds": 0.6})  # renewed every 0.2 s
    failed: list[int] = []
    lost: list[int] = []
    outbox = Outbox(
        mail_sessions,
        settings,
        clock,
        on_failed=lambda: failed.append(1),
        on_lease_lost=lambda: lost.append(1),
    )
    recorded = asyncio.Event()  # the failure is committed (the row no longer 'sending')
    renewed = asyncio.Event()  # a renewal begun after that has returned
    real_renew, real_finish = outbox._renew, outbox._finish

    async def renew(rows: Sequence[Claimed]) -> set[uuid.UUID]:
        after = recorded.is_set()
        ours = await real_renew(rows)
        if after:
            renewed.set()
        return ours

    async def finish(row: Claimed, **values: object) -> bool:
        done = await real_finish(row, **values)
        recorded.set()
        # The rest of recording it (the session handed back, the metric, the log line) is
        # still to come when the heartbeat's next renewal finds the row recorded.
        async with asyncio.timeout(20):
            await renewed.wait()
        return done

    outbox._renew = renew  # type: ignore[method-assign]
    outbox._finish = finish  # type: ignore[method-assign]
    assert await outbox.deliver_due() == 0
    row = await _row(mail_sessions, row_id)
    assert (row["status"], row["claimed_by"]) == ("failed", None)
    assert row["last_error"].startswith("550 ")
    assert failed == [1]  # counted as a failure
    assert lost == []  # not as a lease lost


async def test_a_restarted_worker_takes_its_own_rows_back_at_once(
    mail_sessions, smtp_settings, smtp_server, clock: MovableClock
) -> None:
    mine, theirs = await enqueue_simple(mail_sessions, clock, ["a@example.test", "b@example.test"])
    settings = smtp_settings.model_copy(update={"batch_size": 1})
    crashed = Outbox(mail_sessions, settings, clock, owner="host-a:8080")
    other = Outbox(mail_sessions, settings, clock, owner="host-b:8080")
    assert [row.id for row in await crashed._claim()] == [mine]  # then the process died
    assert [row.id for row in await other._claim()] == [theirs]  # alive, still sending

    restarted = Outbox(mail_sessions, settings, clock, owner="host-a:8080")
    assert await restarted.reclaim_own() == 1
    assert await restarted.deliver_due() == 1  # no wait for the lease (the clock never moved)
    assert received_ids(smtp_server) == [f"<{mine}@viva.example.test>"]
    assert (await _row(mail_sessions, theirs))["status"] == "sending"  # another's: left alone


async def test_on_postgresql_leases_are_compared_with_the_database_clock(
    mail_sessions, smtp_settings, clock: MovableClock, mail_db_url: str
) -> None:
    if mail_db_url.startswith("sqlite"):
        pytest.skip("SQLite is one machine: its processes share one clock")
    (row_id,) = await enqueue_simple(mail_sessions, clock, ["zoe@example.test"])
    holder = Outbox(mail_sessions, smtp_settings, clock, lease_now=lease_clock(False, clock))
    assert [row.id for row in await holder._claim()] == [row_id]

    # A host whose clock runs an hour ahead of the real time (and of the database's): by its
    # own clock the 300 s lease has ended.
    ahead = MovableClock(datetime.now(UTC) + timedelta(hours=1))
    naive = Outbox(mail_sessions, smtp_settings, ahead)
    fair = Outbox(mail_sessions, smtp_settings, ahead, lease_now=lease_clock(False, ahead))
    assert await fair._claim() == []  # the database's clock says the lease is live
    assert [row.id for row in await naive._claim()] == [row_id]  # what happened before
