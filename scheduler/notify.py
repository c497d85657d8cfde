"""Who is told what when a booking changes: builds the messages and puts them in the outbox.

Called inside the change's own transaction, so a change never exists without its
messages, nor messages without their change; a new booking's confirmations are the
exception, written just after its commit (scheduler.confirmations, whose sweep writes any
that a crash left unwritten).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime

import jinja2
from sqlalchemy import bindparam, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from mailer import compose
from mailer.message import MailContent
from mailer.settings import SmtpSettings
from mailer.store import enqueue_content
from scheduler.i18n import Catalogs
from scheduler.links import Links
from scheduler.models import Booking, Candidate, Evaluator, Organisation
from scheduler.policy import Policy, lock_time

# Two primary-key lookups side by side, joined on nothing but `true`: the answer is exactly
# that of two `session.get`s, in one round trip. Built once, with bound parameters.
_ORG_AND_EVALUATOR = (
    select(Organisation, Evaluator)
    .join(Evaluator, true())
    .where(
        Organisation.id == bindparam("organisation_id"),
        Evaluator.id == bindparam("evaluator_id"),
    )
)


@dataclass(frozen=True)
class Notifier:
    env: jinja2.Environment
    catalogs: Catalogs
    links: Links
    policy: Policy
    smtp: SmtpSettings

    def _sender(self, org: Organisation) -> compose.Organisation:
        return compose.Organisation(
            org.name,
            org.contact_email,
            org.contact_phone,
            records=org.recording,
            sender_email=self.smtp.from_address,
        )

    async def _org_and_evaluator(
        self, session: AsyncSession, booking: Booking
    ) -> tuple[compose.Organisation, Evaluator]:
        """The organisation (as the sender) and the booking's evaluator, in one round trip."""
        row = (
            await session.execute(
                _ORG_AND_EVALUATOR,
                {"organisation_id": booking.organisation_id, "evaluator_id": booking.evaluator_id},
            )
        ).first()
        assert row is not None  # foreign keys
        return self._sender(row[0]), row[1]

    async def _evaluator(self, session: AsyncSession, evaluator_id: uuid.UUID) -> Evaluator:
        evaluator = await session.get(Evaluator, evaluator_id)
        assert evaluator is not None  # foreign key
        return evaluator

    def _for_candidate(
        self, booking: Booking, candidate: Candidate, org: compose.Organisation
    ) -> compose.BookingMail:
        return replace(
            self._mail(booking, candidate, candidate, "candidate", org),
            manage_url=self.links.candidate_url(candidate),
            manage_until=lock_time(booking.start_at, self.policy),
        )

    def _for_evaluator(
        self,
        booking: Booking,
        candidate: Candidate,
        evaluator: Evaluator,
        org: compose.Organisation,
    ) -> compose.BookingMail:
        return self._mail(booking, candidate, evaluator, "evaluator", org)

    def feed_mail(
        self, booking: Booking, candidate: Candidate, evaluator: Evaluator, org: Organisation
    ) -> compose.BookingMail:
        """The booking as the evaluator's invitation shows it, for their calendar feed."""
        return self._for_evaluator(booking, candidate, evaluator, self._sender(org))

    def _mail(
        self,
        booking: Booking,
        candidate: Candidate,
        reader: Candidate | Evaluator,
        role: compose.Role,
        org: compose.Organisation,
    ) -> compose.BookingMail:
        """The booking as `reader` sees it: their zone, their own room link."""
        return compose.BookingMail(
            booking_id=booking.id,
            sequence=booking.sequence,
            start=booking.start_at,
            end=booking.end_at,
            exam_language=candidate.language,
            candidate_name=candidate.name,
            organisation=org,
            reader=compose.Reader(reader.name, reader.email, reader.timezone),
            role=role,
            room_url=self.links.room_url(booking, role),
        )

    async def _send(
        self, session: AsyncSession, booking: Booking, content: MailContent, now: datetime
    ) -> None:
        await enqueue_content(
            session,
            content=content,
            settings=self.smtp,
            organisation_id=booking.organisation_id,
            booking_id=booking.id,
            now=now,
        )

    async def booking_confirmed(
        self, session: AsyncSession, booking: Booking, candidate: Candidate, now: datetime
    ) -> None:
        for content in await self.confirmations(session, booking, candidate, now):
            await self._send(session, booking, content, now)

    async def confirmations(
        self, session: AsyncSession, booking: Booking, candidate: Candidate, now: datetime
    ) -> list[MailContent]:
        """The two confirmations of a new booking (candidate's, evaluator's), composed but
        not written: scheduler.confirmations composes them outside any transaction."""
        org, evaluator = await self._org_and_evaluator(session, booking)
        return [
            compose.booking_confirmed(self.env, self.catalogs.get(locale), locale, mail, now=now)
            for locale, mail in (
                (candidate.locale, self._for_candidate(booking, candidate, org)),
                (evaluator.locale, self._for_evaluator(booking, candidate, evaluator, org)),
            )
        ]

    async def write(
        self, session: AsyncSession, booking: Booking, contents: list[MailContent], now: datetime
    ) -> None:
        """Put composed messages in the outbox, in the caller's transaction."""
        for content in contents:
            await self._send(session, booking, content, now)

    async def booking_moved(
        self,
        session: AsyncSession,
        booking: Booking,
        candidate: Candidate,
        *,
        previous_start: datetime,
        previous_evaluator_id: uuid.UUID,
        reason: str | None,
        now: datetime,
    ) -> None:
        """Same UID, higher SEQUENCE. A new evaluator gets a fresh invitation and the
        previous one a cancellation of the time they had."""
        org, evaluator = await self._org_and_evaluator(session, booking)
        t = self.catalogs.get
        mail = self._for_candidate(booking, candidate, org)
        await self._send(
            session,
            booking,
            compose.booking_updated(
                self.env,
                t(candidate.locale),
                candidate.locale,
                mail,
                now=now,
                previous_start=previous_start,
                reason=reason,
            ),
            now,
        )
        mail = self._for_evaluator(booking, candidate, evaluator, org)
        if previous_evaluator_id == booking.evaluator_id:
            content = compose.booking_updated(
                self.env,
                t(evaluator.locale),
                evaluator.locale,
                mail,
                now=now,
                previous_start=previous_start,
                reason=reason,
            )
            await self._send(session, booking, content, now)
            return
        content = compose.booking_confirmed(
            self.env, t(evaluator.locale), evaluator.locale, mail, now=now
        )
        await self._send(session, booking, content, now)
        previous = await self._evaluator(session, previous_evaluator_id)
        duration = booking.end_at - booking.start_at
        old = replace(
            self._for_evaluator(booking, candidate, previous, org),
            start=previous_start,
            end=previous_start + duration,
            # Never the booking's evaluator link: that is now the new evaluator's. The
            # replaced evaluator's own link was revoked; the calendar entry points home.
            room_url=f"{self.links.base_url}/",
        )
        content = compose.booking_cancelled(
            self.env, t(previous.locale), previous.locale, old, now=now, reason=reason
        )
        await self._send(session, booking, content, now)

    async def booking_cancelled(
        self,
        session: AsyncSession,
        booking: Booking,
        candidate: Candidate,
        *,
        reason: str | None,
        now: datetime,
    ) -> None:
        org, evaluator = await self._org_and_evaluator(session, booking)
        for locale, mail in (
            (candidate.locale, self._for_candidate(booking, candidate, org)),
            (evaluator.locale, self._for_evaluator(booking, candidate, evaluator, org)),
        ):
            content = compose.booking_cancelled(
                self.env, self.catalogs.get(locale), locale, mail, now=now, reason=reason
            )
            await self._send(session, booking, content, now)

    async def links_reissued(
        self,
        session: AsyncSession,
        candidate: Candidate,
        booking: Booking | None,
        now: datetime,
    ) -> None:
        """The candidate's new links (scheduler.reissue), in their language."""
        org = await session.get(Organisation, candidate.organisation_id)
        assert org is not None  # foreign key
        mail = compose.NewLinksMail(
            organisation=self._sender(org),
            reader=compose.Reader(candidate.name, candidate.email, candidate.timezone),
            manage_url=self.links.candidate_url(candidate),
            room_url=self.links.room_url(booking, "candidate") if booking is not None else None,
        )
        content = compose.links_reissued(
            self.env, self.catalogs.get(candidate.locale), candidate.locale, mail, now=now
        )
        await enqueue_content(
            session,
            content=content,
            settings=self.smtp,
            organisation_id=candidate.organisation_id,
            booking_id=booking.id if booking is not None else None,
            now=now,
        )
