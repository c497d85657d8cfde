"""What a room leaves behind: attendance and the interview's state, in the rooms' own MetaData.

Live peer connections die with the process; these rows do not, so a restart costs the
participants a reconnection but never their admission, the ID check, the step reached, the
outcome or the evaluator's notes. The scheduler's Alembic migrations include this MetaData
(`scheduler.migrate.target_metadata`).

There is no foreign key to `bookings`: that table belongs to another MetaData, and rooms
must not import the scheduler. `booking_id` is indexed instead.

Repository functions take the session first and a `now`/instant from the caller: the
database never stamps times itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Index,
    MetaData,
    String,
    Text,
    Uuid,
    delete,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mailer.primitives import UTCDateTime

__all__ = [
    "Attendance",
    "Consent",
    "Recording",
    "RoomAttendance",
    "RoomConsent",
    "RoomHost",
    "RoomRecord",
    "RoomRecording",
    "RoomReport",
    "RoomState",
    "UTCDateTime",  # its old home, which the migrations 0005 and 0006 name
    "attendance",
    "candidate_joined_before",
    "claim_host",
    "consented",
    "consents",
    "forget_recording",
    "load_state",
    "metadata",
    "record_consent",
    "record_join",
    "record_leave",
    "recording_finished",
    "recording_started",
    "recordings",
    "release_host",
    "renew_hosts",
    "restart",
    "room_report",
    "save_state",
]


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class _Base(DeclarativeBase):
    metadata = metadata
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), uuid.UUID: Uuid()}


class RoomAttendance(_Base):
    """One WebSocket of one participant: when it joined, when and why it left."""

    __tablename__ = "room_attendance"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    booking_id: Mapped[uuid.UUID]
    role: Mapped[str] = mapped_column(String(16))
    joined_at: Mapped[datetime]
    # Null while connected (or when the process died: there was nobody left to write it).
    left_at: Mapped[datetime | None]
    # left, disconnected, replaced, ended, expired, policy, shutdown, cancelled, moved
    # (docs/rooms.md).
    left_reason: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (Index("ix_room_attendance_booking_joined", "booking_id", "joined_at"),)


class RoomRecord(_Base):
    """The interview's progress, one row per booking, written before anyone is told."""

    __tablename__ = "room_states"
    booking_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    admitted_at: Mapped[datetime | None]
    id_checked_at: Mapped[datetime | None]
    interview_started_at: Mapped[datetime | None]
    step: Mapped[str | None] = mapped_column(String(16))
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(16))
    evaluator_notes: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime]


class RoomRecording(_Base):
    """One recorded room session: a file under the recordings folder.

    Written when recording starts, so that a process dying mid-interview still leaves the
    file listed (Matroska stays readable up to what was written); `ended_at` and `bytes`
    are filled in when it stops cleanly.
    """

    __tablename__ = "room_recordings"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    booking_id: Mapped[uuid.UUID] = mapped_column(index=True)
    # Relative to the recordings folder: the folder may move, the rows stay right.
    file: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    bytes: Mapped[int | None] = mapped_column(BigInteger)


class RoomConsent(_Base):
    """A participant's consent to the recording of a booking's room: who, when, and to
    which notice (the SHA-256 of the text they were shown), so that a changed notice asks
    again. Recording starts only once both participants' consents are stored."""

    __tablename__ = "room_consents"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    booking_id: Mapped[uuid.UUID]
    role: Mapped[str] = mapped_column(String(16))
    # The participant's name when they consented (an erasure anonymises it).
    name: Mapped[str] = mapped_column(String(200))
    notice: Mapped[str] = mapped_column(String(64))
    consented_at: Mapped[datetime]

    __table_args__ = (
        Index("uq_room_consents_booking_role_notice", "booking_id", "role", "notice", unique=True),
    )


class RoomHost(_Base):
    """Which process holds a booking's live room, when several serve `/r/` (a lease).

    Peer connections live in one process, so both participants must reach the same one:
    the first arrival's process takes the lease, renews it while the room is live and
    drops it when the room closes; another process sends later arrivals to `url`. A lease
    left by a crashed process expires at `until`, and the next arrival takes it over.
    """

    __tablename__ = "room_hosts"
    booking_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # One per live room object: a room closing never drops its successor's lease.
    lease_id: Mapped[uuid.UUID]
    # The holding process's own base URL (`[rooms] public_url`): distinct per process.
    url: Mapped[str] = mapped_column(String(300))
    until: Mapped[datetime]


@dataclass(frozen=True)
class RoomState:
    """The persistent part of a room, as plain values (`rooms.room` computes transitions)."""

    booking_id: uuid.UUID
    admitted_at: datetime | None = None
    id_checked_at: datetime | None = None
    interview_started_at: datetime | None = None
    step: str | None = None
    ended_at: datetime | None = None
    outcome: str | None = None
    notes: str = ""

    def but(self, **changes: Any) -> RoomState:
        return replace(self, **changes)


@dataclass(frozen=True)
class Attendance:
    role: str
    joined_at: datetime
    left_at: datetime | None
    left_reason: str | None


@dataclass(frozen=True)
class Recording:
    id: uuid.UUID
    file: str
    started_at: datetime
    ended_at: datetime | None
    bytes: int | None


@dataclass(frozen=True)
class Consent:
    role: str
    name: str
    notice: str
    consented_at: datetime


@dataclass(frozen=True)
class RoomReport:
    """What the organisation sees of a room: attendance, the interview's milestones and
    its recordings."""

    attendance: list[Attendance]
    recordings: list[Recording]
    consents: list[Consent]
    admitted_at: datetime | None
    id_checked_at: datetime | None
    interview_started_at: datetime | None
    step: str | None
    ended_at: datetime | None
    outcome: str | None


async def load_state(session: AsyncSession, booking_id: uuid.UUID) -> RoomState:
    """The room's state; a room nobody has entered yet is in its initial state."""
    row = await session.get(RoomRecord, booking_id)
    if row is None:
        return RoomState(booking_id)
    return RoomState(
        booking_id=booking_id,
        admitted_at=row.admitted_at,
        id_checked_at=row.id_checked_at,
        interview_started_at=row.interview_started_at,
        step=row.step,
        ended_at=row.ended_at,
        outcome=row.outcome,
        notes=row.evaluator_notes,
    )


async def save_state(session: AsyncSession, state: RoomState, *, now: datetime) -> None:
    """Write the whole state (a process serialises its room's writes; see rooms.room.Room)."""
    row = await session.get(RoomRecord, state.booking_id)
    if row is None:
        row = RoomRecord(booking_id=state.booking_id)
        session.add(row)
    row.admitted_at = state.admitted_at
    row.id_checked_at = state.id_checked_at
    row.interview_started_at = state.interview_started_at
    row.step = state.step
    row.ended_at = state.ended_at
    row.outcome = state.outcome
    row.evaluator_notes = state.notes
    row.updated_at = now
    await session.flush()


async def restart(session: AsyncSession, booking_id: uuid.UUID, *, now: datetime) -> None:
    """A moved booking's interview starts over: admission, ID check, steps and outcome are
    cleared (a candidate whose interview was interrupted must be let in again at the new
    time); the evaluator's notes and the attendance history are kept.

    The scheduler calls this in the move's own transaction, so the two never disagree.
    """
    row = await session.get(RoomRecord, booking_id)
    if row is None:
        return
    row.admitted_at = row.id_checked_at = row.interview_started_at = row.ended_at = None
    row.step = row.outcome = None
    row.updated_at = now
    await session.flush()


async def record_join(
    session: AsyncSession, booking_id: uuid.UUID, role: str, at: datetime
) -> uuid.UUID:
    row = RoomAttendance(id=uuid.uuid4(), booking_id=booking_id, role=role, joined_at=at)
    session.add(row)
    await session.flush()
    return row.id


async def record_leave(
    session: AsyncSession, attendance_id: uuid.UUID, at: datetime, reason: str
) -> None:
    row = await session.get(RoomAttendance, attendance_id)
    if row is not None and row.left_at is None:
        row.left_at = at
        row.left_reason = reason
        await session.flush()


async def attendance(session: AsyncSession, booking_id: uuid.UUID) -> list[Attendance]:
    rows = await session.scalars(
        select(RoomAttendance)
        .where(RoomAttendance.booking_id == booking_id)
        .order_by(RoomAttendance.joined_at, RoomAttendance.id)
    )
    return [Attendance(r.role, r.joined_at, r.left_at, r.left_reason) for r in rows]


async def candidate_joined_before(
    session: AsyncSession, booking_id: uuid.UUID, instant: datetime
) -> bool:
    """Whether the candidate had opened the room (lobby included) by `instant`.

    The scheduler's no-show timer asks this at start + `[rooms] no_show_after_minutes`:
    a candidate who joined in time and then lost their connection is not a no-show.
    """
    found = await session.scalar(
        select(RoomAttendance.id)
        .where(
            RoomAttendance.booking_id == booking_id,
            RoomAttendance.role == "candidate",
            RoomAttendance.joined_at <= instant,
        )
        .limit(1)
    )
    return found is not None


async def room_report(session: AsyncSession, booking_id: uuid.UUID) -> RoomReport:
    state = await load_state(session, booking_id)
    return RoomReport(
        attendance=await attendance(session, booking_id),
        recordings=await recordings(session, booking_id),
        consents=await consents(session, booking_id),
        admitted_at=state.admitted_at,
        id_checked_at=state.id_checked_at,
        interview_started_at=state.interview_started_at,
        step=state.step,
        ended_at=state.ended_at,
        outcome=state.outcome,
    )


async def record_consent(
    session: AsyncSession, booking_id: uuid.UUID, role: str, name: str, notice: str, at: datetime
) -> None:
    """Store a consent, once per notice: consenting again to the same text changes nothing."""
    found = await session.scalar(
        select(RoomConsent.id).where(
            RoomConsent.booking_id == booking_id,
            RoomConsent.role == role,
            RoomConsent.notice == notice,
        )
    )
    if found is None:
        session.add(
            RoomConsent(
                id=uuid.uuid4(),
                booking_id=booking_id,
                role=role,
                name=name,
                notice=notice,
                consented_at=at,
            )
        )
        await session.flush()


async def consented(
    session: AsyncSession,
    booking_id: uuid.UUID,
    role: str,
    notices: Collection[str] | None = None,
) -> bool:
    """Whether this participant's consent to the booking's recording is stored; with
    `notices`, a consent to one of those versions (an older text asks again)."""
    stmt = select(RoomConsent.id).where(
        RoomConsent.booking_id == booking_id, RoomConsent.role == role
    )
    if notices is not None:
        stmt = stmt.where(RoomConsent.notice.in_(list(notices)))
    found = await session.scalar(stmt.limit(1))
    return found is not None


async def consents(session: AsyncSession, booking_id: uuid.UUID) -> list[Consent]:
    rows = await session.scalars(
        select(RoomConsent)
        .where(RoomConsent.booking_id == booking_id)
        .order_by(RoomConsent.consented_at, RoomConsent.id)
    )
    return [Consent(r.role, r.name, r.notice, r.consented_at) for r in rows]


async def recording_started(
    session: AsyncSession, booking_id: uuid.UUID, file: str, at: datetime
) -> uuid.UUID:
    row = RoomRecording(id=uuid.uuid4(), booking_id=booking_id, file=file, started_at=at)
    session.add(row)
    await session.flush()
    return row.id


async def recording_finished(
    session: AsyncSession, recording_id: uuid.UUID, at: datetime, size: int
) -> None:
    row = await session.get(RoomRecording, recording_id)
    if row is not None and row.ended_at is None:
        row.ended_at = at
        row.bytes = size
        await session.flush()


async def forget_recording(session: AsyncSession, recording_id: uuid.UUID) -> None:
    """Drop a recording's entry (its file is the caller's to delete first)."""
    row = await session.get(RoomRecording, recording_id)
    if row is not None:
        await session.delete(row)
        await session.flush()


async def recordings(session: AsyncSession, booking_id: uuid.UUID) -> list[Recording]:
    rows = await session.scalars(
        select(RoomRecording)
        .where(RoomRecording.booking_id == booking_id)
        .order_by(RoomRecording.started_at, RoomRecording.id)
    )
    return [Recording(r.id, r.file, r.started_at, r.ended_at, r.bytes) for r in rows]


async def claim_host(
    session: AsyncSession,
    booking_id: uuid.UUID,
    *,
    lease_id: uuid.UUID,
    url: str,
    now: datetime,
    until: datetime,
) -> str | None:
    """Take the booking's room for the process at `url`; None if it is ours now, else the
    URL of the live process that holds it.

    A lease of our own URL is ours whatever its id (a room of ours that is closing, or
    this process before a restart); an expired one is anybody's. The row is locked, so two
    processes never both win; on PostgreSQL a simultaneous first insert fails with an
    IntegrityError, and claiming again finds the winner's row.
    """
    row = await session.get(RoomHost, booking_id, with_for_update=True)
    if row is None:
        session.add(RoomHost(booking_id=booking_id, lease_id=lease_id, url=url, until=until))
    elif row.url == url or row.until <= now:
        row.lease_id, row.url, row.until = lease_id, url, until
    else:
        return row.url
    await session.flush()
    return None


async def renew_hosts(
    session: AsyncSession, lease_ids: list[uuid.UUID], *, until: datetime
) -> set[uuid.UUID]:
    """Extend these leases; the ids of those still held (a lost one was taken over)."""
    if not lease_ids:
        return set()
    result = await session.execute(
        update(RoomHost)
        .where(RoomHost.lease_id.in_(lease_ids))
        .values(until=until)
        .returning(RoomHost.lease_id)
    )
    return set(result.scalars())


async def release_host(session: AsyncSession, booking_id: uuid.UUID, lease_id: uuid.UUID) -> None:
    await session.execute(
        delete(RoomHost).where(RoomHost.booking_id == booking_id, RoomHost.lease_id == lease_id)
    )
