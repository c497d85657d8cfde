"""The candidate's results e-mails, written to the outbox in the change's transaction
(scheduler.results calls it through its `ResultEffects` protocol)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import jinja2
from sqlalchemy.ext.asyncio import AsyncSession

from mailer import compose
from mailer.results_mail import ResultsMail, results_mail
from mailer.settings import SmtpSettings
from mailer.store import enqueue_content
from scheduler.i18n import Catalogs
from scheduler.links import Links
from scheduler.models import Candidate, Organisation, Result
from scheduler.results import MailKind, results_token


@dataclass(frozen=True)
class ResultMailer:
    env: jinja2.Environment
    catalogs: Catalogs
    links: Links
    smtp: SmtpSettings

    def results_url(self, result: Result) -> str:
        return f"{self.links.base_url}/results/{results_token(self.links.signer, result)}"

    def verify_url(self, code: str) -> str:
        return f"{self.links.base_url}/v/{code}"

    async def results_mail(
        self,
        session: AsyncSession,
        result: Result,
        candidate: Candidate,
        *,
        kind: MailKind,
        reason: str | None,
        now: datetime,
    ) -> None:
        org = await session.get(Organisation, candidate.organisation_id)
        assert org is not None  # foreign key
        mail = ResultsMail(
            organisation=compose.Organisation(
                org.name, org.contact_email, org.contact_phone, sender_email=self.smtp.from_address
            ),
            reader=compose.Reader(candidate.name, candidate.email, candidate.timezone),
            results_url=self.results_url(result),
            exam_language=candidate.language,
            overall_level=result.overall_level,
            certificate=result.target_reached,
            reason=reason,
        )
        content = results_mail(
            self.env,
            self.catalogs.get(candidate.locale),
            candidate.locale,
            mail,
            kind=kind,
            now=now,
        )
        await enqueue_content(
            session,
            content=content,
            settings=self.smtp,
            organisation_id=candidate.organisation_id,
            booking_id=result.booking_id,
            now=now,
        )
