"""Helpers shared by the mailer tests (imported by conftest.py and by the test modules).

A uniquely named module rather than imports from conftest.py: test directories have no
__init__.py, so every conftest.py is a top-level "conftest" module and importing from it
would be ambiguous.
"""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from sqlalchemy.ext.asyncio import create_async_engine

from mailer.models import metadata

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"
MAIL_PO = TEMPLATES / "locale" / "fr" / "LC_MESSAGES" / "mail.po"


class MovableClock:
    """Same contract as scheduler.clock.FrozenClock, kept local so the mailer tests stand alone."""

    def __init__(self, at: datetime) -> None:
        self._now = at

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta


@dataclass(frozen=True)
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: Any

    @property
    def message(self) -> EmailMessage:
        parsed = BytesParser(policy=default).parsebytes(self.data)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class RecordingHandler:
    """Accepts and records messages, or answers the reply the test sets."""

    received: list[Received] = field(default_factory=list)
    rcpt_reply: str | None = None
    data_reply: str | None = None
    # Accept this many messages, then drop the connection at the next DATA, without answering
    # (the message is not kept): the ambiguous case of a connection lost mid-transaction.
    drop_after: int | None = None
    connections: set[Any] = field(default_factory=set)
    # Called from the server's thread after each accepted message.
    on_received: Callable[[], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        with self.lock:
            self.connections.add(session.peer)
        return responses

    async def handle_RCPT(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        if self.drop_after is not None:
            if self.drop_after == 0:
                self.drop_after = None
                assert server.transport is not None
                server.transport.close()
                return "421 4.4.2 Connection dropped"  # never reaches the client
            self.drop_after -= 1
        content = envelope.original_content or b""
        assert envelope.mail_from is not None
        with self.lock:
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), content, session.peer)
            )
        if self.on_received is not None:
            self.on_received()
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SmtpServer:
    """An aiosmtpd server on a fixed local port that can go down and come back."""

    def __init__(self) -> None:
        self.handler = RecordingHandler()
        self.port = _free_port()
        self._controller: Controller | None = None

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def start(self) -> None:
        assert self._controller is None
        # A controller's loop is closed when it stops, so each start needs a new one.
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


async def create_schema(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
    finally:
        await engine.dispose()


def load_translations(po_path: Path = MAIL_PO, locale: str = "fr") -> Translations:
    """The way the app loads catalogs: read_po, compile to MO in memory, Translations."""
    with po_path.open("rb") as fh:
        catalog = read_po(fh, locale=locale)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)
