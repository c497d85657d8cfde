"""The organisation's calendar version: a number that changes whenever its slots may have.

Every process caches the free times it computed (scheduler.free_times), keyed by this
number, so the number must move in the same transaction as every change that can alter a
slot: a booking made, moved, cancelled, locked, held or ended, and an evaluator added,
changed or removed. Rather than trust each write path to remember it, one session hook
watches what every flush writes: a flushed `Booking` or `Evaluator` marks its organisation,
and just before the commit the marked organisations' versions are raised. A write path added
later is covered without knowing about caches; a bulk Core UPDATE of those tables would not
be: such a write calls `touch` (tests/scheduler/test_free_times.py proves the main paths).

The raise is the transaction's last statement: on PostgreSQL it takes the organisation's row
lock, and holding it only over the commit keeps concurrent bookings of one organisation from
queueing behind each other for longer than that. Readers read the version *before* the rows
they compute from, so a cached answer can only be newer than its key, never older.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import bindparam, event, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction, UOWTransaction

from scheduler.models import Booking, Evaluator, Organisation
from scheduler.sql import any_of

__all__ = ["read_version", "touch"]

_MARKED = "viva.calendar_orgs"
_WATCHED = (Booking, Evaluator)

_READ = select(Organisation.calendar_version).where(Organisation.id == bindparam("org"))
_RAISE = (
    update(Organisation.__table__)
    .where(any_of(Organisation.__table__.c.id, "orgs"))
    .values(calendar_version=Organisation.__table__.c.calendar_version + 1)
)


async def read_version(session: AsyncSession, organisation_id: uuid.UUID) -> int:
    """The organisation's current calendar version (0 for an unknown organisation)."""
    return (await session.scalar(_READ, {"org": organisation_id})) or 0


def touch(session: AsyncSession, organisation_id: uuid.UUID) -> None:
    """For a write the hook cannot see (a Core UPDATE or DELETE of bookings or evaluators):
    the organisation's version is raised at this transaction's commit all the same."""
    session.sync_session.info.setdefault(_MARKED, set()).add(organisation_id)


def _mark(session: Session, objects: Any) -> None:
    for obj in objects:
        if isinstance(obj, _WATCHED):
            session.info.setdefault(_MARKED, set()).add(obj.organisation_id)


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _flush: UOWTransaction, _instances: Any) -> None:
    # Dirty objects whose columns did not change are skipped by the flush; they are skipped
    # here too, so that merely touching a booking does not invalidate every cache.
    _mark(session, session.new)
    _mark(session, session.deleted)
    _mark(session, (obj for obj in session.dirty if session.is_modified(obj)))


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint's release (scheduler.evaluator_choice): the outer commit raises
    session.flush()  # what is still pending marks its organisation too
    orgs = session.info.pop(_MARKED, None)
    if orgs:
        session.connection().execute(_RAISE, {"orgs": sorted(orgs, key=str)})


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    # Only the outermost transaction forgets: a savepoint rolled back may leave marks of what
    # its transaction still holds, and an extra raise costs one recomputation, never a slot.
    if transaction.parent is None:
        session.info.pop(_MARKED, None)
