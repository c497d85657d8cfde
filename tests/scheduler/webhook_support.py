"""Webhook test helpers: a real receiver (aiohttp on a free loopback port) that verifies
every request with the Standard Webhooks reference library, and rows for tests that need a
webhook without going through the API."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook

from scheduler.models import WebhookDelivery, WebhookEndpoint
from scheduler.webhooks import enqueue
from scheduler.webhooks.secrets import SecretBox, new_secret
from tests.conftest import SECRET


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    event: dict[str, Any]


@dataclass
class Receiver:
    """Answers `status` (200 unless told otherwise); keeps what it verified, in order.

    Each request is verified with every secret in `secrets` (the reference library's
    `Webhook(secret).verify(body, headers)`); `verified_by` counts, per secret, the
    requests it verified."""

    secrets: list[str] = field(default_factory=list)
    status: int = 200
    received: list[Received] = field(default_factory=list)
    verified_by: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    # Answer 307 to /elsewhere instead (which counts its hits), or a 500 whose body begins
    # with this many bytes and never ends.
    redirect: bool = False
    elsewhere: int = 0
    body_size: int = 0
    # While set to an unset event, requests are received (counted in `waiting`) and held.
    hold: asyncio.Event | None = None
    waiting: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    _runner: web.AppRunner | None = None
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.hold is not None:
            self.waiting += 1
            await self.hold.wait()
        if self.redirect:
            self.refused += 1
            self.changed.set()
            raise web.HTTPTemporaryRedirect("/elsewhere")
        if self.body_size:
            # `body_size` bytes, then a body that never ends: only a client that stops
            # reading at its bound gets an answer before its timeout.
            self.refused += 1
            response = web.StreamResponse(status=500)
            await response.prepare(request)
            await response.write(b"x" * self.body_size)
            await self._released.wait()  # the receiver's end: the body never ends before
            return response
        if self.status != 200:
            self.refused += 1
            self.changed.set()
            return web.Response(status=self.status, text="down for maintenance")
        headers = dict(request.headers)
        event = None
        for secret in self.secrets:
            try:
                event = Webhook(secret).verify(body, headers)
            except Exception:
                continue
            self.verified_by[secret] = self.verified_by.get(secret, 0) + 1
        assert event is not None, "no secret verified the request"
        self.received.append(Received(headers, body, event))
        self.changed.set()
        return web.Response(text="ok")

    async def _elsewhere(self, request: web.Request) -> web.Response:
        self.elsewhere += 1
        return web.Response(text="followed")

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        app.router.add_post("/elsewhere", self._elsewhere)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        self._released.set()
        if self.hold is not None:
            self.hold.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def types(self) -> list[str]:
        return [r.event["type"] for r in self.received]


async def add_webhook_with_delivery(
    session: AsyncSession, organisation_id: uuid.UUID, now: datetime
) -> tuple[uuid.UUID, uuid.UUID]:
    """A webhook row (sealed with the tests' server secret) and one delivery of it, failed
    for good: the worker leaves it alone, so the rows stay as they are."""
    row = WebhookEndpoint(
        id=uuid.uuid4(),
        organisation_id=organisation_id,
        url="https://hooks.example/viva",
        events=["message.failed"],
        enabled=True,
        secret=SecretBox(SECRET.encode()).seal(new_secret()),
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    data = {
        "message_id": str(uuid.uuid4()),
        "booking_id": None,
        "kind": "reminder",
        "attempts": 3,
        "error": "550 no",
    }
    ids = await enqueue(session, organisation_id, "message.failed", data, now=now)
    await session.execute(
        update(WebhookDelivery).where(WebhookDelivery.id == ids[0]).values(status="failed")
    )
    return row.id, ids[0]


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
