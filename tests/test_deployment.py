"""The whole path of a deployment, end to end (issue 11 §5).

Debian's nginx terminates TLS (a self-signed certificate) on loopback in front of two
`viva serve` processes sharing one PostgreSQL database, through the very snippet an
organisation installs (deploy/nginx/viva-locations.conf); Debian's coturn runs in
shared-secret mode. In Chromium, over https and wss through nginx: a candidate books,
both participants open their room links, their pages reach different processes, the
candidate's is sent to the process holding the room (its direct address, `[rooms]
public_url`), both browsers may use TURN relays only (`?ice=relay`, a dev-mode switch),
and remote video plays on both sides. coturn's log shows the browsers' allocations, made
with Viva's short-lived credentials, and the bytes they relayed.

Which process serves the shared address is pinned per browser by a cookie in this test's
own server block (round robin would make "different processes" a matter of luck); the
direct addresses and everything proxied are as in deploy/nginx/viva.conf.

Skipped, with the reason, on a machine without nginx, coturn, PostgreSQL, Chromium or
Playwright; mandatory with VIVA_REQUIRE_E2E=1, as in CI (.ci/run).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from scheduler.logs import fingerprint
from tests.conftest import PG_ADMIN_URL, _pg_admin, token_of
from tests.support.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.postgres, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
SNIPPET = REPO / "deploy" / "nginx" / "viva-locations.conf"
NGINX = Path(os.environ.get("VIVA_NGINX", "/usr/sbin/nginx"))
TURNSERVER = Path(os.environ.get("VIVA_TURNSERVER", "/usr/bin/turnserver"))
CHROMIUM = Path(os.environ.get("VIVA_CHROMIUM", "/usr/bin/chromium"))
REQUIRE = os.environ.get("VIVA_REQUIRE_E2E") == "1"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    # Chromium ignores loopback for WebRTC sockets unless told (the TURN server is there).
    "--allow-loopback-in-peer-connection",
]
TURN_SECRET = "e2e-" + uuid.uuid4().hex
REALM = "viva.test"
# Generous: polling ends as soon as the condition holds; nothing here measures time.
START_TIMEOUT = 180.0
MEDIA_TIMEOUT_MS = 45_000
UI_TIMEOUT_MS = 20_000


def _missing(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"the end-to-end test is required (VIVA_REQUIRE_E2E=1) but {reason}")
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port free on loopback now (also free for UDP, checked)."""
    while True:
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


@dataclass
class Child:
    """A server started by the test, its output in a file (read when a test fails)."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, name: str, argv: list[str], folder: Path, **kw: Any) -> Child:
        log = folder / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **kw)
        return cls(name, proc, log)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def until(self, pattern: str, what: str, within: float = START_TIMEOUT) -> re.Match[str]:
        """Bounded polling of the output for `pattern`."""

        def found() -> re.Match[str] | None:
            if match := re.search(pattern, self.text()):
                return match
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited: {what}\n{self.text()[-3000:]}")
            return None

        return await eventually(found, f"{self.name}: {what}", within=within, interval=0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class Deployment:
    folder: Path
    base: str  # the shared address (nginx, round robin in production)
    direct: list[str]  # each process's own address through nginx ([rooms] public_url)
    viva: list[Child]
    nginx: Child
    coturn: Child
    database: str
    api_key: str
    children: list[Child] = field(default_factory=list)

    def diagnostics(self) -> str:
        return "\n".join(f"--- {c.name}\n{c.text()[-4000:]}" for c in self.children)


async def _run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """A command to its end, off the event loop; its output shown if it fails."""
    done = await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True)
    assert done.returncode == 0, (argv[:4], done.stdout[-2000:], done.stderr[-2000:])
    return done


async def _wait_https(session: aiohttp.ClientSession, url: str) -> None:
    async def answers() -> bool:
        try:
            async with session.get(url, ssl=False) as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    await eventually(answers, f"{url} to answer", within=START_TIMEOUT, interval=0.2)


def _nginx_conf(folder: Path, ports: dict[str, int]) -> str:
    """deploy/nginx/viva.conf's shape on loopback ports, including the shipped snippet."""
    user = "user root;" if os.geteuid() == 0 else ""
    temp = " ".join(
        f"{kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi")
    )
    servers = []
    for index, backend in ((1, "viva_1"), (2, "viva_2")):
        servers.append(
            f"""
    server {{
        listen 127.0.0.1:{ports[f"direct{index}"]} ssl;
        set $viva_backend {backend};
        include {SNIPPET};
    }}"""
        )
    return f"""
{user}
daemon off;
worker_processes 1;
pid {folder / "nginx.pid"};
error_log stderr info;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    {temp}
    uwsgi_temp_path {folder / "uwsgi"};
    scgi_temp_path {folder / "scgi"};
    access_log {folder / "nginx-access.log"};
    ssl_certificate {folder / "cert.pem"};
    ssl_certificate_key {folder / "key.pem"};
    upstream viva {{
        server 127.0.0.1:{ports["viva1"]};
        server 127.0.0.1:{ports["viva2"]};
        keepalive 16;
    }}
    upstream viva_1 {{ server 127.0.0.1:{ports["viva1"]}; keepalive 8; }}
    upstream viva_2 {{ server 127.0.0.1:{ports["viva2"]}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{ports["main"]} ssl;
        set $viva_backend viva;
        # This test's pin (not in deploy/): the browser's cookie picks the process.
        if ($cookie_viva_e2e_process = "1") {{ set $viva_backend viva_1; }}
        if ($cookie_viva_e2e_process = "2") {{ set $viva_backend viva_2; }}
        include {SNIPPET};
    }}
    {"".join(servers)}
}}
"""


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    for binary, package in ((NGINX, "nginx"), (TURNSERVER, "coturn"), (CHROMIUM, "chromium")):
        if not binary.exists():
            _missing(f"there is no {binary} (apt install {package})")
    if shutil.which("openssl") is None:
        _missing("there is no openssl to make the test certificate")
    name = f"viva_e2e_{uuid.uuid4().hex[:12]}"
    try:
        await _pg_admin(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        _missing(f"no PostgreSQL at {PG_ADMIN_URL}: {exc}")
    database = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    children: list[Child] = []
    try:
        await _run(
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem"),
        )  # fmt: skip
        ports = {k: free_port() for k in ("viva1", "viva2", "main", "direct1", "direct2", "turn")}
        relay_low = 50_000 + (os.getpid() % 150) * 100

        coturn = Child.start(
            "coturn",
            [
                str(TURNSERVER),
                "-n",
                "--log-file=stdout",
                "--simple-log",
                "--verbose",
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                f"--listening-port={ports['turn']}",
                f"--min-port={relay_low}",
                f"--max-port={relay_low + 99}",
                f"--realm={REALM}",
                "--use-auth-secret",
                f"--static-auth-secret={TURN_SECRET}",
                "--allow-loopback-peers",
                "--fingerprint",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "--no-multicast-peers",
                f"--pidfile={tmp_path / 'turnserver.pid'}",
                f"--userdb={tmp_path / 'turndb'}",
            ],
            tmp_path,
        )
        children.append(coturn)
        await coturn.until(rf"UDP listener opened on:?\s*127\.0\.0\.1:{ports['turn']}", "listen")

        base = f"https://127.0.0.1:{ports['main']}"
        direct = [f"https://127.0.0.1:{ports[f'direct{i}']}" for i in (1, 2)]
        common = {
            **os.environ,
            "VIVA_DATABASE_URL": database,
            "VIVA_SERVER_BASE_URL": base,
            "VIVA_SERVER_SECRET_KEY": "e2e-" + uuid.uuid4().hex,
            # Dev mode for the relay-only switch; the mailbox stays local (no SMTP host).
            "VIVA_SERVER_DEV_MODE": "true",
            "VIVA_SMTP_HOST": "",
            # Book a slot starting soon, and be let into its room at once.
            "VIVA_POLICY_MIN_NOTICE_HOURS": "0",
            "VIVA_ROOMS_OPEN_BEFORE_MINUTES": "1440",
            "VIVA_ROOMS_TURN_URLS": (
                f"turn:127.0.0.1:{ports['turn']}?transport=udp,"
                f"turn:127.0.0.1:{ports['turn']}?transport=tcp"
            ),
            "VIVA_ROOMS_TURN_SECRET": TURN_SECRET,
        }
        cli = [sys.executable, "-m", "scheduler.cli"]
        # deploy/viva-migrate.service: once, before the processes start.
        await _run(*cli, "migrate", env={**common, "VIVA_SERVER_DATA_DIR": str(tmp_path)})
        made = await _run(
            *cli, "org", "create", "--name", "CCI Formation", "--email", "oral@cci.example",
            env={**common, "VIVA_SERVER_DATA_DIR": str(tmp_path)},
        )  # fmt: skip
        api_key = json.loads(made.stdout)["api_key"]
        viva = []
        for index in (1, 2):
            env = {
                **common,
                "VIVA_SERVER_PORT": str(ports[f"viva{index}"]),
                "VIVA_SERVER_DATA_DIR": str(tmp_path / f"data{index}"),
                "VIVA_ROOMS_PUBLIC_URL": direct[index - 1],
            }
            child = Child.start(f"viva{index}", [*cli, "serve"], tmp_path, env=env, cwd=tmp_path)
            children.append(child)
            viva.append(child)

        (tmp_path / "nginx.conf").write_text(_nginx_conf(tmp_path, ports))
        nginx = Child.start(
            "nginx",
            [str(NGINX), "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", "stderr"],
            tmp_path,
        )
        children.append(nginx)
        async with aiohttp.ClientSession() as session:
            for url in (*direct, base):
                await _wait_https(session, url + "/healthz")
        deployed = Deployment(
            tmp_path, base, direct, viva, nginx, coturn, database, api_key, children
        )
        yield deployed
    finally:
        for child in reversed(children):
            child.stop()
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("Playwright is not installed (pip install playwright)")
    async with async_playwright() as playwright:
        try:
            launched = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
        except Exception as exc:
            _missing(f"Chromium did not start: {exc}")
        try:
            yield launched
        finally:
            await launched.close()


PEERS_SCRIPT = """
(() => {
  const Native = window.RTCPeerConnection;
  window.vivaPeers = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); window.vivaPeers.push(this); }
  };
})();
"""
# The live peer connection's policy, and the local candidate of its selected pair.
PATH_SCRIPT = """async () => {
  const pc = window.vivaPeers.filter((p) => p.connectionState === "connected").pop();
  if (!pc) return null;
  const stats = [...(await pc.getStats()).values()];
  const transport = stats.find((s) => s.type === "transport" && s.selectedCandidatePairId);
  if (!transport) return null;
  const pair = stats.find((s) => s.id === transport.selectedCandidatePairId);
  const local = stats.find((s) => s.id === pair.localCandidateId);
  return {
    policy: pc.getConfiguration().iceTransportPolicy,
    local: local.candidateType,
    sent: pair.bytesSent,
    received: pair.bytesReceived,
  };
}"""


class Tab:
    """One participant's browser context, its console and the WebSockets it opened."""

    def __init__(self, name: str, page: Any) -> None:
        self.name = name
        self.page = page
        self.log: list[str] = []
        self.sockets: list[str] = []
        page.on("console", lambda m: self.log.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.log.append(f"pageerror: {e}"))
        page.on("websocket", lambda ws: self.sockets.append(ws.url))

    @classmethod
    async def open(cls, browser: Any, name: str, base: str, process: int) -> Tab:
        context = await browser.new_context(ignore_https_errors=True)
        # Keep a hand on the page's peer connections, to read their configuration and stats.
        await context.add_init_script(PEERS_SCRIPT)
        await context.add_cookies(
            [{"name": "viva_e2e_process", "value": str(process), "url": base}]
        )
        return cls(name, await context.new_page())

    async def until(self, script: str, what: str, within_ms: int = UI_TIMEOUT_MS) -> Any:
        try:
            return await self.page.wait_for_function(script, timeout=within_ms, polling=200)
        except Exception as exc:
            raise AssertionError(f"{self.name}: {what}\n" + "\n".join(self.log[-30:])) from exc

    async def remote_plays(self) -> None:
        playing = """() => {
            const v = document.querySelector("#remote-video");
            return v && v.videoWidth > 0 && v.currentTime > 0 && !v.paused ? v.currentTime : 0;
        }"""
        first = await (
            await self.until(playing, "remote video plays", MEDIA_TIMEOUT_MS)
        ).json_value()
        moved = f"() => document.querySelector('#remote-video').currentTime > {first}"
        await self.until(moved, "remote video keeps playing", MEDIA_TIMEOUT_MS)


async def _api(
    session: aiohttp.ClientSession, d: Deployment, method: str, path: str, **kw: Any
) -> Any:
    headers = {"Authorization": f"Bearer {d.api_key}"}
    async with session.request(
        method, d.base + "/api/v1" + path, headers=headers, ssl=False, **kw
    ) as response:
        body = await response.json(content_type=None) if response.status != 204 else None
        assert response.status < 300, (method, path, response.status, body)
        return body


async def _lease(database: str, booking_id: str) -> str | None:
    import asyncpg

    conn = await asyncpg.connect(database.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        url: str | None = await conn.fetchval(
            "SELECT url FROM room_hosts WHERE booking_id = $1", uuid.UUID(booking_id)
        )
        return url
    finally:
        await conn.close()


async def test_booking_then_an_interview_through_nginx_and_turn(
    deployment: Deployment, chromium: Any
) -> None:
    d = deployment
    try:
        await _interview(d, chromium)
    except BaseException:
        print(d.diagnostics())
        raise


async def _interview(d: Deployment, chromium: Any) -> None:
    async with aiohttp.ClientSession() as session:
        evaluator_row = await _api(
            session,
            d,
            "POST",
            "/evaluators",
            json={
                "name": "Évelyne Examinatrice",
                "email": "eva@cci.example",
                "timezone": "UTC",
                "languages": ["en"],
                "locale": "en",
            },
        )
        every_day = [
            {"day": day, "start": "00:00", "end": "23:40"}
            for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        ]
        await _api(
            session,
            d,
            "PUT",
            f"/evaluators/{evaluator_row['id']}/availability",
            json={"weekly": every_day, "overrides": []},
        )
        person = await _api(
            session,
            d,
            "POST",
            "/candidates",
            json={
                "name": "Camille Candidate",
                "email": "camille@example.org",
                "language": "en",
                "locale": "en",
                "timezone": "UTC",
            },
        )

        # The candidate books in the browser, over https through nginx (process 2's pages).
        candidate = await Tab.open(chromium, "candidate", d.base, process=2)
        evaluator = await Tab.open(chromium, "evaluator", d.base, process=1)
        try:
            assert person["link"].startswith(d.base + "/c/")
            await candidate.page.goto(person["link"])
            await candidate.page.locator("a.slot").first.click()
            await candidate.page.locator("form.confirm button[type=submit]").click()
            await candidate.page.wait_for_load_state()
            listed = await _api(session, d, "GET", "/bookings")
            assert len(listed["bookings"]) == 1, listed
            booking = await _api(session, d, "GET", f"/bookings/{listed['bookings'][0]['id']}")
            assert booking["status"] in ("confirmed", "locked"), booking
            rooms = booking["rooms"]

            # Both open their links with TURN relays only; the evaluator arrives first, on
            # process 1, which takes the room.
            await evaluator.page.goto(rooms["evaluator"] + "?ice=relay")
            await evaluator.page.click("#join")
            await evaluator.until(
                "() => document.getElementById('call').dataset.phase === 'lobby'", "in the lobby"
            )
            await candidate.page.goto(rooms["candidate"] + "?ice=relay")
            await candidate.page.click("#join")
            await candidate.until(
                "() => document.getElementById('call').dataset.phase === 'lobby'", "in the lobby"
            )
            await evaluator.until("() => !document.getElementById('admit').disabled", "admit")
            await evaluator.page.click("#admit")
            for tab in (evaluator, candidate):
                await tab.until(
                    "() => document.getElementById('conn').dataset.state === 'connected'",
                    "connected",
                )
                await tab.remote_plays()

            # Each browser's media takes a relay of coturn, nothing else.
            for tab in (evaluator, candidate):
                path = await tab.page.evaluate(PATH_SCRIPT)
                assert path is not None, tab.log[-20:]
                assert path["policy"] == "relay" and path["local"] == "relay", path
                assert path["sent"] > 0 and path["received"] > 0, path

            # Landed on different processes: the candidate's socket went to process 2 through
            # the shared address, which sent it to process 1's direct address.
            token = {role: token_of(url) for role, url in rooms.items()}
            host = d.base.removeprefix("https://")
            direct1 = d.direct[0].removeprefix("https://")
            assert candidate.sockets[:2] == [
                f"wss://{host}/r/{token['candidate']}/ws",
                f"wss://{direct1}/r/{token['candidate']}/ws",
            ], candidate.sockets
            assert all(s.startswith(f"wss://{host}/") for s in evaluator.sockets)
            assert await _lease(d.database, booking["id"]) == d.direct[0]

            # The media went through coturn, with Viva's short-lived credentials: each
            # browser allocated a relay as "<window end>:<booking>-<role>" and sent through it.
            for role in ("candidate", "evaluator"):
                user = rf"\d+:{booking['id']}-{role}"
                await d.coturn.until(
                    rf"user <{user}>: incoming packet ALLOCATE processed, success", role
                )
            # Leaving closes the peer connections, which ends their TURN allocations: coturn
            # then logs each one's byte counts.
            for tab in (candidate, evaluator):
                await tab.page.click("#leave")
        finally:
            for tab in (candidate, evaluator):
                await tab.page.context.close()

    # Each process logs a WebSocket once it has closed: the candidate's was on both
    # processes (sent from 2 to 1), the evaluator's on process 1 only.
    viva1, viva2 = d.viva
    # The access log names a link by its fingerprint only (scheduler.logs), never in clear.
    logged = {role: f"GET /r/{fingerprint(token[role])}/ws " for role in token}
    for child, role in ((viva2, "candidate"), (viva1, "candidate"), (viva1, "evaluator")):
        await child.until(re.escape(logged[role]), f"{role}'s socket logged")
    assert logged["evaluator"] not in viva2.text()
    assert not any(token[role] in child.text() for role in token for child in (viva1, viva2))

    # coturn logged each browser's allocations ending, with the bytes relayed through them.
    for role in ("candidate", "evaluator"):
        user = f"{booking['id']}-{role}"
        await eventually(
            lambda user=user: _relayed(d.coturn.text(), user) >= 20_000,
            f"coturn to log the {role}'s relayed bytes",
            within=START_TIMEOUT,
            interval=0.5,
        )


def _relayed(log: str, user: str) -> int:
    """Bytes to and from `user`'s ended allocations ("<expiry>:<user>"), by coturn's log."""
    pattern = re.compile(rf"\busage: realm=<[^>]*>, username=<\d+:{re.escape(user)}>, (.*)")
    total = 0
    for line in log.splitlines():
        if found := pattern.search(line):
            counts = dict(part.split("=") for part in found.group(1).split(", "))
            total += int(counts["rb"]) + int(counts["sb"])
    return total
