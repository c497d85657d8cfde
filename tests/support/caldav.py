"""A real CalDAV server for the tests: Radicale, run as a child process on a free port.

Authentication is htpasswd with plain passwords, so the tests also prove that Viva sends
the stored (encrypted, then decrypted) credentials. Without Radicale installed the tests
that need it skip with the reason; with VIVA_REQUIRE_CALDAV=1 (CI, .ci/run) they fail.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from icalendar import Timezone

from tests.support.polling import eventually

REQUIRE_CALDAV = os.environ.get("VIVA_REQUIRE_CALDAV") == "1"
USER = "eva"
PASSWORD = "app-pass-7Qx!"


def require_radicale() -> None:
    if importlib.util.find_spec("radicale") is None:
        reason = "Radicale is not installed (dev dependency `radicale`)"
        if REQUIRE_CALDAV:
            pytest.fail(f"a CalDAV server is required (VIVA_REQUIRE_CALDAV=1) but {reason}")
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Radicale:
    """One Radicale server with one user and one calendar collection, `url`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/{USER}/work/"
        self._process: subprocess.Popen[bytes] | None = None
        users = folder / "users"
        users.write_text(f"{USER}:{PASSWORD}\n")
        self._args = [
            sys.executable,
            "-m",
            "radicale",
            "--server-hosts",
            f"127.0.0.1:{self.port}",
            "--storage-filesystem-folder",
            str(folder / "collections"),
            "--auth-type",
            "htpasswd",
            "--auth-htpasswd-filename",
            str(users),
            "--auth-htpasswd-encryption",
            "plain",
            "--logging-level",
            "warning",
        ]
        self.auth = {"Authorization": aiohttp.encode_basic_auth(USER, PASSWORD)}

    def _spawn(self) -> None:
        with (self.folder / "log").open("ab") as log:
            self._process = subprocess.Popen(self._args, stdout=subprocess.DEVNULL, stderr=log)

    async def start(self) -> None:
        self._spawn()

        async def answers() -> bool:
            assert self._process is not None
            if self._process.poll() is not None:
                pytest.fail(f"Radicale exited: {(self.folder / 'log').read_text()}")
            try:
                async with aiohttp.ClientSession() as http:
                    async with http.request("OPTIONS", self.base + "/") as resp:
                        return resp.status < 500
            except aiohttp.ClientError:
                return False

        await eventually(answers, "Radicale to answer")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None

    async def _call(self, method: str, url: str, body: str | None = None) -> int:
        headers = {"Content-Type": "text/calendar; charset=utf-8"} if body else {}
        async with aiohttp.ClientSession(headers=self.auth) as http:
            async with http.request(method, url, data=body, headers=headers) as resp:
                return resp.status

    async def make_calendar(self) -> None:
        assert await self._call("MKCALENDAR", self.url) == 201

    async def put(self, uid: str, vevents: str) -> None:
        """Store one calendar object holding `vevents` (with any VTIMEZONE it needs)."""
        body = (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//tests//EN\r\n"
            + vevents.strip().replace("\n", "\r\n")
            + "\r\nEND:VCALENDAR\r\n"
        )
        assert await self._call("PUT", f"{self.url}{uid}.ics", body) in (201, 204)

    async def get(self, name: str) -> tuple[int, bytes]:
        async with aiohttp.ClientSession(headers=self.auth) as http:
            async with http.get(f"{self.url}{name}.ics") as resp:
                return resp.status, await resp.read()

    async def delete(self, uid: str) -> None:
        assert await self._call("DELETE", f"{self.url}{uid}.ics") in (200, 204)


def vtimezone(tzid: str) -> str:
    zone = Timezone.from_tzinfo(
        ZoneInfo(tzid), tzid=tzid, first_date=date(2026, 1, 1), last_date=date(2028, 1, 1)
    )
    return zone.to_ical().decode().replace("\r\n", "\n").strip()


def event(uid: str, start: str, end: str, *extra: str, tzid: str = "Europe/Paris") -> str:
    """A VEVENT at local times `start`/`end` (YYYYMMDDTHHMMSS) in `tzid`, with its VTIMEZONE."""
    lines = [
        vtimezone(tzid),
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20261101T000000Z",
        f"DTSTART;TZID={tzid}:{start}",
        f"DTEND;TZID={tzid}:{end}",
        "SUMMARY:Teaching",
        *extra,
        "END:VEVENT",
    ]
    return "\n".join(lines)


async def caldav_evaluator(org: Any, server: Radicale, **kw: Any) -> dict[str, Any]:
    ev = await org.make_evaluator(**kw)
    calendars = [{"type": "caldav", "url": server.url, "username": USER, "password": PASSWORD}]
    await org.ok("PUT", f"/evaluators/{ev['id']}/calendars", json={"calendars": calendars})
    return ev
