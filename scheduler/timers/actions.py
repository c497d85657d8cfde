"""What each timer does to its booking, in the claim's transaction: lock it, mark it
no-show, or send its reminders; or raise `Dropped` when that no longer makes sense (the
booking was cancelled or moved, the interview has begun, the candidate came)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mailer import compose
from mailer.store import enqueue_content
from rooms.models import candidate_joined_before
from scheduler import history
from scheduler.models import ACTIVE_STATUSES, Booking, Candidate, Evaluator, Organisation
from scheduler.notify import Notifier
from scheduler.policy import Policy, is_locked, lock_time
from scheduler.timers.claims import Claim
from scheduler.timers.plan import LOCK, NO_SHOW, reminder_hours

__all__ = ["Dropped", "TimerActions"]


class Dropped(Exception):
    """The timer no longer makes sense; the message says why."""


@dataclass(frozen=True)
class TimerActions:
    """The actions with what they need: the policy (when changes close), the notifier (the
    reminders' mails and links), and for the no-show mark its delay and the live rooms'
    side of the decision (`candidate_arrived`: whether a candidate of this booking is in
    its room or arriving since before an instant; synchronous, so nothing can interleave
    with it on this process's event loop)."""

    policy: Policy
    notifier: Notifier
    no_show_after: timedelta | None = None
    candidate_arrived: Callable[[uuid.UUID, datetime], bool] | None = None

    async def act(self, session: AsyncSession, claim: Claim, now: datetime) -> int:
        """Do what the timer is for, in the claim's transaction; return the mails enqueued.

        Raises Dropped when it no longer makes sense.
        """
        booking = await session.get(Booking, claim.booking_id)
        if booking is None:
            raise Dropped("the booking no longer exists")
        if claim.kind == LOCK:
            return await self.lock(session, booking, now)
        if claim.kind == NO_SHOW:
            return await self.no_show(session, booking, claim, now)
        hours = reminder_hours(claim.kind)
        if hours is None:
            raise Dropped(f"unknown timer kind {claim.kind!r}")
        if booking.status not in ACTIVE_STATUSES:
            raise Dropped(f"the booking is {booking.status}")
        if booking.start_at - timedelta(hours=hours) != claim.due_at:
            raise Dropped("the booking has moved since this reminder was planned")
        if now >= booking.start_at:
            raise Dropped("the interview has already begun")
        return await self.remind(session, booking, claim, now)

    async def no_show(
        self, session: AsyncSession, booking: Booking, claim: Claim, now: datetime
    ) -> int:
        if booking.status not in ACTIVE_STATUSES:
            raise Dropped(f"the booking is {booking.status}")
        if self.no_show_after is None or (booking.start_at + self.no_show_after != claim.due_at):
            raise Dropped("the booking has moved since this mark was planned")
        # The live room first, then the attendance rows: an arrival seen by neither came
        # after this check (so after the deadline), and one whose row was committed after it
        # was registered in the room server is seen by the read that follows. Checked the
        # other way round, a join committed between the two would be missed by both.
        if self.candidate_arrived is not None and self.candidate_arrived(booking.id, claim.due_at):
            raise Dropped("the candidate is in the room or joining it")
        if await candidate_joined_before(session, booking.id, claim.due_at):
            raise Dropped("the candidate joined the room in time")
        before = history.snapshot(booking)
        booking.status = "no_show"
        booking.updated_at = now
        await session.flush()
        await history.record(
            session, booking, actor=history.SYSTEM, action="no_show", now=now, before=before
        )
        return 0

    async def lock(self, session: AsyncSession, booking: Booking, now: datetime) -> int:
        if booking.status != "confirmed":
            raise Dropped(f"the booking is already {booking.status}")
        if not is_locked(booking.start_at, now, self.policy):
            raise Dropped("the booking has moved: its changes do not close yet")
        before = history.snapshot(booking)
        # No new SEQUENCE: the calendar event itself does not change, and no mail goes out.
        booking.status = "locked"
        booking.updated_at = now
        await session.flush()
        await history.record(
            session, booking, actor=history.SYSTEM, action="locked", now=now, before=before
        )
        return 0

    async def remind(
        self, session: AsyncSession, booking: Booking, claim: Claim, now: datetime
    ) -> int:
        """The candidate always; the evaluator only for a reminder inside the lock window
        (by default the 1 h one), when the interview can no longer move under them."""
        candidate = await session.get(Candidate, booking.candidate_id)
        evaluator = await session.get(Evaluator, booking.evaluator_id)
        org = await session.get(Organisation, booking.organisation_id)
        assert candidate is not None and evaluator is not None and org is not None  # FKs
        n = self.notifier
        organisation = compose.Organisation(org.name, org.contact_email, org.contact_phone)
        common: dict[str, Any] = dict(
            booking_id=booking.id,
            sequence=booking.sequence,
            start=booking.start_at,
            end=booking.end_at,
            exam_language=candidate.language,
            candidate_name=candidate.name,
            organisation=organisation,
        )
        # The personal link and the last moment to change, while changes are still open.
        can_change = not is_locked(booking.start_at, now, self.policy)
        mails = [
            (
                candidate.locale,
                compose.BookingMail(
                    **common,
                    reader=compose.Reader(candidate.name, candidate.email, candidate.timezone),
                    role="candidate",
                    room_url=n.links.room_url(booking, "candidate"),
                    manage_url=n.links.candidate_url(candidate) if can_change else None,
                    manage_until=lock_time(booking.start_at, self.policy) if can_change else None,
                ),
            )
        ]
        if claim.due_at >= lock_time(booking.start_at, self.policy):
            mails.append(
                (
                    evaluator.locale,
                    compose.BookingMail(
                        **common,
                        reader=compose.Reader(evaluator.name, evaluator.email, evaluator.timezone),
                        role="evaluator",
                        room_url=n.links.room_url(booking, "evaluator"),
                    ),
                )
            )
        for locale, mail in mails:
            content = compose.booking_reminder(n.env, n.catalogs.get(locale), locale, mail, now=now)
            await enqueue_content(
                session,
                content=content,
                settings=n.smtp,
                organisation_id=booking.organisation_id,
                booking_id=booking.id,
                now=now,
            )
        return len(mails)
