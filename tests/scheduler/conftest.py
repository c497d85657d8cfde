"""Fixtures for scheduler tests that deliver mail to a real SMTP server (aiosmtpd)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.config import Settings, load_settings
from tests.conftest import app_environ
from tests.mailer.mailer_support import SmtpServer


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mail_settings(db_url: str, tmp_path: Path, smtp_server: SmtpServer) -> Settings:
    """App settings whose outbox delivers to `smtp_server`."""
    return load_settings(
        environ=app_environ(
            db_url,
            tmp_path,
            VIVA_SMTP_HOST="127.0.0.1",
            VIVA_SMTP_PORT=str(smtp_server.port),
            VIVA_SMTP_SECURITY="none",
            VIVA_SMTP_FROM_ADDRESS="viva@viva.test",
        )
    )
