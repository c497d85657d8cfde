"""No secret in logs (issue 9 §2): `viva serve` as deployed, then grep all it wrote.

The server runs in its own process with its own logging set-up (`viva serve`, DEBUG level),
on SQLite. A candidate books through the pages, both participants open their room (page,
/info, the WebSocket, the connection test), a guesser tries links and keys, and handlers
fail with a link in the request (the candidates table taken away under the server). Then
nothing the process wrote — stdout, stderr, any file in its data folder — may contain a
link token or the API key; the fingerprints that replace them must be there, so the lines
can still be matched.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from scheduler.logs import fingerprint
from tests.conftest import SECRET, token_of
from tests.support.polling import eventually

ROOT = Path(__file__).resolve().parents[2]
NO_LINK = "AQGSK8DTeOxOCrTyqzi5K-LR0Qe8lsZuf-k8HwvxnoCgyw"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.data = tmp / "data"
        self.db_path = tmp / "viva.db"
        self.stdout = tmp / "stdout.log"
        self.stderr = tmp / "stderr.log"
        self.env = {
            **os.environ,
            "VIVA_DATABASE_URL": f"sqlite+aiosqlite:///{self.db_path}",
            "VIVA_SERVER_SECRET_KEY": SECRET,
            "VIVA_SERVER_PORT": str(self.port),
            "VIVA_SERVER_BASE_URL": self.base,
            "VIVA_SERVER_DATA_DIR": str(self.data),
            "VIVA_SERVER_LOG_LEVEL": "DEBUG",
            "VIVA_POLICY_MIN_NOTICE_HOURS": "0",
            "VIVA_ROOMS_OPEN_BEFORE_MINUTES": "1440",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def viva(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "scheduler.cli", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=120,
        )
        return done.stdout.decode()

    def start(self) -> None:
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scheduler.cli", "serve"],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=err,
            )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def everything_written(self) -> str:
        texts = [self.stdout.read_bytes(), self.stderr.read_bytes()]
        for path in self.data.rglob("*"):
            if path.is_file() and path.name != "secret_key":
                texts.append(path.read_bytes())
        return b"\n".join(texts).decode("utf-8", "replace")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(tmp_path)
    yield server
    server.stop()


async def until_healthy(http: aiohttp.ClientSession, served: Served) -> None:
    async def healthy() -> bool:
        assert served.proc is not None and served.proc.poll() is None, "viva serve exited"
        try:
            async with http.get("/healthz") as resp:
                return resp.status == 200
        except aiohttp.ClientConnectionError:
            return False

    await eventually(healthy, "viva serve to answer /healthz", within=60, interval=0.1)


async def call(http: aiohttp.ClientSession, method: str, path: str, key: str, **kw: Any) -> Any:
    headers = {"Authorization": f"Bearer {key}"}
    async with http.request(method, f"/api/v1{path}", headers=headers, **kw) as resp:
        assert resp.status < 300, (resp.status, await resp.text())
        return await resp.json()


async def hello_of(http: aiohttp.ClientSession, path: str) -> dict[str, Any]:
    async with http.ws_connect(path) as ws:
        message: dict[str, Any] = await ws.receive_json(timeout=30)
        await ws.send_str(json.dumps({"type": "leave"}))
    return message


@pytest.mark.slow
async def test_no_link_or_key_in_anything_the_server_writes(served: Served) -> None:
    created = json.loads(served.viva("org", "create", "--name", "Logs", "--email", "o@logs.test"))
    api_key = created["api_key"]
    served.start()
    async with aiohttp.ClientSession(served.base) as http:
        await until_healthy(http, served)
        every_day = [
            {"day": day, "start": "00:00", "end": "23:40"}
            for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        ]
        ev = await call(
            http,
            "POST",
            "/evaluators",
            api_key,
            json={
                "name": "Eve",
                "email": "eve@logs.test",
                "timezone": "UTC",
                "languages": ["en"],
                "locale": "en",
            },
        )
        await call(
            http,
            "PUT",
            f"/evaluators/{ev['id']}/availability",
            api_key,
            json={"weekly": every_day, "overrides": []},
        )
        cand = await call(
            http,
            "POST",
            "/candidates",
            api_key,
            json={
                "name": "Cam",
                "email": "cam@logs.test",
                "language": "en",
                "locale": "en",
                "timezone": "UTC",
            },
        )
        link = token_of(cand["link"])

        # The candidate books through the pages: calendar, confirm step, the form.
        async with http.get(f"/c/{link}") as resp:
            assert resp.status == 200
        async with http.get(f"/c/{link}/slots") as resp:
            start = (await resp.json())["slots"][0]["start"]
        async with http.get(f"/c/{link}/confirm", params={"start": start}) as resp:
            assert resp.status == 200
        async with http.post(
            f"/c/{link}/book", data={"start": start}, allow_redirects=False
        ) as resp:
            assert resp.status == 303, await resp.text()
        async with http.get(f"/c/{link}", params={"booked": "1"}) as resp:
            assert resp.status == 200
        booking = (await call(http, "GET", f"/candidates/{cand['id']}", api_key))["booking"]
        rooms = (await call(http, "GET", f"/bookings/{booking['id']}", api_key))["rooms"]
        room_tokens = [token_of(rooms["candidate"]), token_of(rooms["evaluator"])]

        # Both participants open their room: the page, /info, the WebSocket, the echo test.
        for token in room_tokens:
            for path in (f"/r/{token}", f"/r/{token}/info"):
                async with http.get(path) as resp:
                    assert resp.status == 200, path
            assert (await hello_of(http, f"/r/{token}/ws"))["type"] == "hello"
            assert (await hello_of(http, f"/r/{token}/echo"))["mode"] == "echo"

        # A guesser: links that do not resolve, a wrong key.
        for path in (f"/c/{NO_LINK}", f"/r/{NO_LINK}/info", f"/c/{link}=/slots"):
            async with http.get(path) as resp:
                assert resp.status == 404, path
        async with http.get(
            "/api/v1/organisation", headers={"Authorization": f"Bearer {api_key}x"}
        ) as resp:
            assert resp.status == 401

        # Handlers that fail with a link in the request: the table they read is gone.
        with sqlite3.connect(served.db_path) as conn:
            conn.execute("ALTER TABLE candidates RENAME TO candidates_gone")
        for path in (f"/c/{link}", f"/c/{link}/slots", f"/r/{room_tokens[0]}/info"):
            async with http.get(path) as resp:
                assert resp.status == 500, path
    served.stop()

    written = served.everything_written()
    secrets = {"candidate link": link, "API key": api_key}
    secrets |= {f"room link {i}": token for i, token in enumerate(room_tokens)}
    for what, secret in secrets.items():
        assert secret not in written, f"the {what} is in the server's output"
        assert secret[:20] not in written, f"the start of the {what} is in the server's output"
    # What replaced them is there: the lines can still be matched to a link.
    assert f"/c/{fingerprint(link)}/book" in written
    assert f"/r/{fingerprint(room_tokens[0])}/ws" in written
    assert f"/r/{fingerprint(room_tokens[1])}/echo" in written
    assert "Traceback" in written and "unhandled error on GET /c/" in written
