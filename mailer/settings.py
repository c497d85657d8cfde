"""The `[smtp]` section of config.toml, owned by the mailer and composed by `scheduler.config`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from mailer.message import validate_address


class SmtpSettings(BaseModel, frozen=True, extra="forbid"):
    """How, and how stubbornly, the outbox hands messages to an SMTP server.

    Unknown keys are errors (like every other section) so that a misspelt key in a
    deployment file cannot silently fall back to a default.
    """

    host: str = Field(
        default="",
        description=(
            "SMTP server name. Empty: nothing leaves the machine; messages are marked "
            "delivered to the local dev mailbox (/dev/mail) so development needs no server."
        ),
    )
    port: int = Field(
        default=587,
        ge=1,
        le=65535,
        description="587 for starttls, 465 for tls, 25 for none.",
    )
    username: str = Field(
        default="",
        description="Login name; empty means the server is used without authentication.",
    )
    password: str = Field(
        default="",
        repr=False,
        description="Password for `username`; kept out of repr() so it never reaches a log.",
    )
    security: Literal["none", "starttls", "tls"] = Field(
        default="starttls",
        description=(
            "Transport security. 'starttls' is required, not opportunistic: a server that "
            "does not offer it is an error rather than a silent plain-text fallback."
        ),
    )
    from_address: str = Field(
        default="viva@localhost",
        description=(
            "Envelope sender and From address of every message. The organisation's own "
            "address is the calendar ORGANIZER and the Reply-To, so answers reach people."
        ),
    )
    timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds before a connection or a command is abandoned (and retried).",
    )
    max_attempts: int = Field(
        default=12,
        ge=1,
        description=(
            "Delivery attempts before a message is marked failed for good. With the default "
            "backoff, 12 attempts span about three hours: long enough to ride out a server "
            "restart, short enough that the organisation learns of a problem the same day."
        ),
    )
    backoff_base_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Wait after the first failed attempt; it doubles after each further one.",
    )
    backoff_max_seconds: float = Field(
        default=1800.0,
        gt=0,
        description="Ceiling of the wait between two attempts.",
    )
    batch_size: int = Field(
        default=50,
        ge=1,
        description="Messages claimed and sent over one SMTP connection per delivery pass.",
    )
    lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description=(
            "How long a claimed message may stay 'sending' before another worker may take "
            "it over (the first one presumably crashed). The worker extends it every third "
            "of it while it sends, and stops a send whose lease it cannot extend, so it only "
            "bounds how long a crashed worker's messages wait."
        ),
    )
    poll_interval_seconds: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Longest sleep of the delivery loop when nobody wakes it; it bounds how late a "
            "retry whose backoff has elapsed is picked up."
        ),
    )

    linger_seconds: float = Field(
        default=0.1,
        ge=0,
        le=5,
        description=(
            "After a wake-up (a booking committed), how long the delivery loop waits before "
            "claiming, so that a burst's messages go in one claim and one SMTP connection "
            "instead of one each. 0: claim at once."
        ),
    )

    @field_validator("from_address")
    @classmethod
    def _valid_from_address(cls, value: str) -> str:
        """Fail at start-up, not at the first booking, when the sender address is unusable."""
        return validate_address(value)

    @property
    def message_id_domain(self) -> str:
        """The right-hand side of Message-IDs: the sender's domain, which we are entitled to."""
        return self.from_address.rpartition("@")[2]

    def backoff_seconds(self, attempts: int) -> float:
        """Wait before the next attempt, after `attempts` failed ones (exponential, capped)."""
        exponent = max(attempts - 1, 0)
        # Cap the exponent too, so a huge attempt count cannot overflow the float.
        return min(self.backoff_base_seconds * 2.0 ** min(exponent, 32), self.backoff_max_seconds)
