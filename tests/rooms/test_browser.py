"""The room page in a real browser: Chromium (fake camera and microphone) against the real app
served on a real TCP port, one browser context per participant.

Skipped, with the reason, when Chromium or Playwright is missing; mandatory (failing instead)
with VIVA_REQUIRE_BROWSER=1, as in CI. Nothing here asserts a duration: media is polled with
generous timeouts until it plays.

The device check's connection test runs against the server's own loopback,
`/r/{token}/echo` (docs/rooms.md, "The connection test").
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from aiohttp import web

from scheduler import keys
from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.config import Settings, load_settings
from tests.conftest import SECRET, T0, Org, token_of

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path(os.environ.get("VIVA_CHROMIUM", "/usr/bin/chromium"))
REQUIRE_BROWSER = os.environ.get("VIVA_REQUIRE_BROWSER") == "1"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
OPENS = START - timedelta(minutes=15)
INSIDE = START - timedelta(minutes=10)
# Generous: a loaded CI machine decodes slowly. Polling ends as soon as the condition holds.
MEDIA_TIMEOUT_MS = 30_000
UI_TIMEOUT_MS = 15_000


def _missing(reason: str) -> None:
    if REQUIRE_BROWSER:
        pytest.fail(f"the browser tests are required (VIVA_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(reason)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 (a stat, before any loop work)
        _missing(f"there is no Chromium at {CHROMIUM}")
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


# --- the app on a real port ------------------------------------------------------------------


class Served:
    """The app on 127.0.0.1 with its clock, an HTTP session to it, and an organisation."""

    def __init__(
        self,
        app: web.Application,
        clock: FrozenClock,
        base: str,
        session: aiohttp.ClientSession,
        org: Org,
    ) -> None:
        self.app = app
        self.clock = clock
        self.base = base
        self.session = session
        self.org = org

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
def browser_settings(sqlite_template: Path, tmp_path: Path) -> Settings:
    """SQLite only: the page and the protocol do not depend on the database."""
    path = tmp_path / "viva.db"
    shutil.copy(sqlite_template, path)
    return load_settings(
        environ={
            "VIVA_DATABASE_URL": f"sqlite+aiosqlite:///{path}",
            "VIVA_SERVER_SECRET_KEY": SECRET,
            "VIVA_SERVER_BASE_URL": "http://viva.test",
            "VIVA_SERVER_DATA_DIR": str(tmp_path / "data"),
        }
    )


@pytest.fixture
async def served(browser_settings: Settings) -> AsyncIterator[Served]:
    from scheduler.orgs import create_organisation

    clock = FrozenClock(T0)
    app = create_app(browser_settings, clock=clock)
    # The pages are served here, not at the configured base URL: their own POSTs (the
    # consent to recording) come from this origin, which must count as the site's own.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    app[keys.ORIGINS] = app[keys.ORIGINS] | {base}
    runner = web.AppRunner(app, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    session = aiohttp.ClientSession(base_url=base)
    async with app[keys.DB].write() as db:
        new = await create_organisation(
            db, name="CCI Formation", contact_email="oral@cci.example", now=clock.now()
        )
    # Org speaks to the API through anything with the test client's request(); so does this.
    org = Org(session, new.organisation.id, new.api_key)  # type: ignore[arg-type]
    try:
        yield Served(app, clock, base, session, org)
    finally:
        await session.close()
        await runner.cleanup()


async def book(served: Served) -> dict[str, Any]:
    org = served.org
    await org.make_evaluator(locale="en")
    candidate = await org.make_candidate()
    link = token_of(candidate["link"])
    async with served.session.get(f"/c/{link}/slots") as response:
        slots = (await response.json())["slots"]
    assert datetime.fromisoformat(slots[0]["start"]) == START
    async with served.session.post(f"/c/{link}/booking", json={"start": slots[0]["start"]}) as r:
        assert r.status == 201, await r.text()
        booking_id = (await r.json())["id"]
    detail: dict[str, Any] = await org.ok("GET", f"/bookings/{booking_id}")
    return detail


def room_path(link: str) -> str:
    return "/r/" + token_of(link)


# --- pages -------------------------------------------------------------------------------------


class Tab:
    """One participant's page, with what its console said (printed when a test fails)."""

    def __init__(self, name: str, page: Any) -> None:
        self.name = name
        self.page = page
        self.log: list[str] = []
        page.on("console", lambda m: self.log.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.log.append(f"pageerror: {e}"))

    async def until(self, script: str, what: str, within_ms: int = UI_TIMEOUT_MS) -> Any:
        try:
            return await self.page.wait_for_function(script, timeout=within_ms, polling=200)
        except Exception as exc:
            raise AssertionError(f"{self.name}: {what}\n" + "\n".join(self.log[-30:])) from exc

    async def remote_plays(self, selector: str = "#remote-video") -> None:
        """The video element shows frames and its time moves on."""
        playing = f"""() => {{
            const v = document.querySelector({json.dumps(selector)});
            return v && v.videoWidth > 0 && v.currentTime > 0 && !v.paused ? v.currentTime : 0;
        }}"""
        first = await (
            await self.until(playing, f"{selector} plays", MEDIA_TIMEOUT_MS)
        ).json_value()
        moved = f"""() => document.querySelector({json.dumps(selector)}).currentTime > {first}"""
        await self.until(moved, f"{selector} keeps playing", MEDIA_TIMEOUT_MS)


async def open_tab(browser: Any, name: str, url: str, **context: Any) -> Tab:
    ctx = await browser.new_context(**context)
    tab = Tab(name, await ctx.new_page())
    await tab.page.goto(url)
    return tab


Make = Callable[..., Awaitable[Tab]]


@pytest.fixture
async def tabs(browser: Any) -> AsyncIterator[Make]:
    opened: list[Tab] = []

    async def make(name: str, url: str, **context: Any) -> Tab:
        tab = await open_tab(browser, name, url, **context)
        opened.append(tab)
        return tab

    yield make
    for tab in opened:
        await tab.page.context.close()


# --- the tests ----------------------------------------------------------------------------------


async def test_the_device_check_works_before_the_window_which_then_opens_without_a_reload(
    served: Served, tabs: Make
) -> None:
    clock = served.clock
    booking = await book(served)
    clock.set(OPENS - timedelta(seconds=3))
    tab = await tabs("candidate", served.url(room_path(booking["rooms"]["candidate"])))
    page = tab.page
    # Before the window: a countdown and the device check, never the call.
    assert await page.locator("#call, #join").count() == 0
    await tab.until(
        "() => /\\d/.test(document.getElementById('countdown').textContent)", "a countdown"
    )
    clock.set(OPENS)  # by the server's clock the room is open once the countdown ends

    await page.click("#devcheck-start")
    await tab.remote_plays("#preview")
    await tab.until(
        "() => document.getElementById('check-camera').dataset.result === 'ok'", "camera ok"
    )
    # The fake microphone beeps: the meter moves.
    await tab.until("() => document.getElementById('mic-meter').value > 5", "the meter moves")
    await tab.until(
        "() => document.getElementById('pick-camera').options.length > 0 "
        "&& !document.getElementById('pick-camera').disabled",
        "the camera picker is filled",
    )
    assert await page.locator("#pick-mic option").count() > 0
    await page.click("#speaker-test")
    await tab.until(
        "() => document.getElementById('speaker-status').textContent.includes('Did you hear')",
        "the tone played",
    )
    await page.click("#conn-test")
    await tab.until(
        "() => ['ok', 'warn', 'failed'].includes("
        "document.getElementById('check-connection').dataset.result)",
        "the connection test ends",
        MEDIA_TIMEOUT_MS,
    )
    result = await page.get_attribute("#check-connection", "data-result")
    assert result == "ok", await page.inner_text("#conn-results")

    # The countdown ended meanwhile: the page offers to join, and the check kept running.
    await tab.until("() => document.getElementById('join') !== null", "the join button")
    assert await page.locator("#countdown").count() == 0
    assert await page.get_attribute("#window", "data-window") == "open"
    await tab.remote_plays("#preview")
    await page.click("#join")
    await tab.until("() => document.getElementById('call').dataset.phase === 'lobby'", "lobby")
    await tab.remote_plays("#self-video")


async def test_without_the_servers_echo_the_connection_test_says_it_could_not_run(
    served: Served, tabs: Make
) -> None:
    booking = await book(served)
    tab = await tabs("candidate", served.url(room_path(booking["rooms"]["candidate"])))
    # As on a server without the endpoint: the WebSocket closes before any hello.
    await tab.page.route_web_socket(re.compile(r"/echo$"), lambda ws: ws.close())
    await tab.page.click("#conn-test")
    await tab.until(
        "() => document.getElementById('conn-results').textContent.includes('could not run')",
        "the test says it could not run",
        MEDIA_TIMEOUT_MS,
    )
    assert await tab.page.get_attribute("#check-connection", "data-result") == "pending"
    # It started the camera on the way: the preview plays.
    await tab.remote_plays("#preview")


async def test_an_interview_from_lobby_to_end_in_two_browsers(served: Served, tabs: Make) -> None:
    clock = served.clock
    booking = await book(served)
    clock.set(INSIDE)
    evaluator = await tabs("evaluator", served.url(room_path(booking["rooms"]["evaluator"])))
    candidate = await tabs("candidate", served.url(room_path(booking["rooms"]["candidate"])))
    # The candidate's page has none of the evaluator's controls.
    for selector in ("#admit", "#id-checked", "#notes", "#end", "#steps"):
        assert await candidate.page.locator(selector).count() == 0, selector

    await evaluator.page.click("#join")
    await evaluator.until(
        "() => document.getElementById('call').dataset.phase === 'lobby'", "evaluator in"
    )
    await candidate.page.click("#join")
    await candidate.until(
        "() => document.getElementById('call').dataset.phase === 'lobby'", "the lobby"
    )
    assert "waiting room" in await candidate.page.inner_text("#call-message")

    # The evaluator sees the candidate waiting and lets them in through the page.
    await evaluator.until("() => !document.getElementById('admit').disabled", "admit enabled")
    assert "waiting room" in await evaluator.page.inner_text("#admit-text")
    await evaluator.page.click("#admit")
    await candidate.until(
        "() => document.getElementById('call').dataset.phase === 'admitted'", "admitted"
    )
    for tab in (evaluator, candidate):
        await tab.until(
            "() => document.getElementById('conn').dataset.state === 'connected'", "connected"
        )
        await tab.remote_plays()

    # Mute and camera toggles act on the tracks the server receives.
    await candidate.page.click("#mic-toggle")
    assert await candidate.page.inner_text("#mic-toggle") == "Unmute microphone"
    muted = "() => document.getElementById('self-video').srcObject.getAudioTracks()[0].enabled"
    assert await candidate.page.evaluate(muted) is False
    await candidate.page.click("#mic-toggle")
    assert await candidate.page.evaluate(muted) is True

    # The ID check and the steps reach the server.
    await evaluator.page.check("#id-checked")
    await evaluator.until(
        "() => document.getElementById('id-checked-at').textContent !== ''", "ID time shown"
    )
    await evaluator.page.click("button[data-step=introduction]")
    await evaluator.until(
        "() => document.querySelector('button[data-step=introduction]')"
        ".getAttribute('aria-current') === 'step'",
        "the step is current",
    )
    await candidate.until(
        "() => document.querySelector('#guide-steps li[data-step=introduction]')"
        ".getAttribute('aria-current') === 'step'",
        "the candidate sees the part",
    )
    await evaluator.page.fill("#notes", "Fluent; good questions.")
    await evaluator.until(
        "() => document.getElementById('notes-status').textContent.startsWith('Saved')",
        "notes saved",
    )
    detail = await served.org.ok("GET", f"/bookings/{booking['id']}")
    room = detail["room"]
    assert room["admitted_at"] and room["id_checked_at"] and room["interview_started_at"]
    assert room["step"] == "introduction"
    assert {a["role"] for a in room["attendance"]} == {"candidate", "evaluator"}
    assert "Fluent" not in json.dumps(detail)  # the notes stay private

    # Ending takes a confirmation; the candidate is told it is over.
    await evaluator.page.click("#end")
    await evaluator.page.click("#end-confirm")
    await candidate.until(
        "() => document.getElementById('call').dataset.phase === 'over'", "the candidate is out"
    )
    assert "The interview is over" in await candidate.page.inner_text("#call-over-text")
    detail = await served.org.ok("GET", f"/bookings/{booking['id']}")
    assert detail["room"]["outcome"] == "completed"


async def test_a_restart_or_a_reload_rejoins_and_a_second_tab_takes_over(
    served: Served, tabs: Make
) -> None:
    clock = served.clock
    booking = await book(served)
    clock.set(INSIDE)
    evaluator = await tabs("evaluator", served.url(room_path(booking["rooms"]["evaluator"])))
    url = served.url(room_path(booking["rooms"]["candidate"]))
    candidate = await tabs("candidate", url)
    for tab in (evaluator, candidate):
        await tab.page.click("#join")
    await evaluator.until("() => !document.getElementById('admit').disabled", "admit enabled")
    await evaluator.page.click("#admit")
    for tab in (evaluator, candidate):
        await tab.remote_plays()

    # The server restarts (1001 to everyone): both pages come back by themselves, admitted.
    rooms = served.app[keys.ROOMS]
    await rooms.shutdown()
    for tab in (evaluator, candidate):
        await tab.until(
            "() => document.getElementById('conn').dataset.state !== 'connected'",
            "the page noticed",
        )
    rooms.start(served.app[keys.ROOM_TICKETS], served.app[keys.DB])
    for tab in (evaluator, candidate):
        await tab.until(
            "() => document.getElementById('conn').dataset.state === 'connected'",
            "reconnected",
            MEDIA_TIMEOUT_MS,
        )
        assert await tab.page.get_attribute("#call", "data-phase") == "admitted"
        await tab.remote_plays()

    # A reload goes straight back into the room with the same link, past the lobby.
    await candidate.page.reload()
    await candidate.until(
        "() => document.getElementById('call').dataset.phase === 'admitted'", "back in"
    )
    await candidate.remote_plays()
    await evaluator.remote_plays()

    # The same link in a second tab takes over; the first one says so and stops.
    second = await tabs("second tab", url)
    await second.page.click("#join")
    await second.until(
        "() => document.getElementById('call').dataset.phase === 'admitted'", "the second tab"
    )
    await candidate.until(
        "() => document.getElementById('call').dataset.phase === 'over'", "the first is out"
    )
    assert "another tab" in await candidate.page.inner_text("#call-over-text")
    assert await candidate.page.is_visible("#call-over-action")
    await second.remote_plays()
    await evaluator.remote_plays()

    # Leaving on purpose: the evaluator sees the candidate gone; the departure is "left".
    await second.page.click("#leave")
    assert "You have left the room." in await second.page.inner_text("#call-over-text")
    await evaluator.until(
        "() => document.getElementById('call').dataset.other === 'false'", "the candidate left"
    )
    assert "has left" in await evaluator.page.inner_text("#call-message")
    detail = await served.org.ok("GET", f"/bookings/{booking['id']}")
    reasons = [a["left_reason"] for a in detail["room"]["attendance"] if a["role"] == "candidate"]
    assert "left" in reasons and "replaced" in reasons


async def test_a_move_reloads_the_pages_into_the_new_time_and_a_cancellation_stops_them(
    served: Served, tabs: Make
) -> None:
    clock = served.clock
    booking = await book(served)
    clock.set(INSIDE)
    evaluator = await tabs("evaluator", served.url(room_path(booking["rooms"]["evaluator"])))
    candidate = await tabs("candidate", served.url(room_path(booking["rooms"]["candidate"])))
    both = (evaluator, candidate)
    in_lobby = "() => document.getElementById('call').dataset.phase === 'lobby'"
    for tab in both:
        await tab.page.click("#join")
        await tab.until(in_lobby, "in the lobby")
    assert "9:00" in await candidate.page.inner_text(".summary__when")

    # The organisation moves it five minutes later: each page reloads itself, says why, shows
    # the new time, and, the new window being open already, goes back in on its own.
    later = START + timedelta(minutes=5)
    async with evaluator.page.expect_navigation(), candidate.page.expect_navigation():
        await served.org.ok(
            "POST",
            f"/bookings/{booking['id']}/force-majeure",
            json={"action": "move", "start": later.isoformat(), "reason": "Room change"},
        )
    for tab in both:
        await tab.until("() => document.getElementById('moved-notice') !== null", "the notice")
        assert "has been moved" in await tab.page.inner_text("#moved-notice")
        assert "9:05" in await tab.page.inner_text(".summary__when")
        await tab.until(in_lobby, "back in the lobby")

    # Then it is cancelled: each page says so, and nothing is left to join.
    await served.org.ok(
        "POST",
        f"/bookings/{booking['id']}/force-majeure",
        json={"action": "cancel", "reason": "Evaluator ill"},
    )
    for tab in both:
        await tab.until(
            "() => document.getElementById('call').dataset.phase === 'over'", "the call stopped"
        )
        assert "This interview has been cancelled." in await tab.page.inner_text("#call-over-text")
        assert not await tab.page.is_visible("#call-over-action")
        assert await tab.page.get_attribute("#window", "data-window") == "cancelled"
        assert await tab.page.locator("#join").count() == 0
    detail = await served.org.ok("GET", f"/bookings/{booking['id']}")
    reasons = sorted(a["left_reason"] for a in detail["room"]["attendance"])
    assert reasons == ["cancelled", "cancelled", "moved", "moved"]


async def test_a_page_waiting_before_the_window_hears_of_a_move_then_of_a_cancellation(
    served: Served, tabs: Make
) -> None:
    booking = await book(served)
    served.clock.set(START - timedelta(days=1))  # the candidate opens the link the day before
    tab = await tabs("candidate", served.url(room_path(booking["rooms"]["candidate"])))
    await tab.until("() => document.getElementById('countdown') !== null", "a countdown")
    assert "9:00" in await tab.page.inner_text(".summary__when")
    later = START + timedelta(hours=1)
    await served.org.ok(
        "POST",
        f"/bookings/{booking['id']}/force-majeure",
        json={"action": "move", "start": later.isoformat(), "reason": "Evaluator ill"},
    )
    # No WebSocket before the window: the page asks again (every few minutes, or when it
    # becomes visible again, as here), sees the new time and shows itself anew.
    wake = "document.dispatchEvent(new Event('visibilitychange'))"
    async with tab.page.expect_navigation():
        await tab.page.evaluate(wake)
    await tab.until("() => document.getElementById('moved-notice') !== null", "the notice")
    assert "10:00" in await tab.page.inner_text(".summary__when")

    await served.org.ok(
        "POST",
        f"/bookings/{booking['id']}/force-majeure",
        json={"action": "cancel", "reason": "Evaluator ill"},
    )
    await tab.page.evaluate(wake)
    await tab.until(
        "() => document.getElementById('window').dataset.window === 'cancelled'", "cancelled"
    )
    assert "This interview has been cancelled." in await tab.page.inner_text("#window")
    assert await tab.page.locator("#countdown").count() == 0


async def test_the_evaluator_waiting_is_told_of_the_no_show_mark_and_stays(
    served: Served, tabs: Make
) -> None:
    clock = served.clock
    booking = await book(served)
    clock.set(INSIDE)
    evaluator = await tabs("evaluator", served.url(room_path(booking["rooms"]["evaluator"])))
    await evaluator.page.click("#join")
    await evaluator.until(
        "() => document.getElementById('call').dataset.phase === 'lobby'", "evaluator in"
    )
    assert not await evaluator.page.is_visible("#panel-notice")

    clock.set(START + timedelta(minutes=10))  # [rooms] no_show_after_minutes
    await served.app[keys.TIMERS].run_due()
    await evaluator.until(
        "() => !document.getElementById('panel-notice').hidden", "the no-show notice"
    )
    notice = await evaluator.page.inner_text("#panel-notice")
    assert "Camille Candidate did not join in time and has been marked absent" in notice
    # Still in the room, with the panel to end the interview.
    assert await evaluator.page.get_attribute("#call", "data-phase") == "lobby"
    assert await evaluator.page.is_visible("#end")


async def test_a_recorded_interview_is_announced_shown_and_kept(served: Served, tabs: Make) -> None:
    await served.org.ok("PATCH", "/organisation", json={"recording": True})
    booking = await book(served)
    served.clock.set(INSIDE)
    evaluator = await tabs("evaluator", served.url(room_path(booking["rooms"]["evaluator"])))
    candidate = await tabs("candidate", served.url(room_path(booking["rooms"]["candidate"])))
    # Told before joining: the notice comes before the join button.
    assert await candidate.page.is_visible("#recording-notice")
    assert "This interview is recorded." in await candidate.page.inner_text("#recording-notice")
    # Joining waits for the participant's explicit consent, which the server then holds.
    assert await candidate.page.is_disabled("#join")

    for tab in (evaluator, candidate):
        await tab.page.check("#consent")
        await tab.page.click("#join")
        await tab.until("() => document.getElementById('call').dataset.phase === 'lobby'", "in")
    assert await candidate.page.is_hidden("#rec-badge"), "the lobby is not recorded"
    await evaluator.until("() => !document.getElementById('admit').disabled", "admit enabled")
    await evaluator.page.click("#admit")
    for tab in (evaluator, candidate):
        await tab.until("() => !document.getElementById('rec-badge').hidden", "REC shown")
        await tab.remote_plays()

    await evaluator.page.check("#id-checked")
    await evaluator.until(
        "() => document.getElementById('id-checked-at').textContent !== ''", "ID time shown"
    )
    await evaluator.page.click("#end")
    await evaluator.page.click("#end-confirm")
    await evaluator.until("() => document.getElementById('rec-badge').hidden", "REC over")
    report = (await served.org.ok("GET", f"/bookings/{booking['id']}"))["room"]
    assert sorted(c["role"] for c in report["consents"]) == ["candidate", "evaluator"]
    [recording] = report["recordings"]
    assert recording["ended_at"] is not None and recording["bytes"] > 0
    async with served.session.get(recording["download"], headers=served.org.headers) as r:
        assert r.status == 200
        body = await r.read()
    with av.open(io.BytesIO(body)) as container:
        videos = [s for s in container.streams if s.type == "video"]
        assert len(videos) == 2
        frames = {s.index: 0 for s in videos}
        for packet in container.demux(*videos):
            if packet.size:
                frames[packet.stream.index] += 1
    assert all(count > 0 for count in frames.values()), frames  # both browsers' cameras


async def test_two_processes_behind_one_address_still_give_one_room(
    browser_settings: Settings, tabs: Make
) -> None:
    """The candidate's page is served by the other process: its WebSocket is sent to the
    process that holds the room (`elsewhere`), and the call works as with one process."""
    from scheduler.orgs import create_organisation

    clock = FrozenClock(T0)
    runners: list[web.AppRunner] = []
    urls: list[str] = []
    for _ in range(2):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        rooms = browser_settings.rooms.model_copy(update={"public_url": url})
        runner = web.AppRunner(
            create_app(browser_settings.model_copy(update={"rooms": rooms}), clock=clock),
            shutdown_timeout=5,
        )
        await runner.setup()
        await web.SockSite(runner, listener).start()
        runners.append(runner)
        urls.append(url)
    session = aiohttp.ClientSession(base_url=urls[0])
    try:
        first = runners[0].app
        async with first[keys.DB].write() as db:
            new = await create_organisation(
                db, name="CCI Formation", contact_email="oral@cci.example", now=clock.now()
            )
        org = Org(session, new.organisation.id, new.api_key)  # type: ignore[arg-type]
        booking = await book(Served(first, clock, urls[0], session, org))
        clock.set(INSIDE)
        evaluator = await tabs("evaluator", urls[0] + room_path(booking["rooms"]["evaluator"]))
        candidate = await tabs("candidate", urls[1] + room_path(booking["rooms"]["candidate"]))
        for tab in (evaluator, candidate):
            await tab.page.click("#join")
            await tab.until("() => document.getElementById('call').dataset.phase === 'lobby'", "in")
        await evaluator.until("() => !document.getElementById('admit').disabled", "admit")
        await evaluator.page.click("#admit")
        for tab in (evaluator, candidate):
            await tab.remote_plays()
        assert list(runners[0].app[keys.ROOMS].rooms) == [uuid.UUID(booking["id"])]
        assert not runners[1].app[keys.ROOMS].rooms
    finally:
        await session.close()
        for runner in runners:
            await runner.cleanup()
