"""Who is told what when a booking changes: builds the messages and puts them in the outbox.

Called inside the booking's own transaction, so a booking never exists without its
messages, nor messages without their booking.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import jinja2
from sqlalchemy.ext.asyncio import AsyncSession

from mailer import compose
from mailer.outbox import enqueue_content
from mailer.settings import SmtpSettings
from scheduler.i18n import Catalogs
from scheduler.links import Links
from scheduler.models import Booking, Candidate, Evaluator, Organisation
from scheduler.policy import Policy, lock_time


@dataclass(frozen=True)
class Notifier:
    env: jinja2.Environment
    catalogs: Catalogs
    links: Links
    policy: Policy
    smtp: SmtpSettings

    def _mails(
        self, booking: Booking, candidate: Candidate, evaluator: Evaluator, org: Organisation
    ) -> list[tuple[str, compose.BookingMail]]:
        organisation = compose.Organisation(org.name, org.contact_email, org.contact_phone)
        common = dict(
            booking_id=booking.id,
            sequence=booking.sequence,
            start=booking.start_at,
            end=booking.end_at,
            exam_language=candidate.language,
            candidate_name=candidate.name,
            organisation=organisation,
        )
        return [
            (
                candidate.locale,
                compose.BookingMail(
                    **common,
                    reader=compose.Reader(candidate.name, candidate.email, candidate.timezone),
                    role="candidate",
                    room_url=self.links.room_url(booking, "candidate"),
                    manage_url=self.links.candidate_url(candidate),
                    manage_until=lock_time(booking.start_at, self.policy),
                ),
            ),
            (
                evaluator.locale,
                compose.BookingMail(
                    **common,
                    reader=compose.Reader(evaluator.name, evaluator.email, evaluator.timezone),
                    role="evaluator",
                    room_url=self.links.room_url(booking, "evaluator"),
                ),
            ),
        ]

    async def booking_confirmed(
        self, session: AsyncSession, booking: Booking, candidate: Candidate, now: datetime
    ) -> None:
        evaluator = await session.get(Evaluator, booking.evaluator_id)
        org = await session.get(Organisation, booking.organisation_id)
        assert evaluator is not None and org is not None  # foreign keys guarantee both
        for locale, mail in self._mails(booking, candidate, evaluator, org):
            content = compose.booking_confirmed(
                self.env, self.catalogs.get(locale), locale, mail, now=now
            )
            await enqueue_content(
                session,
                content=content,
                settings=self.smtp,
                organisation_id=booking.organisation_id,
                booking_id=booking.id,
                now=now,
            )
