"""Re-issuing a candidate's links: the organisation revokes the old ones and mails new ones.

For a link that leaked (a forwarded e-mail, a shared screen) or a candidate who lost theirs.
One transaction: the personal link's nonce and, if they hold an active booking, their room
link's nonce turn, and the mail with the new links is in the outbox; the evaluator's link
is not touched. scheduler.booking_service opens and commits the transaction, then closes
what the old room link holds open (`scheduler.effects.AfterCommit.links_changed`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from rooms.tokens import new_nonce
from scheduler.bookings import active_booking
from scheduler.db import Database
from scheduler.errors import NotFound
from scheduler.models import Booking, Candidate


class LinkEffects(Protocol):
    """What follows new links, in their own transaction (the mail to the candidate)."""

    async def links_reissued(
        self,
        session: AsyncSession,
        candidate: Candidate,
        booking: Booking | None,
        now: datetime,
    ) -> None: ...


async def reissue_candidate_links(
    db: Database,
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    candidate_id: uuid.UUID,
    now: datetime,
    effects: LinkEffects,
) -> tuple[Candidate, Booking | None]:
    """New links for the candidate; NotFound for another organisation's (or no) candidate.

    Returns the candidate and their active booking (None without one), both with the new
    nonces, so that the caller can render the new links.
    """
    candidate = await session.get(Candidate, candidate_id, with_for_update=not db.sqlite)
    if candidate is None or candidate.organisation_id != organisation_id:
        raise NotFound("no such candidate")
    candidate.link_nonce = new_nonce()
    booking = await active_booking(session, candidate.id, for_update=True)
    if booking is not None:
        booking.candidate_room_nonce = new_nonce()
    await session.flush()
    await effects.links_reissued(session, candidate, booking, now)
    return candidate, booking
