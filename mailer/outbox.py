"""The durable outbox: messages written with the booking change, delivered afterwards.

Writing and reading the rows (`enqueue`, `list_messages`, `requeue`…) is `mailer.store`'s;
those names are importable from here too.

Delivering: `Outbox.deliver_due` claims due rows with one atomic UPDATE (safe with several
processes on one PostgreSQL: `FOR UPDATE SKIP LOCKED` plus a re-checked WHERE), sends them
over one SMTP connection, and records each outcome in its own short transaction right after
the server's answer (an accepted message's 'sent' while the next one is on the wire, so at
most one record is in flight). Transient failures (no connection, timeouts, 4xx) go back to
'pending' with exponential backoff; permanent ones (5xx for that message) become 'failed'
with the server's answer. A 'sent' that cannot be recorded (a database error) stops the
batch: nothing more is sent, that record and the one of the message accepted meanwhile are
tried once more, the rows not tried are given back, and the SMTP session is closed.

Delivery is at least once, as with any SMTP client: a crash after the server accepted a
message but before 'sent' is committed makes it go again once the lease expires, and so does
an accepted message whose 'sent' the database refused twice. Either way at most the last two
accepted messages of a batch; the Message-ID is the same on the retry, so clients can
de-duplicate.

Leases: a claim leases its rows to one worker (`claimed_by`: the worker's owner name and a
token unique to the claim, which fences every later write) for `lease_seconds`, kept short.
While a batch is being sent a heartbeat extends the lease every third of it; a send whose
lease cannot be extended (another worker took the row over, or no renewal has succeeded for
nine tenths of a lease) is stopped at once, so no message is ever on the wire without a live
lease. Each renewal is bounded by the time the lease can still be vouched for, so a database
that hangs rather than fails stops the send too. A worker restarting under the same owner
name (host and port) takes back its previous incarnation's rows at once (`reclaim_own`)
instead of waiting for their leases to end. Lease instants come from `lease_now` (the
database's clock on PostgreSQL, so hosts whose clocks disagree still agree on who holds a
lease); retry times come from the injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

import aiosmtplib
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailer.failures import (
    FailedMessage,
    OnFailedInTransaction,
    describe,
    is_permanent,
    without_address,
)
from mailer.heartbeat import Claimed, ConnectionLost, Heartbeat, LeaseLost
from mailer.models import outbox_messages as t
from mailer.primitives import Clock
from mailer.settings import SmtpSettings

# Written and read in mailer.store; importable from here as well, where callers found them.
from mailer.store import (
    StoredMessage,
    booking_messages,
    enqueue,
    enqueue_content,
    get_message,
    list_messages,
    requeue,
    require_aware,
    rows_changed,
)

__all__ = [
    "Clock",
    "FailedMessage",
    "LeaseNow",
    "OnFailedInTransaction",
    "Outbox",
    "StoredMessage",
    "booking_messages",
    "enqueue",
    "enqueue_content",
    "get_message",
    "list_messages",
    "requeue",
]

logger = logging.getLogger("viva.mailer")


# The instant lease expiry is compared with, read in the given session's transaction.
LeaseNow = Callable[[AsyncSession], Awaitable[datetime]]


# --- delivering ------------------------------------------------------------------------------


class Outbox:
    """The delivery worker. Several may run, in one process or many, on one database."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: SmtpSettings,
        clock: Clock,
        *,
        owner: str | None = None,
        lease_now: LeaseNow | None = None,
        on_failed: Callable[[], None] | None = None,
        on_lease_lost: Callable[[], None] | None = None,
        on_failed_in_transaction: OnFailedInTransaction | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._clock = clock
        # Who this worker is across restarts (the app: host and port); its claims carry it.
        self.owner = (owner or f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}")[:250]
        self._lease_now = lease_now
        self._on_failed = on_failed
        self._on_lease_lost = on_lease_lost
        self._on_failed_in_transaction = on_failed_in_transaction

    async def _lease_time(self, session: AsyncSession) -> datetime:
        return await self._lease_now(session) if self._lease_now is not None else self._now()

    def _lease(self) -> timedelta:
        return timedelta(seconds=self._settings.lease_seconds)

    def _now(self) -> datetime:
        now = self._clock.now()
        require_aware(now, "clock.now()")
        return now

    # -- state changes, each in its own short transaction ------------------------------

    async def _claim(self) -> list[Claimed]:
        """Take up to batch_size due rows, atomically, and lease them to this worker.

        Due means 'pending' whose time has come, or 'sending' whose lease has expired (its
        worker died). The WHERE is repeated outside the subquery on purpose: under
        PostgreSQL's READ COMMITTED a concurrent claimer re-evaluates it on the updated
        row and skips it, and SKIP LOCKED lets it take other rows instead of waiting.
        """
        now = self._now()
        token = f"{self.owner} {uuid.uuid4().hex}"
        async with self._sessionmaker() as session, session.begin():
            lease_now = await self._lease_time(session)
            due = or_(
                and_(t.c.status == "pending", t.c.next_attempt_at <= now),
                and_(t.c.status == "sending", t.c.next_attempt_at <= lease_now),
            )
            candidates = (
                select(t.c.id)
                .where(due)
                .order_by(t.c.next_attempt_at, t.c.created_at)
                .limit(self._settings.batch_size)
                .with_for_update(skip_locked=True)
                # Materialised, so it runs once: as a plain `IN (subquery)` PostgreSQL may
                # rescan it per row, and the LIMIT then no longer bounds the claim.
                .cte("chosen")
                .prefix_with("MATERIALIZED", dialect="postgresql")
            )
            statement = (
                update(t)
                .where(t.c.id.in_(select(candidates.c.id)), due)
                .values(
                    status="sending",
                    attempts=t.c.attempts + 1,
                    next_attempt_at=lease_now + self._lease(),
                    claimed_by=token,
                )
                .returning(
                    t.c.id,
                    t.c.recipient,
                    t.c.message_id,
                    t.c.raw,
                    t.c.attempts,
                    t.c.created_at,
                    t.c.organisation_id,
                    t.c.booking_id,
                    t.c.kind,
                )
            )
            rows = [(*row, token) for row in (await session.execute(statement)).all()]
        claimed = [Claimed(*row) for row in rows]
        claimed.sort(key=lambda row: (row.created_at, row.id))
        return claimed

    async def _renew(self, rows: Sequence[Claimed]) -> set[uuid.UUID]:
        """Extend the lease of these rows in one statement; return the ids still ours.

        The claim's token (`claimed_by`) fences: a worker that claimed a row after our lease
        expired has replaced it, and then we must not send (nor record) anything.
        """
        if not rows:
            return set()
        ours = or_(*(and_(t.c.id == row.id, t.c.claimed_by == row.token) for row in rows))
        async with self._sessionmaker() as session, session.begin():
            lease_now = await self._lease_time(session)
            result = await session.execute(
                update(t)
                .where(t.c.status == "sending", ours)
                .values(next_attempt_at=lease_now + self._lease())
                .returning(t.c.id)
            )
            return set(result.scalars())

    async def reclaim_own(self) -> int:
        """At start-up: this owner's rows still 'sending' were left by its previous run
        (which crashed); make them due now instead of waiting for their leases to end.
        Their attempt was counted; the one message that may have been accepted just before
        the crash goes again (at least once)."""
        async with self._sessionmaker() as session, session.begin():
            result = await session.execute(
                update(t)
                .where(
                    t.c.status == "sending",
                    t.c.claimed_by.startswith(f"{self.owner} ", autoescape=True),
                )
                .values(status="pending", next_attempt_at=self._now(), claimed_by=None)
            )
        count = rows_changed(result)
        if count:
            logger.warning(
                "mail: took back %d messages this worker was sending when it stopped", count
            )
        return count

    async def _finish(self, row: Claimed, **values: object) -> bool:
        """Record an outcome, unless another worker has taken the row over meanwhile. A
        failure for good is told to `on_failed_in_transaction` in the same transaction."""
        async with self._sessionmaker() as session, session.begin():
            result = await session.execute(
                update(t)
                .where(t.c.id == row.id, t.c.status == "sending", t.c.claimed_by == row.token)
                .values(claimed_by=None, **values)
            )
            recorded = rows_changed(result) == 1
            hook = self._on_failed_in_transaction
            if recorded and values.get("status") == "failed" and hook is not None:
                error = without_address(str(values.get("last_error") or ""), row.recipient)
                failed = FailedMessage(
                    row.id,
                    row.organisation_id,
                    row.booking_id,
                    row.kind,
                    row.attempts,
                    error,
                    self._now(),
                )
                await hook(session, failed)
        return recorded

    async def _mark_sent(self, row: Claimed, how: str) -> bool:
        recorded = await self._finish(row, status="sent", sent_at=self._now(), last_error=None)
        logger.info(
            "mail %s: message_id=%s",
            how,
            row.message_id,
            extra={"message_id": row.message_id},
        )
        return recorded

    async def _keep(self, rows: Sequence[Claimed]) -> int:
        """Dev mode: the claimed rows are delivered to the local mailbox, all recorded in one
        statement (they share the claim's token); returns how many were still ours."""
        async with self._sessionmaker() as session, session.begin():
            result = await session.execute(
                update(t)
                .where(t.c.status == "sending", t.c.claimed_by == rows[0].token)
                .values(claimed_by=None, status="sent", sent_at=self._now(), last_error=None)
            )
        for row in rows:
            logger.info(
                "mail kept in the dev mailbox: message_id=%s",
                row.message_id,
                extra={"message_id": row.message_id},
            )
        return rows_changed(result)

    async def _mark_failed(self, row: Claimed, error: str) -> None:
        if not await self._finish(row, status="failed", last_error=error):
            return  # another worker has it: its outcome is the one that counts
        if self._on_failed is not None:
            self._on_failed()
        logger.error(
            "mail failed for good: message_id=%s attempts=%d error=%s",
            row.message_id,
            row.attempts,
            without_address(error, row.recipient),
            extra={"message_id": row.message_id},
        )

    async def _retry_later(self, row: Claimed, error: str) -> None:
        if row.attempts >= self._settings.max_attempts:
            await self._mark_failed(row, f"gave up after {row.attempts} attempts: {error}")
            return
        delay = timedelta(seconds=self._settings.backoff_seconds(row.attempts))
        retry_at = self._now() + delay
        await self._finish(row, status="pending", next_attempt_at=retry_at, last_error=error)
        logger.warning(
            "mail delayed: message_id=%s attempt=%d retry_at=%s error=%s",
            row.message_id,
            row.attempts,
            retry_at.isoformat(),
            without_address(error, row.recipient),
            extra={"message_id": row.message_id},
        )

    # -- SMTP ------------------------------------------------------------------------------

    def _client(self) -> aiosmtplib.SMTP:
        s = self._settings
        return aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username or None,
            password=s.password or None,
            timeout=s.timeout,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
        )

    async def _send_one(self, smtp: aiosmtplib.SMTP, row: Claimed) -> Exception | None:
        """Put one row on the wire: None if the server accepted it, else why not.

        Nothing is recorded here: this is the part the heartbeat covers (and stops when the
        lease is lost); the caller records the outcome once the heartbeat no longer answers
        for the row, so a row it has just recorded is never taken for one taken over.
        """
        if not row.raw:
            # Nothing to send: a body that could not be opened (sealed under another secret
            # key) never goes out empty; it fails for good, and can be sent again re-issued.
            return ValueError("the stored message cannot be read")
        try:
            await smtp.sendmail(self._settings.from_address, [row.recipient], row.raw)
        except (aiosmtplib.SMTPException, ValueError, OSError) as exc:
            return exc
        return None

    async def _record_refusal(self, smtp: aiosmtplib.SMTP, row: Claimed, exc: Exception) -> None:
        """Record a send the server did not accept.

        Raises ConnectionLost when the session is no longer usable.
        """
        lost = aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPTimeoutError | OSError
        if isinstance(exc, lost):
            # The server may or may not have the message; only an answer would tell. Retrying
            # is the safe side: a duplicate with the same Message-ID beats a lost invitation.
            await self._retry_later(row, describe(exc))
            raise ConnectionLost(describe(exc)) from exc
        if is_permanent(exc):
            await self._mark_failed(row, describe(exc))
        else:
            await self._retry_later(row, describe(exc))
        if not smtp.is_connected:  # e.g. 421: the server closed the session
            raise ConnectionLost(describe(exc)) from exc

    async def _deliver_over_smtp(self, rows: Sequence[Claimed]) -> int:
        smtp = self._client()
        try:
            await smtp.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            error = f"cannot connect to {self._settings.host}:{self._settings.port}: "
            error += describe(exc)
            for row in rows:
                await self._retry_later(row, error)
            return 0
        try:
            return await self._send_batch(smtp, rows)
        finally:
            # Whatever ended the batch (done, a lease lost, a database error), the session
            # ends here.
            if smtp.is_connected:
                with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                    # The messages are recorded already; a failing QUIT changes nothing.
                    await smtp.quit()
            smtp.close()

    async def _send_batch(self, smtp: aiosmtplib.SMTP, rows: Sequence[Claimed]) -> int:
        """Send the claimed rows over a connected session; returns how many it accepted.

        Each accepted message's "sent" is recorded while the next one is on the wire: at most
        one record is in flight, so a crash can resend at most the last two accepted messages
        (never more), and the SMTP and database round trips overlap. A record that fails (a
        database error) stops the batch: nothing more is sent; the failed record and that of
        the message accepted meanwhile are tried once more before the pass ends, and the rows
        not tried yet are given back. If the database fails that second time too, the pass
        raises and those (at most the same two) go again once their lease ends.
        """
        # The claim may be old (a slow connect): check the rows are still ours first. Then a
        # heartbeat keeps the lease alive for as long as the batch takes.
        beat = Heartbeat(rows, self._settings.lease_seconds)
        await self._renew_in_time(beat)
        keeper = asyncio.ensure_future(self._keep_lease(beat))
        sent = 0
        recording: tuple[Claimed, asyncio.Task[Exception | None]] | None = None
        unrecorded: list[Claimed] = []  # accepted, "sent" not recorded
        failure: Exception | None = None  # the first record that failed
        untried: Sequence[Claimed] = ()  # given back when a failed record stops the batch
        try:
            for index, row in enumerate(rows):
                beat.index = index
                if beat.lost is not None:
                    raise LeaseLost(beat.lost)
                if row.id not in beat.ours:
                    continue
                beat.current = row.id
                beat.sending = asyncio.ensure_future(self._send_one(smtp, row))
                try:
                    refused = await beat.sending
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if beat.lost is None or (current is not None and current.cancelling()):
                        raise  # we are being cancelled ourselves
                    raise LeaseLost(beat.lost) from None
                finally:
                    # Off the wire: the row's outcome is recorded next, and a renewal that
                    # then misses it must not take it for a row another worker took over.
                    beat.current = beat.sending = None
                if refused is not None:
                    try:
                        await self._record_refusal(smtp, row, refused)
                    except ConnectionLost as exc:
                        for rest in rows[index + 1 :]:
                            await self._retry_later(rest, f"connection lost during batch: {exc}")
                        break
                if recording is not None:
                    previous, task = recording
                    recording = None
                    if (error := await task) is not None:
                        failure = error
                        unrecorded.append(previous)
                if refused is None:
                    sent += 1
                    if failure is None:
                        recording = row, asyncio.ensure_future(self._try_mark_sent(row))
                    else:
                        unrecorded.append(row)
                if failure is not None:
                    untried = rows[index + 1 :]
                    break
        except LeaseLost as lost:
            # The message on the wire was cut off (the server may or may not have it); the
            # lease's new holder, or the next claim once it ends, sends what is left.
            if self._on_lease_lost is not None:
                self._on_lease_lost()
            logger.error("mail: stopped sending a batch whose lease was lost: %s", lost)
            smtp.close()
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            if recording is not None:
                previous, task = recording
                if (error := await task) is not None:
                    failure = failure or error
                    unrecorded.append(previous)
            # A second chance for what the server accepted: a database blip is often over.
            unrecorded = [row for row in unrecorded if await self._try_mark_sent(row)]
            if untried:
                await self._give_back(untried)
        if failure is not None and unrecorded:
            for row in unrecorded:
                logger.error(
                    "mail accepted but not recorded as sent; it goes again once its lease "
                    "ends: message_id=%s",
                    row.message_id,
                    extra={"message_id": row.message_id},
                )
            raise failure
        return sent

    async def _try_mark_sent(self, row: Claimed) -> Exception | None:
        """Record an accepted message as sent; the error if the database failed."""
        try:
            await self._mark_sent(row, "sent")
        except Exception as exc:
            logger.warning(
                "mail accepted, could not record it as sent: message_id=%s error=%s",
                row.message_id,
                describe(exc),
                extra={"message_id": row.message_id},
            )
            return exc
        return None

    async def _give_back(self, rows: Sequence[Claimed]) -> None:
        """Rows of a stopped batch that were never tried go back to 'pending', due at once
        and their claim's attempt uncounted; if the database fails here too, they wait for
        their lease to end."""
        ours = or_(*(and_(t.c.id == row.id, t.c.claimed_by == row.token) for row in rows))
        try:
            async with self._sessionmaker() as session, session.begin():
                await session.execute(
                    update(t)
                    .where(t.c.status == "sending", ours)
                    .values(
                        status="pending",
                        next_attempt_at=self._now(),
                        attempts=t.c.attempts - 1,
                        claimed_by=None,
                    )
                )
        except Exception as exc:
            logger.warning(
                "mail: %d messages not tried wait for their lease: %s", len(rows), describe(exc)
            )

    async def _renew_in_time(self, beat: Heartbeat) -> None:
        """Extend the lease of what is left of the batch, bounded by the time the lease can
        still be vouched for: a renewal that just waits (a half-open connection, a pool whose
        own timeout is longer than the lease) raises TimeoutError once that time is up,
        rather than letting the lease lapse under a send. The instant is taken before the
        renewal, the safe side: the new lease runs at least a lease from it."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(max(beat.vouched_until() - started, 0.001)):
            ours = await self._renew(beat.rows[beat.index :])
        beat.ours = ours
        beat.renewed_at = started

    async def _keep_lease(self, beat: Heartbeat) -> None:
        """Extend the batch's lease every third of it until cancelled. A row found taken
        over stops its send; so does a renewal that has not succeeded by the time the lease
        may end, whether the database failed or never answered (the lease can no longer be
        vouched for)."""
        loop = asyncio.get_running_loop()
        interval = self._settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self._renew_in_time(beat)
            except Exception as exc:
                why = "no answer in time" if isinstance(exc, TimeoutError) else describe(exc)
                logger.warning("mail: could not extend the lease: %s", why)
                if loop.time() + interval >= beat.vouched_until():
                    beat.lose(f"the lease could not be extended: {why}")
                    return
                continue
            if beat.current is not None and beat.current not in beat.ours:
                beat.lose("another worker took the message over")
                return

    async def deliver_due(self) -> int:
        """One delivery pass over the due messages; returns how many were delivered.

        Without an SMTP host (development) the messages are not sent anywhere: they are
        marked delivered and stay readable in the local mailbox (`list_messages`).
        """
        _claimed, delivered = await self._pass()
        return delivered

    async def _pass(self) -> tuple[int, int]:
        rows = await self._claim()
        if not rows:
            return 0, 0
        if not self._settings.host:
            return len(rows), await self._keep(rows)
        return len(rows), await self._deliver_over_smtp(rows)

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Deliver until `stop` is set; sleep between passes until `wake` or the poll interval.

        The app sets `wake` after committing a booking, so a confirmation leaves at once;
        the poll interval catches retries whose backoff has elapsed. A full batch means more
        may be waiting, so the next pass starts without sleeping. A failing pass (database
        unreachable, say) is logged with its traceback and retried after the interval.
        """
        while not stop.is_set():
            wake.clear()
            claimed = 0
            try:
                claimed, _delivered = await self._pass()
            except Exception:
                logger.exception("mail delivery pass failed")
            if claimed >= self._settings.batch_size:
                continue
            waiters = {
                asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(wake.wait()),
            }
            try:
                await asyncio.wait(
                    waiters,
                    timeout=self._settings.poll_interval_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                for waiter in waiters:
                    waiter.cancel()
                await asyncio.gather(*waiters, return_exceptions=True)
            if wake.is_set() and self._settings.linger_seconds > 0:
                # Woken by a commit: the rest of a burst is likely a few milliseconds behind.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._settings.linger_seconds)
