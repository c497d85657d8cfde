"""The result an organisation certifies, its publication, corrections and revocation.

Each operation runs inside the caller's transaction (the API opens it and wakes the mail
worker after the commit), so a result never changes without its e-mail, nor an e-mail leaves
for a change that did not happen. Publication and revocation are each one function
(`publish`, `revoke`): the place where events about them (webhooks) are to be emitted.

- A result is saved (`save`) and corrected in place until published. The oral level, when
  not given, comes from the submitted assessment of the candidate's completed interview
  (scheduler.assessments).
- `publish` sets `published_at` with a conditional UPDATE: of two concurrent publications
  only one changes the row and only that one mails the candidate; publishing again is a no-op.
- After publication, a correction needs a reason: the version it replaces goes to
  `result_versions`, the candidate gets the "updated results" e-mail.
- `revoke` ends a certificate's validity: /v/{code} says "revoked on …" from then on.
- `new_link` rotates the results link's nonce (the old link dies) and mails the new one.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailer.store import rows_changed
from rooms.tokens import LinkKind, LinkSigner, new_nonce, parse_link
from scheduler import assessments, webhooks
from scheduler.errors import Conflict, FieldError, ValidationFailed
from scheduler.models import Booking, Candidate, Result, ResultVersion
from scheduler.verification import CodeMaker, code_hash, lookup_hash

MailKind = Literal["results_published", "results_updated", "results_link"]


@dataclass(frozen=True)
class PartInput:
    name: str
    level: str
    score: float | None = None


@dataclass(frozen=True)
class ResultInput:
    """What the organisation certifies (the API's ResultIn, validated)."""

    overall_level: str
    target_reached: bool
    oral_level: str | None = None
    parts: Sequence[PartInput] = ()
    target_level: str | None = None
    reason: str | None = None  # required for a correction after publication


class ResultEffects(Protocol):
    """What follows a change, in its transaction: the candidate's e-mail."""

    async def results_mail(
        self,
        session: AsyncSession,
        result: Result,
        candidate: Candidate,
        *,
        kind: MailKind,
        reason: str | None,
        now: datetime,
    ) -> None: ...


def snapshot(result: Result) -> dict[str, Any]:
    """The certified content of a version, as kept in the history."""
    return {
        "version": result.version,
        "oral_level": result.oral_level,
        "parts": list(result.parts),
        "overall_level": result.overall_level,
        "target_level": result.target_level,
        "target_reached": result.target_reached,
        "updated_at": result.updated_at.isoformat(),
    }


def issued_at(result: Result) -> datetime:
    """The date of the published version: the PDFs' date and creation date."""
    assert result.published_at is not None
    return max(result.published_at, result.updated_at)


async def completed_booking(session: AsyncSession, candidate_id: uuid.UUID) -> Booking | None:
    """The candidate's completed interview (the latest, should there be several)."""
    return await session.scalar(
        select(Booking)
        .where(Booking.candidate_id == candidate_id, Booking.status == "completed")
        .order_by(Booking.start_at.desc())
        .limit(1)
    )


async def of_candidate(
    session: AsyncSession, candidate_id: uuid.UUID, *, for_update: bool = False
) -> Result | None:
    stmt = select(Result).where(Result.candidate_id == candidate_id)
    return await session.scalar(stmt.with_for_update() if for_update else stmt)


async def versions(session: AsyncSession, result_id: uuid.UUID) -> list[ResultVersion]:
    rows = await session.scalars(
        select(ResultVersion)
        .where(ResultVersion.result_id == result_id)
        .order_by(ResultVersion.version)
    )
    return list(rows)


def _parts(data: ResultInput) -> list[dict[str, Any]]:
    return [{"name": p.name, "level": p.level, "score": p.score} for p in data.parts]


async def save(
    session: AsyncSession,
    candidate: Candidate,
    data: ResultInput,
    *,
    actor_name: str,
    now: datetime,
    effects: ResultEffects,
) -> Result:
    """Record or correct the candidate's result; refusals change nothing."""
    # The candidate's row lock orders two first saves (PostgreSQL; SQLite has one writer):
    # the second finds the first's row instead of inserting a second one.
    await session.execute(
        select(Candidate.id).where(Candidate.id == candidate.id).with_for_update()
    )
    result = await of_candidate(session, candidate.id, for_update=True)
    if result is not None and result.revoked_at is not None:
        raise Conflict("this result's certificate was revoked: it can no longer be corrected")
    published = result is not None and result.published_at is not None
    reason = (data.reason or "").strip() or None
    if published and reason is None:
        raise ValidationFailed(
            [FieldError("reason", "a published result is corrected only with a reason")]
        )
    booking = await completed_booking(session, candidate.id)
    oral = data.oral_level
    if oral is None and booking is not None:
        submitted = await assessments.submitted(session, booking.id)
        if submitted is not None:
            oral = submitted.overall_level
    if result is None:
        result = Result(
            id=uuid.uuid4(),
            organisation_id=candidate.organisation_id,
            candidate_id=candidate.id,
            version=1,
            created_at=now,
            link_nonce=new_nonce(),
        )
        session.add(result)
    elif published:
        session.add(
            ResultVersion(
                id=uuid.uuid4(),
                result_id=result.id,
                organisation_id=result.organisation_id,
                version=result.version,
                data=snapshot(result),
                replaced_at=now,
                actor_name=actor_name,
                reason=reason,
            )
        )
        result.version += 1
    result.booking_id = booking.id if booking is not None else result.booking_id
    result.oral_level = oral
    result.parts = _parts(data)
    result.overall_level = data.overall_level
    result.target_level = data.target_level
    result.target_reached = data.target_reached
    result.updated_at = now
    await session.flush()
    if published:
        await effects.results_mail(
            session, result, candidate, kind="results_updated", reason=reason, now=now
        )
        await _tell_webhooks(session, result, "result.published", now)
    return result


async def _tell_webhooks(
    session: AsyncSession, result: Result, event_type: str, now: datetime
) -> None:
    """In the change's transaction, like every webhook (scheduler.webhooks.store)."""
    assert result.published_at is not None
    data: dict[str, Any] = {
        "result_id": result.id,
        "candidate_id": result.candidate_id,
        "booking_id": result.booking_id,
        "version": result.version,
        "oral_level": result.oral_level,
        "overall_level": result.overall_level,
        "target_level": result.target_level,
        "target_reached": result.target_reached,
        "published_at": result.published_at,
    }
    if event_type == "result.revoked":
        data["revoked_at"] = result.revoked_at
        data["reason"] = result.revoke_reason or ""
    await webhooks.enqueue(
        session, result.organisation_id, event_type, data, now=now, booking_id=result.booking_id
    )


async def publish(
    session: AsyncSession,
    result: Result,
    candidate: Candidate,
    *,
    codes: CodeMaker,
    now: datetime,
    effects: ResultEffects,
) -> bool:
    """Publish the result and mail the candidate, once: False when it already was.

    Tells the webhooks (`result.published`) only when it publishes.
    """
    if result.revoked_at is not None:
        raise Conflict("this result's certificate was revoked")
    changed = await session.execute(
        update(Result)
        .where(Result.id == result.id, Result.published_at.is_(None))
        .values(published_at=now, code_hash=code_hash(codes.code(result.id)))
        .execution_options(synchronize_session=False)
    )
    await session.refresh(result)
    if rows_changed(changed) == 0:
        return False
    await effects.results_mail(
        session, result, candidate, kind="results_published", reason=None, now=now
    )
    await _tell_webhooks(session, result, "result.published", now)
    return True


async def revoke(session: AsyncSession, result: Result, *, reason: str, now: datetime) -> bool:
    """Revoke the certificate: False when it already was (the first date stands).

    Tells the webhooks (`result.revoked`) only when it revokes.
    """
    if result.published_at is None:
        raise Conflict("only a published result can be revoked")
    if not reason.strip():
        raise ValidationFailed([FieldError("reason", "say why the certificate is revoked")])
    changed = await session.execute(
        update(Result)
        .where(Result.id == result.id, Result.revoked_at.is_(None))
        .values(revoked_at=now, revoke_reason=reason.strip())
        .execution_options(synchronize_session=False)
    )
    await session.refresh(result)
    if rows_changed(changed) == 0:
        return False
    await _tell_webhooks(session, result, "result.revoked", now)
    return True


async def new_link(
    session: AsyncSession,
    result: Result,
    candidate: Candidate,
    *,
    now: datetime,
    effects: ResultEffects,
) -> Result:
    """A new results link for the candidate; the old one stops working at the commit."""
    if result.published_at is None:
        raise Conflict("the result is not published: there is no link to re-issue yet")
    result.link_nonce = new_nonce()
    await session.flush()
    await effects.results_mail(
        session, result, candidate, kind="results_link", reason=None, now=now
    )
    return result


# --- the results link and the verification code --------------------------------------------


def results_token(signer: LinkSigner, result: Result) -> str:
    return signer.make(LinkKind.RESULTS, result.id, result.link_nonce)


async def resolve_link(session: AsyncSession, signer: LinkSigner, token: str) -> Result | None:
    """The published result a results link opens, or None (unknown, old, unpublished)."""
    link = parse_link(token, LinkKind.RESULTS)
    if link is None:
        return None
    result = await session.get(Result, link.ident)
    if result is None or not signer.verify(link, result.link_nonce):
        return None
    return result if result.published_at is not None else None


async def find_by_code(session: AsyncSession, typed: str) -> Result | None:
    """The published result a typed verification code names, or None.

    Always one indexed look-up, whatever was typed (scheduler.verification.lookup_hash):
    an unknown code, a malformed one and a real one cost the same.
    """
    wanted = lookup_hash(typed)
    result = await session.scalar(select(Result).where(Result.code_hash == wanted))
    found = result.code_hash if result is not None and result.code_hash else "0" * 64
    if not hmac.compare_digest(found, wanted) or result is None or result.published_at is None:
        return None
    return result
