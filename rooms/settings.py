"""The `[rooms]` section of config.toml, owned by rooms and composed by `scheduler.config`.

Pure data: nothing here imports aiortc, so loading the configuration stays cheap;
`rooms.relay.rtc_configuration` turns it into aiortc objects.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

RelayMode = Literal["forward", "transcode"]
X264Preset = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"]


class IceServer(BaseModel, frozen=True, extra="forbid"):
    """One STUN or TURN server handed to the server's peer connections."""

    urls: list[str] = Field(
        min_length=1,
        description="stun:host:port or turn:host:port?transport=udp|tcp URLs of one server.",
    )
    username: str | None = Field(default=None, description="TURN user name.")
    credential: str | None = Field(
        default=None, repr=False, description="TURN password; kept out of repr() and logs."
    )


class RoomsSettings(BaseModel, frozen=True, extra="forbid"):
    """How the server relays a room's media, and when and how long a room is open."""

    relay: RelayMode = Field(
        default="forward",
        description=(
            "'forward' passes each participant's VP8 and Opus packets to the other without "
            "decoding them (about 0.02 core per video stream); 'transcode' decodes and "
            "re-encodes every frame with aiortc's MediaRelay (about 0.10 core per stream), "
            "kept for comparison."
        ),
    )
    ice_servers: list[IceServer] = Field(
        default_factory=list,
        description=(
            "STUN/TURN servers for the server's peer connections. Empty: host candidates "
            "only, and no lookup ever leaves the machine."
        ),
    )
    turn_urls: list[str] = Field(
        default_factory=list,
        description=(
            "TURN server URLs (turn:host:3478?transport=udp, turn:host:443?transport=tcp, "
            "turns:host:443?transport=tcp) of a coturn in shared-secret mode: every "
            "participant, and the server's own peer connections, get credentials made with "
            "turn_secret that expire when the room closes."
        ),
    )
    turn_secret: str = Field(
        default="",
        repr=False,
        description="coturn's static-auth-secret; kept out of repr() and logs.",
    )
    max_video_bitrate: int = Field(
        default=0,
        ge=0,
        description=(
            "Ceiling (bits/s) announced to each participant's browser for the video it sends, "
            "on top of the bandwidth the other participant reports. 0: no ceiling (TOML has "
            "no null, so 0 stands for none)."
        ),
    )
    open_before_minutes: int = Field(
        default=15,
        ge=0,
        le=24 * 60,
        description="The room opens this long before the interview starts (device check, lobby).",
    )
    close_after_minutes: int = Field(
        default=30,
        ge=0,
        le=24 * 60,
        description="The room closes this long after the interview's planned end (overruns).",
    )
    interview_target_minutes: int = Field(
        default=20,
        ge=15,
        le=20,
        description="The length the evaluator's timer aims at (CLOE: 15 to 20 minutes).",
    )
    no_show_after_minutes: int = Field(
        default=10,
        ge=1,
        le=120,
        description="A candidate who has not joined this long after the start is a no-show.",
    )
    public_url: str = Field(
        default="",
        description=(
            "When several processes serve /r/: the base URL at which THIS process is "
            "reachable directly (e.g. https://rooms-2.viva.example). Each live room is then "
            "held by one process (a lease in the database) and the others send late "
            "arrivals there. Empty: one process serves every room."
        ),
    )
    recording_allowed: bool = Field(
        default=True,
        description=(
            "Whether organisations may turn recording on for their interviews (each one "
            "decides through the API; off by default). false: nothing is ever recorded on "
            "this server and the API refuses to turn it on."
        ),
    )
    recording_preset: X264Preset = Field(
        default="ultrafast",
        description=(
            "x264 preset of the recordings' video. Measured per recorded room (two "
            "640x480 cameras, bench/rooms.py --record): ultrafast 0.32 core, superfast "
            "0.44, veryfast 0.69. Slower presets make smaller files (up to about half, on "
            "busy pictures) at the same quality."
        ),
    )
    recordings_dir: str = Field(
        default="",
        description=(
            "Folder for the recordings, one Matroska file per booking's room session. "
            "Empty: the 'recordings' folder under [server] data_dir. With several "
            "processes, a folder they all share (any of them may serve the API)."
        ),
    )

    @field_validator("max_video_bitrate")
    @classmethod
    def _ceiling(cls, value: int) -> int:
        # Below this a VP8 picture is unusable; 0 keeps meaning "no ceiling".
        if 0 < value < 50_000:
            raise ValueError("0 (no ceiling) or at least 50000 bits/s")
        return value

    @field_validator("turn_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> Any:
        # VIVA_ROOMS_TURN_URLS="turn:a:3478?transport=udp,turns:a:443?transport=tcp".
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("turn_urls")
    @classmethod
    def _turn_scheme(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("turn:", "turns:")):
                raise ValueError(f"{url!r}: TURN URLs start with turn: or turns:")
        return value

    @model_validator(mode="after")
    def _turn_pair(self) -> RoomsSettings:
        # One without the other would hand browsers TURN servers they cannot log in to, or
        # keep a secret that is never used: both are configuration mistakes.
        if bool(self.turn_urls) != bool(self.turn_secret):
            raise ValueError("turn_urls and turn_secret go together: set both or neither")
        return self

    @field_validator("ice_servers", mode="before")
    @classmethod
    def _json_from_environment(cls, value: Any) -> Any:
        # VIVA_ROOMS_ICE_SERVERS='[{"urls": ["stun:..."]}]': the environment carries strings.
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError as exc:
                raise ValueError("a JSON list of {urls, username, credential}") from exc
        return value
