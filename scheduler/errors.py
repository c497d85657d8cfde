"""Domain errors. The web layer translates them into HTTP answers in one place
(scheduler/web/problems.py)."""

from __future__ import annotations

from dataclasses import dataclass


class VivaError(Exception):
    """Base of errors a request can cause; never a server fault."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str = "", **extra: object) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class ValidationFailed(VivaError):
    status = 422
    title = "Invalid request"

    def __init__(self, errors: list[FieldError], detail: str = "") -> None:
        super().__init__(detail or "; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


class NotFound(VivaError):
    status = 404
    title = "Not found"


class Unauthorized(VivaError):
    status = 401
    title = "Unauthorized"


class Conflict(VivaError):
    status = 409
    title = "Conflict"


class SlotTaken(Conflict):
    title = "Slot no longer available"


class AlreadyBooked(Conflict):
    title = "Candidate already has a booking"


class DeadlinePassed(Conflict):
    title = "Booking deadline passed"


class Forbidden(VivaError):
    status = 403
    title = "Forbidden"


class Locked(Forbidden):
    title = "Changes are closed"


class NoBooking(Conflict):
    title = "No active booking"


class Busy(VivaError):
    """The database could not take this write in time (SQLite's write lock held elsewhere):
    nothing was changed, and the same request may simply be sent again shortly."""

    status = 503
    title = "Service busy"

    def __init__(self, detail: str = "", *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
