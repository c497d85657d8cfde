"""The room page behind /r/{token}, read over HTTP (the browser tests run it: test_browser.py).

The clock is frozen on Monday 2026-11-30 08:00 UTC; the first green slot is Tuesday 1 December
09:00 in Paris (08:00 UTC), so the room is open from 07:45 to 08:50 UTC that day.
"""

from __future__ import annotations

import html
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from rooms.models import RoomState, save_state
from scheduler import keys
from scheduler.clock import FrozenClock
from scheduler.i18n import TEMPLATES
from tests.conftest import token_of
from tests.scheduler.test_i18n import FR, extract

START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
OPENS = START - timedelta(minutes=15)
INSIDE = START - timedelta(minutes=5)
# What only the evaluator's page may hold: the controls, the private notes, the assessment.
EVALUATOR_ONLY_IDS = {
    "assessment",
    "assessment-form",
    "assessment-submit",
    "assessment-dialog",
    "panel",
    "admit",
    "id-checked",
    "steps",
    "notes",
    "end",
    "end-dialog",
    "timer",
    "panel-notice",
}
CALL_IDS = {"call", "remote-video", "self-video", "join", "leave", "mic-toggle", "cam-toggle"}
DEVICE_CHECK_IDS = {
    "devcheck",
    "preview",
    "mic-meter",
    "speaker-test",
    "pick-camera",
    "pick-mic",
    "pick-speaker",
    "conn-test",
}
BRACES = re.compile(r"\{(\w+)\}")
# The room page's ES modules, and the sibling modules each one imports.
ROOM_JS = TEMPLATES / "static" / "room"
IMPORTS = re.compile(r'^import [^;]*? from "\./([\w-]+\.js)";$', re.MULTILINE)


@dataclass(frozen=True)
class Booked:
    org: Any
    booking_id: str
    candidate_token: str
    evaluator_token: str
    candidate_link: str


async def book(org: Any, **candidate: Any) -> Booked:
    """An evaluator (French), a candidate (English by default), the first green slot."""
    await org.make_evaluator()
    person = await org.make_candidate(**candidate)
    link = token_of(person["link"])
    slots = await (await org.client.get(f"/c/{link}/slots")).json()
    assert datetime.fromisoformat(slots["slots"][0]["start"]) == START
    made = await org.client.post(f"/c/{link}/booking", json={"start": slots["slots"][0]["start"]})
    assert made.status == 201, await made.text()
    booking_id = (await made.json())["id"]
    detail = await org.ok("GET", f"/bookings/{booking_id}")
    return Booked(
        org,
        booking_id,
        token_of(detail["rooms"]["candidate"]),
        token_of(detail["rooms"]["evaluator"]),
        link,
    )


@pytest.fixture
async def booked(make_org: Any) -> Booked:
    return await book(await make_org())


@dataclass
class Page:
    """What the tests look at: ids, scripts, stylesheets, inline styles and handlers, text."""

    source: str
    ids: set[str] = field(default_factory=set)
    scripts: list[dict[str, str | None]] = field(default_factory=list)
    stylesheets: list[str] = field(default_factory=list)
    inline: list[str] = field(default_factory=list)
    json_blocks: dict[str, Any] = field(default_factory=dict)
    lang: str | None = None
    text: str = ""


class _Parser(HTMLParser):
    def __init__(self, page: Page) -> None:
        super().__init__(convert_charrefs=True)
        self.page = page
        self._script: dict[str, str | None] | None = None
        self._buffer: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.page.ids.add(a["id"] or "")
        for name in a:
            if name == "style" or name.startswith("on"):
                self.page.inline.append(f"<{tag} {name}>")
        if tag == "html":
            self.page.lang = a.get("lang")
        elif tag == "style":
            self.page.inline.append("<style>")
        elif tag == "link" and a.get("rel") == "stylesheet":
            self.page.stylesheets.append(a.get("href") or "")
        elif tag == "script":
            self.page.scripts.append(a)
            self._script = a
            self._buffer = []

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._buffer.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            body = "".join(self._buffer)
            if self._script.get("type") == "application/json":
                self.page.json_blocks[self._script.get("id") or ""] = json.loads(body)
            else:
                assert not body.strip(), "inline script"
            self._script = None


def parse(source: str) -> Page:
    page = Page(source)
    _Parser(page).feed(source)
    text = re.sub(r"<script.*?</script>|<[^>]+>", " ", source, flags=re.S)
    page.text = re.sub(r"[ \t\n\r]+", " ", html.unescape(text)).strip()
    return page


async def get_page(client: TestClient, token: str, **query: str) -> tuple[int, Page, Any]:
    response = await client.get(f"/r/{token}", params=query)
    return response.status, parse(await response.text()), response


def _devcheck_hidden(source: str) -> bool:
    found = re.search(r'<section id="devcheck"[^>]*>', source)
    assert found is not None  # room.js wires it up whatever the window
    return re.search(r"\shidden(\s|>|=)", found.group(0)) is not None


def assert_nothing_to_prepare(page: Page) -> None:
    """After the interview: no device check shown, no "open this link before the start"."""
    assert _devcheck_hidden(page.source)
    assert "Open this link a few minutes before the start" not in page.text
    assert "How the interview goes" not in page.text


# --- before the window ------------------------------------------------------------------------


async def test_before_the_window_the_candidate_gets_a_countdown_and_the_device_check(
    client: TestClient, booked: Booked
) -> None:
    status, page, response = await get_page(client, booked.candidate_token)
    assert status == 200
    assert response.content_type == "text/html"
    assert page.lang == "en"
    assert "Your oral interview" in page.text
    # The date in the candidate's zone (Paris), not in UTC.
    assert "Tuesday, December 1, 2026 at 9:00\u202fAM" in page.text
    assert "The room is not open yet" in page.text
    assert "The room opens at 8:45\u202fAM, 15 minutes before the start." in page.text
    assert "countdown" in page.ids
    assert DEVICE_CHECK_IDS <= page.ids
    assert not _devcheck_hidden(page.source)
    # One advice, the same as the e-mails': test a day or two before, and again just before.
    assert (
        "a day or two before" in page.text and "again a few minutes before the start" in page.text
    )
    assert "Open this link a few minutes before the start" in page.text
    # Never the room: no call, no join button, no evaluator controls.
    assert not (CALL_IDS | EVALUATOR_ONLY_IDS) & page.ids
    data = page.json_blocks["room-data"]
    assert data["window"] == "too_early"
    assert data["now"] == "2026-11-30T08:00:00Z"
    assert data["opens_at"] == "2026-12-01T07:45:00Z"
    assert data["role"] == "candidate"
    assert data["urls"]["websocket"] == f"/r/{booked.candidate_token}/ws"
    assert data["urls"]["info"] == f"/r/{booked.candidate_token}/info"


async def test_the_page_says_what_info_says(client: TestClient, booked: Booked) -> None:
    """The page and GET /r/{token}/info tell the same facts (the page needs no extra call)."""
    for token in (booked.candidate_token, booked.evaluator_token):
        _, page, _ = await get_page(client, token)
        info = await (await client.get(f"/r/{token}/info")).json()
        data = page.json_blocks["room-data"]
        for key in ("role", "start", "end", "opens_at", "closes_at", "now", "window"):
            assert data[key] == info[key], key
        assert data["interview"] == info["interview"]
        assert data["urls"]["websocket"] == info["websocket"]


async def test_the_evaluator_page_is_in_french_by_the_evaluators_locale(
    client: TestClient, booked: Booked
) -> None:
    status, page, _ = await get_page(client, booked.evaluator_token)
    assert status == 200
    assert page.lang == "fr"
    assert "Entretien avec Camille Candidate" in page.text
    assert "mardi 1 décembre 2026 à 09:00" in page.text
    assert "La salle n’est pas encore ouverte" in page.text
    assert "Vérifiez votre caméra, votre micro et vos haut-parleurs" in page.text
    assert not (CALL_IDS | EVALUATOR_ONLY_IDS) & page.ids
    strings = page.json_blocks["room-strings"]
    assert strings["lobby_evaluator_waiting"] == "{name} est en salle d’attente."
    assert strings["steps"]["role_play"] == "Mise en situation"


async def test_lang_and_tz_override_the_participants_own(
    client: TestClient, booked: Booked
) -> None:
    _, page, _ = await get_page(client, booked.candidate_token, lang="fr", tz="America/Toronto")
    assert page.lang == "fr"
    assert "Votre entretien oral" in page.text
    assert "mardi 1 décembre 2026 à 03:00" in page.text
    assert page.json_blocks["room-data"]["locale"] == "fr"
    assert page.json_blocks["room-data"]["timezone"] == "America/Toronto"
    _, page, _ = await get_page(client, booked.evaluator_token, lang="en", tz="Mars/Olympus")
    assert page.lang == "en"
    assert "Interview with Camille Candidate" in page.text
    assert "“Mars/Olympus” is not recognised" in page.text
    # The language links keep the page and switch only the language.
    assert f'href="/r/{booked.evaluator_token}?lang=fr' in page.source


# --- inside the window ------------------------------------------------------------------------


async def test_inside_the_window_the_call_is_there_and_only_the_evaluator_has_controls(
    client: TestClient, clock: FrozenClock, booked: Booked
) -> None:
    clock.set(INSIDE)
    _, candidate, _ = await get_page(client, booked.candidate_token)
    _, evaluator, _ = await get_page(client, booked.evaluator_token, lang="en")
    for page in (candidate, evaluator):
        assert page.json_blocks["room-data"]["window"] == "open"
        assert CALL_IDS <= page.ids
        assert DEVICE_CHECK_IDS <= page.ids
        assert "countdown" not in page.ids
    assert EVALUATOR_ONLY_IDS <= evaluator.ids
    assert "Private notes" in evaluator.text and "ID document checked" in evaluator.text
    for label in ("ID check", "Introduction questions", "Role-play", "Discussion"):
        assert label in evaluator.text
    assert "Let Camille Candidate in" in evaluator.text
    assert evaluator.json_blocks["room-data"]["urls"]["assessment"] == (
        f"/r/{booked.evaluator_token}/assessment"
    )
    # The candidate's page holds none of it: not hidden, absent.
    assert not EVALUATOR_ONLY_IDS & candidate.ids
    assert "assessment" not in candidate.json_blocks["room-data"]["urls"]
    for words in ("Private notes", "ID document checked", "End the interview", "Let "):
        assert words not in candidate.text
    assert 'type="checkbox"' not in candidate.source and "<textarea" not in candidate.source
    assert "Join the interview" in candidate.text
    assert "ID document" in candidate.text  # the candidate is told to have it ready
    assert "guide" in candidate.ids
    assert "Open the room" in evaluator.text


async def test_the_candidate_is_told_before_joining_when_interviews_are_recorded(
    clock: FrozenClock, make_org: Any
) -> None:
    booked = await book(await make_org())
    clock.set(INSIDE)
    _, page, _ = await get_page(booked.org.client, booked.candidate_token)
    assert "recording-notice" not in page.ids and "recorded" not in page.text
    await booked.org.ok("PATCH", "/organisation", json={"recording": True})
    _, page, _ = await get_page(booked.org.client, booked.candidate_token)
    assert "recording-notice" in page.ids
    assert "This interview is recorded." in page.text
    assert page.source.index("recording-notice") < page.source.index('id="join"')
    assert page.json_blocks["room-data"]["recording"] is True
    # Asked, not only told: a box to tick, and what to do without consenting.
    assert "consent" in page.ids and "consent-hint" in page.ids
    assert page.source.index('id="consent"') < page.source.index('id="join"')
    assert len(page.json_blocks["room-data"]["notice"]) == 64


async def test_after_the_window_the_room_is_closed(
    client: TestClient, clock: FrozenClock, booked: Booked
) -> None:
    clock.set(START + timedelta(minutes=20 + 30))
    _, page, _ = await get_page(client, booked.candidate_token)
    assert page.json_blocks["room-data"]["window"] == "too_late"
    assert "The room is closed" in page.text
    assert "Tuesday, December 1, 2026 at 9:50\u202fAM" in page.text
    assert not (CALL_IDS | EVALUATOR_ONLY_IDS) & page.ids
    # Nothing left to prepare: the device check steps aside, and so does the advice to
    # open the link before the start.
    assert_nothing_to_prepare(page)
    # The server still runs the connection test with this link once the room has closed.
    echo = page.json_blocks["room-data"]["urls"]["echo"]
    assert echo == f"/r/{booked.candidate_token}/echo"
    test = await client.ws_connect(echo)
    hello = await test.receive_json(timeout=10)
    assert (hello["type"], hello["mode"]) == ("hello", "echo")
    await test.close()


async def test_after_the_end_the_candidate_page_says_it_is_over(
    client: TestClient, clock: FrozenClock, booked: Booked
) -> None:
    clock.set(START + timedelta(minutes=18))
    async with client.app[keys.DB].write() as session:
        state = RoomState(uuid.UUID(booked.booking_id)).but(
            admitted_at=INSIDE,
            id_checked_at=START,
            interview_started_at=START,
            step="discussion",
            ended_at=clock.now(),
            outcome="completed",
        )
        await save_state(session, state, now=clock.now())
    _, page, _ = await get_page(client, booked.candidate_token)
    assert page.json_blocks["room-data"]["window"] == "ended"
    assert "Your interview is over" in page.text
    assert not CALL_IDS & page.ids
    assert_nothing_to_prepare(page)
    # The evaluator may still come back to finish the notes until the room closes.
    _, page, _ = await get_page(client, booked.evaluator_token)
    assert page.json_blocks["room-data"]["window"] == "open"
    assert "notes" in page.ids


# --- bad links --------------------------------------------------------------------------------


def _without_links(source: str) -> str:
    return re.sub(r'href="[^"]*"', 'href=""', source)


async def test_bad_links_get_the_plain_not_found_page_and_learn_nothing(
    client: TestClient, booked: Booked
) -> None:
    reference = await client.get("/c/not-a-link")
    assert reference.status == 404
    expected = _without_links(await reference.text())
    forged = booked.candidate_token[:-2] + ("AA" if booked.candidate_token[-2:] != "AA" else "BB")
    # Cancelling rotates the booking's room nonce: its links stop working at once.
    other = await book(booked.org)
    await booked.org.ok(
        "POST",
        f"/bookings/{other.booking_id}/force-majeure",
        json={"action": "cancel", "reason": "illness"},
    )
    for token in (
        "not-a-link",
        "A" * 46,
        forged,
        other.candidate_token,
        other.evaluator_token,
    ):
        response = await client.get(f"/r/{token}")
        assert response.status == 404, token
        body = await response.text()
        assert _without_links(body) == expected, token
        for secret in ("Camille", "Évelyne", "CCI Formation", "2026", "room-data"):
            assert secret not in body.replace(token, ""), (token, secret)
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    # And a French reader gets it in French, like any other bad link.
    response = await client.get("/r/not-a-link", headers={"Accept-Language": "fr-FR,fr;q=0.9"})
    assert "Ce lien n’est pas valide" in await response.text()


# --- headers, CSP, assets -------------------------------------------------------------------


async def test_headers_and_a_strict_csp_with_no_inline_code(
    client: TestClient, clock: FrozenClock, booked: Booked
) -> None:
    for moment in (clock.now(), INSIDE):
        clock.set(moment)
        for token in (booked.candidate_token, booked.evaluator_token):
            _, page, response = await get_page(client, token)
            headers = response.headers
            assert headers["Cache-Control"] == "no-store"
            assert headers["Referrer-Policy"] == "no-referrer"
            assert headers["X-Content-Type-Options"] == "nosniff"
            assert "camera=(self)" in headers["Permissions-Policy"]
            assert "microphone=(self)" in headers["Permissions-Policy"]
            csp = dict(
                (part.split()[0], part.split()[1:])
                for part in headers["Content-Security-Policy"].split(";")
            )
            assert csp["default-src"] == ["'none'"]
            assert csp["script-src"] == ["'self'"]
            assert csp["style-src"] == ["'self'"]
            assert csp["frame-ancestors"] == ["'none'"]
            assert csp["base-uri"] == ["'none'"]
            # The page's own origin only, for fetch and its WebSocket.
            assert csp["connect-src"] == ["'self'", "ws://viva.test"]
            assert "unsafe" not in headers["Content-Security-Policy"]
            # No inline script, style or handler; scripts from /static/ only.
            assert page.inline == []
            sources = [s.get("src") for s in page.scripts if s.get("type") != "application/json"]
            assert sources and all((src or "").startswith("/static/") for src in sources)
            assert all(href.startswith("/static/") for href in page.stylesheets)
            assert "http://" not in page.source.replace("http://viva.test", "")
            assert "https://" not in page.source


async def test_the_assets_are_served(client: TestClient, booked: Booked) -> None:
    _, page, _ = await get_page(client, booked.candidate_token)
    urls = [s["src"] for s in page.scripts if s.get("src")] + page.stylesheets
    assert any("room/main.js" in u for u in urls) and any("room.css" in u for u in urls)
    # The entry module's imports, and theirs: every module the page runs is served.
    pending = [u or "" for u in urls]
    seen: set[str] = set()
    while pending:
        url = pending.pop()
        path = url.split("?")[0]
        if path in seen:
            continue
        seen.add(path)
        response = await client.get(url)
        assert response.status == 200, url
        body = await response.text()
        # Nothing from elsewhere: no absolute URL, no @import, no url().
        assert not re.search(r"(https?|wss?)://|@import|url\(", body), url
        # The page's links are versioned and kept; the modules' imports are revalidated.
        cache = "public, max-age=31536000, immutable" if "?v=" in url else "no-cache"
        assert response.headers["Cache-Control"] == cache, url
        if path.endswith(".js"):
            assert "javascript" in response.headers["Content-Type"], url
            folder = path.rsplit("/", 1)[0]
            pending += [f"{folder}/{name}" for name in IMPORTS.findall(body)]
    assert {p.name for p in ROOM_JS.glob("*.js")} == {
        p.rsplit("/", 1)[1] for p in seen if p.endswith(".js")
    }
    # Revalidation costs a 304, not the file.
    first = await client.get("/static/room/call-state.js")
    again = await client.get(
        "/static/room/call-state.js", headers={"If-None-Match": first.headers["ETag"]}
    )
    assert again.status == 304


async def test_every_sentence_the_script_shows_is_translated_with_its_placeholders(
    client: TestClient, booked: Booked
) -> None:
    _, english, _ = await get_page(client, booked.candidate_token, lang="en")
    _, french, _ = await get_page(client, booked.candidate_token, lang="fr")
    en = english.json_blocks["room-strings"]
    fr = french.json_blocks["room-strings"]
    assert en.keys() == fr.keys()
    for key, text in en.items():
        if isinstance(text, dict):
            assert text.keys() == fr[key].keys()
            continue
        assert fr[key] != text or text in ("Discussion",), key
        assert set(BRACES.findall(fr[key])) == set(BRACES.findall(text)), key
    # The room's modules read only keys the page provides.
    script = "\n".join(p.read_text() for p in sorted(ROOM_JS.glob("*.js")))
    used = set(re.findall(r'\bt\("(\w+)"\s*[,)]', script))
    assert len(used) > 50
    assert used <= en.keys(), used - en.keys()
    # Keys it builds: t("state_" + …), t("outcome_" + …), t("err_" + …).
    for prefix, names in (
        ("state_", ("idle", "connecting", "connected", "unstable")),
        ("outcome_", ("completed", "interrupted", "id_refused", "no_show")),
        ("err_", ("candidate_absent", "not_admitted", "id_not_checked", "interview_started")),
    ):
        assert f't("{prefix}" + ' in script
        assert {prefix + name for name in names} <= en.keys()


def test_the_rooms_catalog_covers_the_rooms_templates_exactly() -> None:
    """tests/scheduler/test_i18n.py checks every area with a catalog; this one is ours."""
    from babel.messages.pofile import read_po

    with (FR / "rooms.po").open("rb") as fh:
        ids = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(fh) if m.id}
    used = {m if isinstance(m, str) else m[0] for m in extract(TEMPLATES / "rooms")}
    assert ids == used


def test_the_csp_names_the_public_websocket_origin() -> None:
    from scheduler.web.security import content_security_policy

    assert content_security_policy("https://viva.example").endswith(
        "connect-src 'self' wss://viva.example"
    )
    assert content_security_policy("http://127.0.0.1:8080").endswith(
        "connect-src 'self' ws://127.0.0.1:8080"
    )
    # Several room processes: the page may be sent to a sibling's WebSocket.
    assert content_security_policy("https://viva.example", "https://rooms-2.viva.example").endswith(
        "connect-src 'self' wss://viva.example wss://*.viva.example:*"
    )
    assert content_security_policy("http://127.0.0.1:8080", "http://127.0.0.1:8081").endswith(
        "connect-src 'self' ws://127.0.0.1:8080 ws://127.0.0.1:*"
    )


# --- the relay-only test switch ---------------------------------------------------------------


async def test_relay_only_is_a_switch_of_dev_mode_alone(
    client: TestClient,
    booked: Booked,
    aiohttp_client: Any,
    db_url: str,
    tmp_path: Any,
    clock: FrozenClock,
) -> None:
    """`?ice=relay` makes the browser use TURN relays only (tests/test_deployment.py proves
    media crosses coturn with it); in production it is refused and nothing is rendered."""
    status, page, _ = await get_page(client, booked.candidate_token)
    assert status == 200
    assert page.json_blocks["room-data"]["ice_transport_policy"] == "all"
    status, page, _ = await get_page(client, booked.candidate_token, ice="relay")
    assert status == 400
    assert "switch meant for testing, which this server does not accept" in page.text
    assert "room-data" not in page.json_blocks

    from scheduler.app import create_app
    from scheduler.config import load_settings
    from tests.conftest import app_environ

    dev_settings = load_settings(
        environ=app_environ(db_url, tmp_path / "dev", VIVA_SERVER_DEV_MODE="true")
    )
    dev = await aiohttp_client(create_app(dev_settings, clock=clock))
    status, page, _ = await get_page(dev, booked.candidate_token, ice="relay")
    assert status == 200
    assert page.json_blocks["room-data"]["ice_transport_policy"] == "relay"
    # Only the one value means anything, even in dev mode.
    status, page, _ = await get_page(dev, booked.candidate_token, ice="host")
    assert status == 400
