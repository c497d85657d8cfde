"""An evaluator's calendar feed: every interview of theirs from 30 days back on, as their
invitations describe them, for Outlook, Google Calendar or Apple Calendar to subscribe to.

The feed's link is HMAC-derived like every other (scheduler.links, kind CALENDAR_FEED)
over the evaluator's `feed_nonce`: re-issuing it rotates the nonce, and the old link is
dead at once. The body is a pure function of the rows (each event's DTSTAMP is its
booking's last change), so its hash is a stable ETag and a client that asks again gets
304 until something changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import jinja2
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailer import feed
from rooms.tokens import new_nonce
from scheduler.i18n import Catalogs
from scheduler.models import Booking, Candidate, Evaluator, Organisation
from scheduler.notify import Notifier

__all__ = ["DAYS_BACK", "Feed", "evaluator_feed", "one_interview", "reissue"]

DAYS_BACK = 30

_BOOKINGS = (
    select(Booking, Candidate)
    .join(Candidate, Candidate.id == Booking.candidate_id)
    .where(
        Booking.evaluator_id == bindparam("evaluator_id"),
        Booking.end_at >= bindparam("since", type_=Booking.end_at.type),
    )
    .order_by(Booking.start_at, Booking.id)
)


@dataclass(frozen=True)
class Feed:
    body: bytes
    etag: str  # quoted, as the header carries it
    last_modified: datetime


async def evaluator_feed(
    session: AsyncSession,
    evaluator: Evaluator,
    *,
    notifier: Notifier,
    env: jinja2.Environment,
    catalogs: Catalogs,
    now: datetime,
) -> Feed:
    org = await session.get(Organisation, evaluator.organisation_id)
    assert org is not None  # foreign key
    rows = await session.execute(
        _BOOKINGS, {"evaluator_id": evaluator.id, "since": now - timedelta(days=DAYS_BACK)}
    )
    translations = catalogs.get(evaluator.locale)
    entries = []
    changed = evaluator.created_at
    for booking, candidate in rows:
        mail = notifier.feed_mail(booking, candidate, evaluator, org)
        entries.append(
            feed.entry(
                env,
                translations,
                evaluator.locale,
                mail,
                cancelled=booking.status == "cancelled",
                stamp=booking.updated_at,
            )
        )
        changed = max(changed, booking.updated_at)
    body = feed.build(entries, f"{org.name} (Viva)")
    digest = hashlib.sha256(body).hexdigest()[:32]
    return Feed(body, f'"{digest}"', changed)


def one_interview(
    booking: Booking,
    candidate: Candidate,
    evaluator: Evaluator,
    org: Organisation,
    *,
    notifier: Notifier,
    env: jinja2.Environment,
    catalogs: Catalogs,
) -> bytes:
    """One interview as a calendar object of its own (scheduler.writeback): the feed's event."""
    mail = notifier.feed_mail(booking, candidate, evaluator, org)
    entry = feed.entry(
        env,
        catalogs.get(evaluator.locale),
        evaluator.locale,
        mail,
        cancelled=booking.status == "cancelled",
        stamp=booking.updated_at,
    )
    return feed.build([entry], f"{org.name} (Viva)")


def reissue(evaluator: Evaluator) -> None:
    """A new feed link; the previous one stops working with this transaction's commit."""
    evaluator.feed_nonce = new_nonce()
