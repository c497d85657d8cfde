"""config.toml is the documentation: every key there is loaded, commented, and vice versa."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from scheduler.config import DEFAULT_CONFIG, ConfigError, Settings, load_settings, secret_key


def _keys_with_comments(text: str) -> dict[tuple[str, str], bool]:
    """Each key must sit in a block (lines between blank lines) that opens with a comment."""
    section, block_commented = "", False
    documented: dict[tuple[str, str], bool] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            block_commented = False
        elif stripped.startswith("#"):
            block_commented = True
        elif m := re.fullmatch(r"\[(\w+)\]", stripped):
            section, block_commented = m.group(1), False
        elif m := re.match(r"(\w+)\s*=", stripped):
            documented[(section, m.group(1))] = block_commented
    return documented


def test_every_key_is_documented_and_loaded() -> None:
    text = DEFAULT_CONFIG.read_text()
    data = tomllib.loads(text)
    documented = _keys_with_comments(text)
    undocumented = [k for k, ok in documented.items() if not ok]
    assert undocumented == []
    model_keys = {
        (section, key)
        for section, field in Settings.model_fields.items()
        for key in field.annotation.model_fields  # type: ignore[union-attr]
    }
    file_keys = {(s, k) for s, values in data.items() for k in values}
    assert file_keys == model_keys
    # The defaults in the file are the defaults in the code.
    for section, values in data.items():
        model: BaseModel = getattr(Settings(), section)
        for key, value in values.items():
            assert getattr(model, key) == value, (section, key)


def test_overlay_then_environment(tmp_path: Path) -> None:
    overlay = tmp_path / "site.toml"
    overlay.write_text('[server]\nport = 9000\nbase_url = "https://viva.example"\n')
    settings = load_settings(
        overlay, environ={"VIVA_SERVER_PORT": "9100", "VIVA_POLICY_CHANGE_LOCK_HOURS": "48"}
    )
    assert settings.server.port == 9100
    assert settings.server.base_url == "https://viva.example"
    assert settings.policy.change_lock_hours == 48
    assert settings.policy.interview_minutes == 20


@pytest.mark.parametrize(
    ("content", "environ", "needle"),
    [
        ("[server]\nprot = 1\n", {}, "server.prot"),
        ("[policy]\ninterview_minutes = 0\n", {}, "policy.interview_minutes"),
        ("", {"VIVA_SMTP_SECURITY": "ssl"}, "smtp.security"),
        ("[server\n", {}, "site.toml"),
    ],
)
def test_bad_configuration_is_a_clear_error(
    tmp_path: Path, content: str, environ: dict[str, str], needle: str
) -> None:
    overlay = tmp_path / "site.toml"
    overlay.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_settings(overlay, environ=environ)
    assert needle in str(info.value)


def test_secret_key_is_required_outside_dev_mode(tmp_path: Path) -> None:
    env = {"VIVA_SERVER_DATA_DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match="secret_key"):
        secret_key(load_settings(environ=env))
    dev = load_settings(environ={**env, "VIVA_SERVER_DEV_MODE": "true"})
    generated = secret_key(dev)
    assert len(generated) >= 32
    assert secret_key(dev) == generated  # generated once, then kept
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_no_secret_reaches_the_repr_of_the_settings() -> None:
    """A logged or printed Settings must not carry what makes links or logs in elsewhere."""
    secrets = {
        "VIVA_SERVER_SECRET_KEY": "server-secret-5f1c0b7e9a",
        "VIVA_SMTP_PASSWORD": "smtp-password-3d8e2a",
        "VIVA_ROOMS_TURN_SECRET": "turn-secret-9c4b1f",
        "VIVA_METRICS_BEARER_TOKEN": "metrics-token-7a2e61",
    }
    ice = '[{"urls": ["turn:ice.example:3478"], "username": "u", "credential": "ice-cred-4b9d"}]'
    settings = load_settings(
        environ={
            **secrets,
            "VIVA_ROOMS_TURN_URLS": "turn:turn.example:3478?transport=udp",
            "VIVA_ROOMS_ICE_SERVERS": ice,
        }
    )
    assert settings.server.secret_key == secrets["VIVA_SERVER_SECRET_KEY"]
    assert settings.metrics.bearer_token == secrets["VIVA_METRICS_BEARER_TOKEN"]
    assert settings.rooms.ice_servers[0].credential == "ice-cred-4b9d"
    secrets["ice credential"] = "ice-cred-4b9d"
    shown = repr(settings) + str(settings)
    for value in secrets.values():
        assert value not in shown
