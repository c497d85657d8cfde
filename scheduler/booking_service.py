"""The one way a booking changes: open the transaction, run the change, commit, follow up.

Every change of a booking (a candidate books, moves or cancels; the organisation moves or
cancels as force majeure, or re-issues a candidate's links) goes through `BookingService`,
which the app builds once (scheduler.app). It opens the write transaction, runs the domain
operation (scheduler.bookings, scheduler.reissue) with the effects that belong in it (the
messages and timer rows, `scheduler.effects.MailAndTimers`), commits, and then runs what
must follow the commit (`scheduler.effects.AfterCommit`: the mail worker woken, the live
rooms told, the timer jobs in line). A caller cannot forget the last step, nor make a
booking without its mails.

A booking is run again when PostgreSQL refuses its transaction as a deadlock or a
serialization failure (scheduler.contention); each try is one whole transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler import bookings, reissue
from scheduler.clock import Clock
from scheduler.contention import retry_conflicts
from scheduler.db import Database
from scheduler.effects import AfterCommit, MailAndTimers
from scheduler.history import Actor
from scheduler.models import Booking, Candidate
from scheduler.policy import Policy

T = TypeVar("T")

log = logging.getLogger("viva.bookings")


@dataclass(frozen=True)
class BookingService:
    db: Database
    policy: Policy
    clock: Clock
    effects: MailAndTimers
    after_commit: AfterCommit

    async def _write(
        self,
        change: Callable[[AsyncSession], Awaitable[T]],
        integrity: Callable[[IntegrityError], Exception] | None = None,
        *,
        what: str,
    ) -> T:
        """`change` in one write transaction, committed on return, and run again whole when
        PostgreSQL refuses it as a deadlock or a serialization failure: every change takes
        row locks (the booking, the evaluator, the organisation's calendar version at the
        commit), so any of them can meet another transaction's locks in the other order,
        and a refused change is the database's problem, not the caller's. A race the row
        locks did not catch but the schema did (at a flush or at the commit) becomes the
        domain error `integrity` names."""

        async def attempt() -> T:
            try:
                async with self.db.write() as session:
                    return await change(session)
            except IntegrityError as exc:
                if integrity is None:
                    raise
                raise integrity(exc) from exc

        return await retry_conflicts(self.db.contention, attempt, what=what)

    async def book(
        self,
        candidate_id: uuid.UUID,
        start: datetime,
        *,
        accepts: Callable[[Candidate], bool] | None = None,
    ) -> tuple[Booking, Candidate]:
        """The candidate books `start`. The confirmations are written after the commit, so
        the evaluator's lock is not held while they are composed (scheduler.confirmations
        sweeps up after a process that died in between). `accepts`: the candidate's link,
        checked on the row the transaction reads (NotFound if refused), which spares the
        request a connection and a read of its own."""
        now = self.clock.now()
        booking, candidate = await self._write(
            lambda session: bookings.book(
                self.db,
                session,
                candidate_id=candidate_id,
                start=start,
                policy=self.policy,
                now=now,
                effects=self.effects,
                accepts=accepts,
            ),
            bookings.integrity_error,
            what="booking",
        )
        try:
            await self.effects.confirm(self.db, booking, candidate, now)
        except Exception:
            # The booking is committed: its answer is 201 whatever happens to this second
            # transaction (the write lock taken by another process, a connection lost). The
            # sweep writes the confirmations of a booking left without them.
            log.exception(
                "booking %s is made; its confirmations were not written now, the sweep will "
                "write them",
                booking.id,
            )
        await self.after_commit.booking_created(booking)
        return booking, candidate

    async def reschedule(
        self, candidate_id: uuid.UUID, start: datetime
    ) -> tuple[Booking, Candidate]:
        now = self.clock.now()
        booking, candidate = await self._write(
            lambda session: bookings.reschedule(
                self.db,
                session,
                candidate_id=candidate_id,
                start=start,
                policy=self.policy,
                now=now,
                effects=self.effects,
            ),
            bookings.integrity_error,
            what="reschedule",
        )
        await self.after_commit.bookings_changed([booking.id], changed=[booking])
        return booking, candidate

    async def cancel(self, candidate_id: uuid.UUID) -> tuple[Booking, Candidate]:
        now = self.clock.now()
        booking, candidate = await self._write(
            lambda session: bookings.cancel(
                session,
                candidate_id=candidate_id,
                policy=self.policy,
                now=now,
                effects=self.effects,
            ),
            what="cancel",
        )
        await self.after_commit.bookings_changed([booking.id], changed=[booking])
        return booking, candidate

    async def force_majeure(
        self,
        *,
        organisation_id: uuid.UUID,
        booking_id: uuid.UUID,
        action: str,
        reason: str,
        actor: Actor,
        start: datetime | None = None,
        evaluator_id: uuid.UUID | None = None,
    ) -> Booking:
        now = self.clock.now()
        booking = await self._write(
            lambda session: bookings.force_majeure(
                self.db,
                session,
                organisation_id=organisation_id,
                booking_id=booking_id,
                action=action,
                reason=reason,
                actor=actor,
                policy=self.policy,
                now=now,
                start=start,
                evaluator_id=evaluator_id,
                effects=self.effects,
            ),
            bookings.force_majeure_integrity,
            what="force majeure",
        )
        await self.after_commit.bookings_changed([booking.id], changed=[booking])
        return booking

    async def reissue_links(
        self, *, organisation_id: uuid.UUID, candidate_id: uuid.UUID
    ) -> tuple[Candidate, Booking | None]:
        """New links for the candidate, mailed to them; the old room link's connections
        are closed once the new nonces are committed."""
        now = self.clock.now()
        candidate, booking = await self._write(
            lambda session: reissue.reissue_candidate_links(
                self.db,
                session,
                organisation_id=organisation_id,
                candidate_id=candidate_id,
                now=now,
                effects=self.effects,
            ),
            what="link reissue",
        )
        await self.after_commit.links_changed(booking.id if booking is not None else None)
        return candidate, booking
