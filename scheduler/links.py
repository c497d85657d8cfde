"""The URLs Viva hands out: a candidate's personal page and each participant's room."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.tokens import LinkKind, LinkSigner, parse_link
from scheduler.models import Booking, Candidate, Evaluator, Organisation

# The candidate and their organisation's calendar version (scheduler.calendar_versions) in
# one round trip, for the slots answer that needs both; built once, like the hot queries.
_CANDIDATE_AND_VERSION = (
    select(Candidate, Organisation.calendar_version)
    .join(Organisation, Organisation.id == Candidate.organisation_id)
    .where(Candidate.id == bindparam("candidate_id"))
)


def room_nonce(booking: Booking, role: str) -> str:
    """The nonce behind `role`'s room link: each role's link is revoked on its own."""
    return booking.evaluator_room_nonce if role == "evaluator" else booking.candidate_room_nonce


@dataclass(frozen=True)
class CandidateCheck:
    """A candidate link parsed but not yet verified: whose it claims to be, and the check
    (HMAC with the candidate's current nonce, in constant time) that the row must pass."""

    candidate_id: uuid.UUID
    accepts: Callable[[Candidate], bool]


class Links:
    def __init__(self, signer: LinkSigner, base_url: str) -> None:
        self.signer = signer
        self.base_url = base_url.rstrip("/")

    def candidate_token(self, candidate: Candidate) -> str:
        return self.signer.make(LinkKind.CANDIDATE, candidate.id, candidate.link_nonce)

    def candidate_url(self, candidate: Candidate) -> str:
        return f"{self.base_url}/c/{self.candidate_token(candidate)}"

    def room_token(self, booking: Booking, role: str) -> str:
        kind = LinkKind.ROOM_EVALUATOR if role == "evaluator" else LinkKind.ROOM_CANDIDATE
        return self.signer.make(kind, booking.id, room_nonce(booking, role))

    def room_url(self, booking: Booking, role: str) -> str:
        return f"{self.base_url}/r/{self.room_token(booking, role)}"

    def feed_url(self, evaluator: Evaluator) -> str | None:
        """The evaluator's calendar subscription (scheduler.feeds); None before it has a
        nonce (a row older than feeds and not yet given one)."""
        if evaluator.feed_nonce is None:
            return None
        token = self.signer.make(LinkKind.CALENDAR_FEED, evaluator.id, evaluator.feed_nonce)
        return f"{self.base_url}/feeds/{token}.ics"

    async def resolve_feed(self, session: AsyncSession, token: str) -> Evaluator | None:
        link = parse_link(token, LinkKind.CALENDAR_FEED)
        if link is None:
            return None
        evaluator = await session.get(Evaluator, link.ident)
        if (
            evaluator is None
            or evaluator.deleted_at is not None
            or evaluator.feed_nonce is None
            or not self.signer.verify(link, evaluator.feed_nonce)
        ):
            return None
        return evaluator

    def candidate_check(self, token: str) -> CandidateCheck | None:
        """The candidate a /c/{token} link names, and the check their row must pass, for a
        caller that reads the row in a transaction of its own (the booking): None when the
        token is not even a candidate link."""
        link = parse_link(token, LinkKind.CANDIDATE)
        if link is None:
            return None
        return CandidateCheck(
            link.ident, lambda candidate: self.signer.verify(link, candidate.link_nonce)
        )

    async def resolve_candidate(self, session: AsyncSession, token: str) -> Candidate | None:
        link = parse_link(token, LinkKind.CANDIDATE)
        if link is None:
            return None
        candidate = await session.get(Candidate, link.ident)
        if candidate is None or not self.signer.verify(link, candidate.link_nonce):
            return None
        return candidate

    async def resolve_candidate_and_version(
        self, session: AsyncSession, token: str
    ) -> tuple[Candidate, int] | None:
        """`resolve_candidate`, plus the organisation's calendar version read in the same
        statement: read before the slots it covers, as scheduler.free_times requires."""
        link = parse_link(token, LinkKind.CANDIDATE)
        if link is None:
            return None
        row = (await session.execute(_CANDIDATE_AND_VERSION, {"candidate_id": link.ident})).first()
        if row is None or not self.signer.verify(link, row[0].link_nonce):
            return None
        return row[0], row[1]
