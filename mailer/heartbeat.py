"""A claimed batch of outbox rows while it is sent: the rows, and the heartbeat that keeps
their lease and stops the send it can no longer cover (mailer.outbox sends; this holds what
it watches with)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

__all__ = ["Claimed", "ConnectionLost", "Heartbeat", "LeaseLost"]


@dataclass(frozen=True)
class Claimed:
    id: uuid.UUID
    recipient: str
    message_id: str
    raw: bytes
    attempts: int
    created_at: datetime
    organisation_id: uuid.UUID
    booking_id: uuid.UUID | None
    kind: str
    token: str = ""  # claimed_by of this claim: fences every later write


class LeaseLost(Exception):
    """The batch's lease could not be kept; what is left of it is not ours to send."""


class Heartbeat:
    """Keeps a batch's lease alive while it is sent, and stops the send it can no longer
    cover (`lose`)."""

    def __init__(self, rows: Sequence[Claimed], lease_seconds: float) -> None:
        self.rows = rows
        self.index = 0  # rows before it are done with
        self.ours: set[uuid.UUID] = {row.id for row in rows}
        self.lease_seconds = lease_seconds
        # Loop time taken just before the last renewal that succeeded (before the claim's
        # first check, the heartbeat's creation): the lease runs at least a lease from it.
        self.renewed_at = asyncio.get_running_loop().time()
        self.sending: asyncio.Future[Exception | None] | None = None
        self.current: uuid.UUID | None = None
        self.lost: str | None = None

    def vouched_until(self) -> float:
        """Loop time until which the lease is surely ours, with a margin (a tenth of a lease)
        for clocks that run at different rates and for the stopped send to wind down."""
        return self.renewed_at + self.lease_seconds * 0.9

    def lose(self, why: str) -> None:
        if self.lost is None:
            self.lost = why
        if self.sending is not None and not self.sending.done():
            self.sending.cancel()


class ConnectionLost(Exception):
    """The SMTP session is unusable; the rest of the batch waits for the next pass."""
