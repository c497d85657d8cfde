"""`viva demo`: an organisation, evaluators for French and English, and candidates to try.

Links are derived from the secret key, so a second run prints the same working links
again; the demo API key is kept in the data folder (dev only) for the same reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.tokens import LinkSigner
from scheduler.availability import Availability
from scheduler.clock import SystemClock
from scheduler.config import Settings, secret_key
from scheduler.db import Database
from scheduler.links import Links
from scheduler.models import Candidate, Organisation
from scheduler.orgs import create_organisation
from scheduler.people import NewCandidate, NewEvaluator, create_candidate, create_evaluator

_WORKDAYS = ("mon", "tue", "wed", "thu", "fri")
# name, e-mail, time zone, languages examined, locale, daily hours
_EVALUATORS: list[tuple[str, str, str, list[str], str, list[tuple[str, str]]]] = [
    (
        "Claire Martin",
        "claire.martin@demo.viva",
        "Europe/Paris",
        ["fr", "en"],
        "fr",
        [("09:00", "12:00"), ("14:00", "17:30")],
    ),
    (
        "Hugo Bernard",
        "hugo.bernard@demo.viva",
        "Europe/Paris",
        ["fr"],
        "fr",
        [("10:00", "12:00"), ("13:30", "18:00")],
    ),
    ("Emily Carter", "emily.carter@demo.viva", "Europe/London", ["en"], "en", [("08:00", "12:00")]),
    (
        "James Walker",
        "james.walker@demo.viva",
        "America/New_York",
        ["en"],
        "en",
        [("09:00", "13:00")],
    ),
]
# name, e-mail, exam language, locale, time zone
_CANDIDATES: list[tuple[str, str, str, str, str]] = [
    ("Léa Dubois", "lea.dubois@demo.viva", "en", "fr", "Europe/Paris"),
    ("Thomas Petit", "thomas.petit@demo.viva", "fr", "fr", "Europe/Paris"),
    ("Sarah Johnson", "sarah.johnson@demo.viva", "fr", "en", "America/New_York"),
    ("Amir Haddad", "amir.haddad@demo.viva", "en", "en", "Europe/London"),
]


@dataclass(frozen=True)
class DemoLink:
    """A demo candidate's personal link, with the two languages that are easy to confuse."""

    name: str
    language: str  # of the exam
    locale: str  # of the pages and e-mails
    url: str

    def describe(self) -> str:
        exam = _LANGUAGE_NAMES.get(self.language, self.language)
        pages = _LANGUAGE_NAMES.get(self.locale, self.locale)
        return f"{self.name} (exam in {exam}, pages in {pages}): {self.url}"


_LANGUAGE_NAMES = {"fr": "French", "en": "English"}


@dataclass
class DemoResult:
    created: bool
    organisation: str
    api_key: str | None
    candidates: list[DemoLink] = field(default_factory=list)
    base_url: str = ""

    def describe(self) -> str:
        lines = [
            f"Demo organisation: {self.organisation}"
            + (" (created now)" if self.created else " (already there)"),
            f"API key: {self.api_key or '(shown when the demo was first seeded)'}",
            f"API reference: {self.base_url}/api/v1/docs",
            f"Dev mailbox: {self.base_url}/dev/mail",
            "Candidate links (open one, pick a green slot, confirm):",
        ]
        lines += [f"  {c.describe()}" for c in self.candidates]
        return "\n".join(lines)


async def demo_links(session: AsyncSession, links: Links) -> tuple[str, list[DemoLink]] | None:
    """The demo organisation (the first one) and its candidates' links; None before seeding.

    Dev mode only: `viva demo` prints these, and the home page lists them.
    """
    first = await session.scalar(select(Organisation).order_by(Organisation.created_at))
    if first is None:
        return None
    cands = await session.scalars(
        select(Candidate)
        .where(Candidate.organisation_id == first.id)
        .order_by(Candidate.name, Candidate.id)
    )
    return first.name, [
        DemoLink(c.name, c.language, c.locale, links.candidate_url(c)) for c in cands
    ]


def _availability(hours: list[tuple[str, str]]) -> Availability:
    return Availability.from_document(
        {"weekly": [{"day": d, "start": s, "end": e} for d in _WORKDAYS for s, e in hours]}
    )


def _key_file(settings: Settings) -> Path:
    return settings.data_path / "demo_api_key"


async def seed_demo(settings: Settings, *, only_if_empty: bool = False) -> DemoResult:
    now = SystemClock().now()
    links = Links(LinkSigner(secret_key(settings)), settings.server.base_url)
    db = Database(settings.database.url)
    try:
        async with db.write() as session:
            existing = await demo_links(session, links)
            if existing is not None and only_if_empty:
                key = (
                    _key_file(settings).read_text().strip()
                    if _key_file(settings).exists()
                    else None
                )
                name, cands = existing
                return DemoResult(False, name, key, cands, settings.server.base_url)
            new = await create_organisation(
                session,
                name="CCI Formation (démo)",
                contact_email="oral@cci-formation.demo",
                contact_phone="+33 1 23 45 67 89",
                now=now,
            )
            org_id = new.organisation.id
            for name, email, tz, langs, locale, hours in _EVALUATORS:
                await create_evaluator(
                    session,
                    org_id,
                    NewEvaluator(
                        name=name, email=email, timezone=tz, languages=langs, locale=locale
                    ),
                    now=now,
                    availability=_availability(hours),
                )
            result = DemoResult(
                True, new.organisation.name, new.api_key, base_url=settings.server.base_url
            )
            for name, email, language, locale, tz in _CANDIDATES:
                cand = await create_candidate(
                    session,
                    org_id,
                    NewCandidate(
                        name=name, email=email, language=language, locale=locale, timezone=tz
                    ),
                    now=now,
                )
                link = DemoLink(name, language, locale, links.candidate_url(cand))
                result.candidates.append(link)
            result.candidates.sort(key=lambda c: c.name)  # as demo_links lists them
    finally:
        await db.dispose()
    if settings.server.dev_mode:
        path = _key_file(settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(new.api_key)
    return result
