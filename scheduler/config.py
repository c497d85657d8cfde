"""Configuration: `config.toml`, an optional overlay file, then `VIVA_<SECTION>_<KEY>`.

Parsed once into frozen models and passed down; nothing else reads the environment. Unknown
keys are errors, so a typo in a deployment's file cannot silently fall back to a default.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mailer.settings import SmtpSettings
from rooms.settings import RoomsSettings
from scheduler.policy import Policy

ROOT = Path(__file__).resolve().parent.parent
# The documented defaults of a checkout. An installed wheel has no such file: the settings
# models below hold the same defaults (tests/scheduler/test_config.py checks they agree), and
# a deployment names its own file with --config.
DEFAULT_CONFIG = ROOT / "config.toml"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    base_url: str = "http://127.0.0.1:8080"
    # Keys every link's HMAC: kept out of repr() so a logged Settings never yields links.
    secret_key: str = Field("", repr=False)
    data_dir: str = "var"
    dev_mode: bool = False
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class DatabaseSettings(_Section):
    url: str = "sqlite+aiosqlite:///var/viva.db"
    pool_size: int = Field(10, ge=1)
    busy_timeout_seconds: float = Field(5.0, gt=0, le=60)


class PolicySettings(_Section):
    interview_minutes: int = Field(20, ge=5, le=240)
    buffer_minutes: int = Field(10, ge=0, le=240)
    slot_step_minutes: int = Field(20, ge=5, le=240)
    min_notice_hours: int = Field(24, ge=0)
    booking_horizon_days: int = Field(60, ge=1, le=730)
    change_lock_hours: int = Field(24, ge=0)
    max_interviews_per_evaluator_per_day: int = Field(8, ge=1)

    def to_policy(self) -> Policy:
        return Policy(**self.model_dump())


class ReminderSettings(_Section):
    """When Viva reminds people of an interview, and how its timers are kept (scheduler.timers)."""

    hours_before: list[int] = [48, 1]
    sweep_seconds: float = Field(30.0, ge=1, le=3600)
    lookahead_minutes: int = Field(10, ge=1, le=24 * 60)

    @field_validator("hours_before", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        # VIVA_REMINDERS_HOURS_BEFORE="48,1" (the environment only carries strings).
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("hours_before")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        if any(hours < 1 or hours > 24 * 60 for hours in value):
            raise ValueError("each reminder is 1 to 1440 hours before the start")
        if len(set(value)) != len(value):
            raise ValueError("the same reminder is listed twice")
        return value

    @model_validator(mode="after")
    def _lookahead_covers_sweeps(self) -> ReminderSettings:
        # A timer gets its in-memory job at a sweep; the look-ahead must reach past the next
        # sweeps, or timers would wait for a sweep instead of firing on time.
        if self.lookahead_minutes * 60 < 2 * self.sweep_seconds:
            raise ValueError("lookahead_minutes must cover at least two sweeps")
        return self


class SecuritySettings(_Section):
    """Throttling of link and key guessers (scheduler.web.throttle)."""

    max_failures: int = Field(20, ge=1)
    window_seconds: int = Field(60, ge=1, le=24 * 3600)
    storage_uri: str = "memory://"
    trusted_proxies: list[str] = []

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        # VIVA_SECURITY_TRUSTED_PROXIES="10.0.0.1,10.0.0.2"
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(f"not an address or network: {entry!r}") from exc
        return value

    @field_validator("storage_uri")
    @classmethod
    def _storage(cls, value: str) -> str:
        scheme = value.removeprefix("async+").partition("://")[0]
        if scheme not in ("memory", "redis", "rediss", "redis+sentinel", "redis+cluster"):
            raise ValueError("memory:// or a redis:// URI")
        return value


class MetricsSettings(_Section):
    """Who may read GET /metrics (scheduler.metrics); nobody until configured."""

    allow_from: list[str] = []
    # Whoever holds it reads the figures: kept out of repr() like the other secrets.
    bearer_token: str = Field("", repr=False)

    @field_validator("allow_from", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):  # VIVA_METRICS_ALLOW_FROM="127.0.0.1,10.0.0.0/8"
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("allow_from")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # ValueError names the bad entry
        return value


class RetentionSettings(_Section):
    """How long personal data is kept by default, in days after the interview (0: for
    ever), and how the daily retention run goes (scheduler.retention, retention_runs).

    One `<kind>_days` per kind of scheduler.retention.KINDS (a test checks they agree); an
    organisation overrides them through `PUT /api/v1/organisation/retention`.
    """

    recordings_days: int = Field(30, ge=0, le=36500)
    private_notes_days: int = Field(365, ge=0, le=36500)
    assessments_days: int = Field(1095, ge=0, le=36500)
    attendance_days: int = Field(365, ge=0, le=36500)
    outbox_bodies_days: int = Field(90, ge=0, le=36500)
    candidates_days: int = Field(730, ge=0, le=36500)
    # The hour (UTC) of each organisation's daily run.
    run_at_hour: int = Field(3, ge=0, le=23)
    # Items deleted per transaction: small enough that no lock is held long.
    batch_size: int = Field(200, ge=1, le=10000)
    # How often each process looks for a run that is due (and takes over a crashed one).
    check_minutes: float = Field(10.0, gt=0, le=24 * 60)
    # A run's claim lasts this long past its last batch; a process that died holding it is
    # replaced once it lapses.
    lease_minutes: float = Field(15.0, gt=0, le=24 * 60)

    def days(self, kind: str) -> int:
        value = getattr(self, f"{kind}_days")
        assert isinstance(value, int)
        return value


class CalendarsSettings(_Section):
    """Evaluators' own calendars, read for busy times (scheduler.external_calendars)."""

    refresh_minutes: int = Field(15, ge=1, le=24 * 60)
    timeout_seconds: float = Field(10.0, gt=0, le=120)
    max_bytes: int = Field(5_000_000, ge=10_000, le=100_000_000)
    max_per_evaluator: int = Field(5, ge=1, le=20)
    allow_private_networks: bool = False


class WebhookSettings(_Section):
    """Delivery of the organisations' webhooks (scheduler.webhooks)."""

    # Deliver to loopback, private and link-local addresses outside dev mode (tests, or a
    # receiver on the same private network). Off: server-side request forgery is refused.
    allow_private_targets: bool = False
    timeout_seconds: float = Field(10.0, gt=0, le=60)
    max_response_bytes: int = Field(65536, ge=0, le=1024 * 1024)
    retry_hours: float = Field(24.0, gt=0, le=24 * 7)
    backoff_base_seconds: float = Field(10.0, gt=0, le=3600)
    backoff_max_seconds: float = Field(3600.0, gt=0, le=24 * 3600)
    secret_grace_hours: float = Field(24.0, ge=0, le=24 * 30)
    batch_size: int = Field(20, ge=1, le=1000)
    concurrency: int = Field(8, ge=1, le=100)
    poll_interval_seconds: float = Field(5.0, gt=0, le=3600)
    lease_seconds: float = Field(60.0, ge=5, le=3600)

    @model_validator(mode="after")
    def _lease_outlasts_a_request(self) -> WebhookSettings:
        # No heartbeat: a claim's lease must outlast its request, or another worker could
        # send the same delivery while the first one is still on the wire.
        if self.lease_seconds < 2 * self.timeout_seconds:
            raise ValueError("lease_seconds must be at least twice timeout_seconds")
        return self

    def backoff(self, attempts: int) -> float:
        """Seconds before the next try after `attempts` failed ones: doubling, capped."""
        doubled: float = self.backoff_base_seconds * 2.0 ** max(0, attempts - 1)
        return min(self.backoff_max_seconds, doubled)


class Settings(_Section):
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    policy: PolicySettings = PolicySettings()
    smtp: SmtpSettings = SmtpSettings()
    reminders: ReminderSettings = ReminderSettings()
    rooms: RoomsSettings = RoomsSettings()
    security: SecuritySettings = SecuritySettings()
    metrics: MetricsSettings = MetricsSettings()
    retention: RetentionSettings = RetentionSettings()
    calendars: CalendarsSettings = CalendarsSettings()
    webhooks: WebhookSettings = WebhookSettings()

    @property
    def data_path(self) -> Path:
        return Path(self.server.data_dir)

    @property
    def recordings_path(self) -> Path:
        return Path(self.rooms.recordings_dir or self.data_path / "recordings")


class ConfigError(Exception):
    """Raised with a message a person can act on; `viva` prints it and exits."""


def _merge(base: dict[str, Any], over: Mapping[str, Any], where: str) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping):
            if not isinstance(merged.get(key, {}), Mapping):
                raise ConfigError(f"{where}: [{key}] is a value, not a section")
            merged[key] = _merge(dict(merged.get(key, {})), value, where)
        else:
            merged[key] = value
    return merged


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Map VIVA_<SECTION>_<KEY> onto the sections the models declare.

    Section names have no underscore, so the first `_` after the prefix splits section
    from key (VIVA_POLICY_CHANGE_LOCK_HOURS -> policy.change_lock_hours).
    """
    sections = set(Settings.model_fields)
    out: dict[str, dict[str, str]] = {}
    for name, value in environ.items():
        if not name.startswith("VIVA_"):
            continue
        section, _, key = name[5:].lower().partition("_")
        if section in sections and key:
            out.setdefault(section, {})[key] = value
    return out


def load_settings(
    overlay: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    defaults: Path = DEFAULT_CONFIG,
) -> Settings:
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    for path in (defaults, overlay):
        if path is None or (path == DEFAULT_CONFIG and not path.is_file()):
            continue
        try:
            with open(path, "rb") as fh:
                data = _merge(data, tomllib.load(fh), str(path))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    data = _merge(data, _env_overrides(environ), "environment")
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from exc


def secret_key(settings: Settings) -> bytes:
    """The HMAC key for links; generated once into the data folder in dev mode only."""
    if settings.server.secret_key:
        return settings.server.secret_key.encode()
    if not settings.server.dev_mode:
        raise ConfigError(
            "server.secret_key is empty: set it (or VIVA_SERVER_SECRET_KEY) to a long random "
            "string kept outside the database; dev mode generates one."
        )
    path = settings.data_path / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()
