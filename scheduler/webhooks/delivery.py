"""The webhook delivery worker: claims due deliveries, signs them, posts them, records.

Like the mail outbox (mailer.outbox): one atomic UPDATE claims due rows and leases them to
this worker (`claimed_by`: owner name and a token unique to the claim, which fences every
later write; PostgreSQL's `FOR UPDATE SKIP LOCKED` lets several processes claim side by
side); lease instants come from `lease_now` (the database's clock on PostgreSQL), retry
times from the injected clock. A lease outlasts its request (`[webhooks] lease_seconds` is
at least twice the timeout, checked by the settings), so no heartbeat is needed: no
delivery is on the wire without a live lease, and none is sent twice under normal
operation. A crash between the receiver's answer and its record sends it again once the
lease ends: at least once, with the same `webhook-id`, so receivers can de-duplicate.

In order per booking: a delivery is due only when no earlier one of its booking to the same
endpoint (`position`) is still pending or being sent, so at most one of a booking's
deliveries per endpoint is in flight, and the next waits until it is delivered or has
failed for good.

Each attempt: the URL is checked again (scheme, literal address), the host resolved by a
resolver that refuses non-public addresses (scheduler.webhooks.targets), one POST with a
bounded timeout, no redirect followed, at most `max_response_bytes` of the answer read. A
2xx answer delivers; anything else is retried with exponential backoff until the
delivery's retry window (a day) ends, then it is marked failed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp
from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from mailer.store import rows_changed
from scheduler.clock import Clock
from scheduler.config import WebhookSettings
from scheduler.models import WebhookDelivery, WebhookEndpoint
from scheduler.webhooks.secrets import SecretBox, signature_header
from scheduler.webhooks.targets import GuardedResolver, Refused, check_url

__all__ = ["Deliverer", "Outcome"]

log = logging.getLogger("viva.webhooks")

LeaseNow = Callable[[AsyncSession], Awaitable[datetime]]
Outcome = Callable[[str], None]  # told "delivered", "retry" or "failed"

_D = WebhookDelivery.__table__
_E = WebhookEndpoint.__table__
SHOWN_RESPONSE = 1000  # characters of an answer kept for the organisation to read
USER_AGENT = "Viva-Webhooks/1"


@dataclass(frozen=True)
class _Claimed:
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_type: str
    payload: str
    attempts: int
    created_at: datetime
    retry_until: datetime | None
    token: str


@dataclass(frozen=True)
class _Answer:
    status: int | None
    error: str | None
    body: str | None


class Deliverer:
    """Several may run, in one process or many, on one database."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: WebhookSettings,
        clock: Clock,
        secrets: SecretBox,
        *,
        dev_mode: bool,
        signing_clock: Clock,
        owner: str | None = None,
        lease_now: LeaseNow | None = None,
        on_outcome: Outcome | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._clock = clock
        # The webhook-timestamp is compared by the receiver with its own wall clock to
        # refuse replays: it is the real instant of sending, whatever the domain's clock.
        self._signing_clock = signing_clock
        self._secrets = secrets
        self._dev_mode = dev_mode
        self._allow_private = dev_mode or settings.allow_private_targets
        self.owner = (owner or f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}")[:250]
        self._lease_now = lease_now
        self._on_outcome = on_outcome
        self._http: aiohttp.ClientSession | None = None

    async def _lease_time(self, session: AsyncSession) -> datetime:
        return await self._lease_now(session) if self._lease_now is not None else self._clock.now()

    # -- claims ------------------------------------------------------------------------

    async def _claim(self) -> list[_Claimed]:
        """Lease up to batch_size due deliveries: pending and due, or sending with an ended
        lease; and first of their booking's chain to their endpoint. The WHERE is repeated
        outside the subquery so that a concurrent claimer re-checks it (READ COMMITTED)."""
        now = self._clock.now()
        token = f"{self.owner} {uuid.uuid4().hex}"
        earlier = aliased(WebhookDelivery)
        async with self._sessionmaker() as session, session.begin():
            lease_now = await self._lease_time(session)
            blocked = exists().where(
                earlier.endpoint_id == _D.c.endpoint_id,
                earlier.booking_id == _D.c.booking_id,
                earlier.status.in_(("pending", "sending")),
                or_(
                    earlier.position < _D.c.position,
                    and_(earlier.position == _D.c.position, earlier.id < _D.c.id),
                ),
            )
            due = and_(
                or_(
                    and_(_D.c.status == "pending", _D.c.next_attempt_at <= now),
                    and_(_D.c.status == "sending", _D.c.next_attempt_at <= lease_now),
                ),
                or_(_D.c.booking_id.is_(None), ~blocked),
            )
            chosen = (
                select(_D.c.id)
                .where(due)
                .order_by(_D.c.next_attempt_at, _D.c.created_at, _D.c.position)
                .limit(self._settings.batch_size)
                .with_for_update(skip_locked=True, of=_D)
                .cte("chosen")
                .prefix_with("MATERIALIZED", dialect="postgresql")
            )
            lease = timedelta(seconds=self._settings.lease_seconds)
            result = await session.execute(
                update(_D)
                .where(_D.c.id.in_(select(chosen.c.id)), due)
                .values(
                    status="sending",
                    attempts=_D.c.attempts + 1,
                    next_attempt_at=lease_now + lease,
                    claimed_by=token,
                )
                .returning(
                    _D.c.id,
                    _D.c.endpoint_id,
                    _D.c.event_type,
                    _D.c.payload,
                    _D.c.attempts,
                    _D.c.created_at,
                    _D.c.retry_until,
                )
            )
            return [_Claimed(**row, token=token) for row in result.mappings().all()]

    async def _finish(self, row: _Claimed, **values: object) -> bool:
        """Record an outcome, unless the row was taken over (its lease ended) meanwhile."""
        async with self._sessionmaker() as session, session.begin():
            result = await session.execute(
                update(_D)
                .where(_D.c.id == row.id, _D.c.status == "sending", _D.c.claimed_by == row.token)
                .values(claimed_by=None, **values)
            )
        return rows_changed(result) == 1

    async def reclaim_own(self) -> int:
        """At start-up: this owner's rows left 'sending' by a crash are due again now."""
        async with self._sessionmaker() as session, session.begin():
            result = await session.execute(
                update(_D)
                .where(
                    _D.c.status == "sending",
                    _D.c.claimed_by.startswith(f"{self.owner} ", autoescape=True),
                )
                .values(status="pending", next_attempt_at=self._clock.now(), claimed_by=None)
            )
        return rows_changed(result)

    # -- one attempt -------------------------------------------------------------------

    async def _endpoint(self, endpoint_id: uuid.UUID) -> tuple[str, list[str], bool] | None:
        """(url, the secrets that sign now, enabled), or None if it was deleted."""
        async with self._sessionmaker() as session:
            row = (
                await session.execute(
                    select(
                        _E.c.url,
                        _E.c.secret,
                        _E.c.previous_secret,
                        _E.c.previous_until,
                        _E.c.enabled,
                    ).where(_E.c.id == endpoint_id)
                )
            ).first()
        if row is None:
            return None
        sealed = [row.secret]
        if row.previous_secret and row.previous_until and row.previous_until > self._clock.now():
            sealed.append(row.previous_secret)
        return row.url, [self._secrets.open(s) for s in sealed], bool(row.enabled)

    async def _post(self, url: str, secrets: Sequence[str], row: _Claimed) -> _Answer:
        s = self._settings
        try:
            check_url(url, dev_mode=self._dev_mode, allow_private=self._allow_private)
        except Refused as exc:
            return _Answer(None, f"refused: {exc}", None)
        message_id = f"msg_{row.id.hex}"
        timestamp = self._signing_clock.now()
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": message_id,
            "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": signature_header(secrets, message_id, timestamp, row.payload),
        }
        assert self._http is not None
        try:
            async with self._http.post(
                url,
                data=row.payload.encode(),
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=s.timeout_seconds),
            ) as response:
                raw = await response.content.read(s.max_response_bytes)
                if not response.content.at_eof():
                    response.close()  # the rest is never read: drop the connection
                body = raw.decode("utf-8", "replace")[:SHOWN_RESPONSE]
                error = None if 200 <= response.status < 300 else f"HTTP {response.status}"
                return _Answer(response.status, error, body)
        except TimeoutError:
            return _Answer(None, f"no answer within {s.timeout_seconds:g} s", None)
        except (aiohttp.ClientError, OSError) as exc:
            return _Answer(None, f"{type(exc).__name__}: {exc}"[:SHOWN_RESPONSE], None)

    async def _deliver(self, row: _Claimed) -> str:
        try:
            endpoint = await self._endpoint(row.endpoint_id)
        except ValueError as exc:  # a secret sealed under another [server] secret_key
            endpoint, answer = None, _Answer(None, str(exc), None)
        else:
            if endpoint is None or not endpoint[2]:
                why = "the webhook was deleted" if endpoint is None else "the webhook is disabled"
                now = self._clock.now()
                await self._finish(row, status="failed", last_error=why, finished_at=now)
                return "failed"
            url, secrets, _enabled = endpoint
            answer = await self._post(url, secrets, row)
        now = self._clock.now()
        common = {
            "last_status_code": answer.status,
            "last_error": answer.error,
            "last_response": answer.body,
        }
        if answer.error is None:
            await self._finish(row, status="delivered", finished_at=now, **common)
            log.info("webhook delivered: id=%s type=%s", row.id, row.event_type)
            return "delivered"
        until = row.retry_until or row.created_at + timedelta(hours=self._settings.retry_hours)
        retry_at = now + timedelta(seconds=self._settings.backoff(row.attempts))
        if retry_at > until:
            await self._finish(row, status="failed", finished_at=now, **common)
            log.error(
                "webhook failed for good: id=%s type=%s attempts=%d error=%s",
                row.id,
                row.event_type,
                row.attempts,
                answer.error,
            )
            return "failed"
        await self._finish(row, status="pending", next_attempt_at=retry_at, **common)
        log.warning(
            "webhook delayed: id=%s type=%s attempt=%d retry_at=%s error=%s",
            row.id,
            row.event_type,
            row.attempts,
            retry_at.isoformat(),
            answer.error,
        )
        return "retry"

    # -- passes ------------------------------------------------------------------------

    async def deliver_due(self) -> int:
        """One pass: claim, deliver (`concurrency` at a time); returns how many claimed."""
        rows = await self._claim()
        if not rows:
            return 0
        limit = asyncio.Semaphore(self._settings.concurrency)

        async def one(row: _Claimed) -> None:
            async with limit:
                try:
                    outcome = await self._deliver(row)
                except Exception:
                    log.exception("webhook delivery %s: attempt failed", row.id)
                    return  # the lease ends and the row is claimed again
                if self._on_outcome is not None:
                    self._on_outcome(outcome)

        await asyncio.gather(*(one(row) for row in rows))
        return len(rows)

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Deliver until `stop`; between passes sleep until `wake` (set after a commit that
        wrote deliveries) or the poll interval (retries whose backoff has elapsed)."""
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self._allow_private), limit=self._settings.concurrency
        )
        async with aiohttp.ClientSession(connector=connector) as http:
            self._http = http
            while not stop.is_set():
                wake.clear()
                claimed = 0
                try:
                    claimed = await self.deliver_due()
                except Exception:
                    log.exception("webhook delivery pass failed")
                if claimed:
                    continue  # a finished delivery may have unblocked the next of its chain
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
            self._http = None
