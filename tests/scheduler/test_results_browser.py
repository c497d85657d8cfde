"""Issue 13's "done when", in a real browser (Chromium through Playwright) against the real
app on a real port, with a real SMTP server: the evaluator submits the assessment in the
room page, the organisation publishes through the API, the candidate's e-mail arrives with
the link, the results page shows the levels, both PDFs download and say the right names and
levels in French, the certificate's code is confirmed by the verification page, and after
revocation the page says so.

Skipped like tests/rooms/test_browser.py when Chromium or Playwright is missing (mandatory
with VIVA_REQUIRE_BROWSER=1).
"""

from __future__ import annotations

import io
import re
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pypdf import PdfReader

from scheduler import keys
from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.config import Settings, load_settings
from scheduler.orgs import create_organisation
from tests.conftest import SECRET, T0, Org, token_of
from tests.mailer.mailer_support import SmtpServer
from tests.rooms.test_browser import INSIDE, UI_TIMEOUT_MS, Tab, browser  # noqa: F401
from tests.support.polling import eventually

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NAME = "Françoise Weiß-Łukasiewicz"
ORG = "Société Française d’Œnologie"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings_with_mail(sqlite_template: Path, tmp_path: Path, smtp: SmtpServer) -> Settings:
    path = tmp_path / "viva.db"
    shutil.copy(sqlite_template, path)
    return load_settings(
        environ={
            "VIVA_DATABASE_URL": f"sqlite+aiosqlite:///{path}",
            "VIVA_SERVER_SECRET_KEY": SECRET,
            "VIVA_SERVER_BASE_URL": "http://viva.test",
            "VIVA_SERVER_DATA_DIR": str(tmp_path / "data"),
            "VIVA_SMTP_HOST": "127.0.0.1",
            "VIVA_SMTP_PORT": str(smtp.port),
            "VIVA_SMTP_SECURITY": "none",
            "VIVA_SMTP_FROM_ADDRESS": "viva@viva.test",
        }
    )


@pytest.fixture
async def site(settings_with_mail: Settings) -> AsyncIterator[tuple[web.Application, str, Org]]:
    clock = FrozenClock(T0)
    app = create_app(settings_with_mail, clock=clock)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    app[keys.ORIGINS] = app[keys.ORIGINS] | {base}
    runner = web.AppRunner(app, shutdown_timeout=5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    session = aiohttp.ClientSession(base_url=base)
    async with app[keys.DB].write() as db:
        new = await create_organisation(
            db, name=ORG, contact_email="oral@cci.example", now=clock.now()
        )
    org = Org(session, new.organisation.id, new.api_key)  # type: ignore[arg-type]
    try:
        yield app, base, org
    finally:
        await session.close()
        await runner.cleanup()


def _pdf_text(path: str) -> str:
    with open(path, "rb") as fh:
        body = fh.read()
    return "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(body)).pages)


async def test_from_the_room_form_to_a_verified_then_revoked_certificate(
    browser: Any,  # noqa: F811
    site: tuple[web.Application, str, Org],
    smtp: SmtpServer,
) -> None:
    app, base, org = site
    clock = app[keys.CLOCK]
    assert isinstance(clock, FrozenClock)
    await org.make_evaluator(locale="fr")
    cand = await org.make_candidate(name=NAME, locale="fr", language="en")
    link = token_of(cand["link"])
    session = org.client
    async with session.get(f"/c/{link}/slots") as response:
        start = (await response.json())["slots"][0]["start"]
    async with session.post(f"/c/{link}/booking", json={"start": start}) as response:
        assert response.status == 201, await response.text()
        booking_id = (await response.json())["id"]
    rooms = (await org.ok("GET", f"/bookings/{booking_id}"))["rooms"]
    clock.set(INSIDE)

    context = await browser.new_context(accept_downloads=True)
    try:
        # The interview, in two browsers (fake cameras and microphones): the evaluator joins,
        # admits the candidate, checks the identity and starts the first part.
        evaluator = Tab("evaluator", await context.new_page())
        await evaluator.page.goto(base + "/r/" + token_of(rooms["evaluator"]))
        await evaluator.page.click("#join")
        await evaluator.until(
            "() => document.getElementById('call').dataset.phase === 'lobby'", "evaluator in"
        )
        other = await browser.new_context()
        in_room = Tab("candidate in the room", await other.new_page())
        await in_room.page.goto(base + "/r/" + token_of(rooms["candidate"]))
        await in_room.page.click("#join")
        await in_room.until(
            "() => document.getElementById('call').dataset.phase === 'lobby'", "the lobby"
        )
        await evaluator.until("() => !document.getElementById('admit').disabled", "admit")
        await evaluator.page.click("#admit")
        await in_room.until(
            "() => document.getElementById('call').dataset.phase === 'admitted'", "admitted"
        )
        await evaluator.page.check("#id-checked")
        await evaluator.until(
            "() => document.getElementById('id-checked-at').textContent !== ''", "ID checked"
        )
        await evaluator.page.click("button[data-step=introduction]")
        await evaluator.until(
            "() => document.querySelector('button[data-step=introduction]')"
            ".getAttribute('aria-current') === 'step'",
            "the interview has started",
        )

        # The evaluator assesses in the room page: a level per criterion, overall, comment.
        await evaluator.until(
            "() => document.getElementById('assessment').dataset.state === 'edit'",
            "the assessment form is ready",
        )
        for select in await evaluator.page.locator("#assessment select").all():
            await select.select_option("B2")
        await evaluator.page.fill("#assessment-comment", "Aisée, précise.")
        await evaluator.page.locator("#assessment-comment").blur()
        await evaluator.until(
            "() => { const s = document.getElementById('assessment-status').textContent;"
            " return s !== '' && !s.endsWith('…'); }",
            "the assessment is saved",
        )
        assert await evaluator.page.evaluate(
            "() => [...document.querySelectorAll('#assessment select')]"
            ".every((s) => s.value === 'B2')"
        )
        await evaluator.page.click("#assessment-submit")
        await evaluator.until(
            "() => document.getElementById('assessment-dialog').open", "the confirmation"
        )
        await evaluator.page.click("#assessment-confirm")
        await evaluator.until(
            "() => document.getElementById('assessment').dataset.state === 'submitted'",
            "the assessment is submitted",
        )
        # Then ends the interview: the booking is completed.
        await evaluator.page.click("#end")
        await evaluator.page.click("#end-confirm")
        await in_room.until(
            "() => document.getElementById('call').dataset.phase === 'over'", "it is over"
        )
        await other.close()
        detail = await org.ok("GET", f"/bookings/{booking_id}")
        assert detail["status"] == "completed" and detail["room"]["outcome"] == "completed"

        # The organisation reviews, certifies (oral level from the assessment), publishes.
        to_review = await org.ok("GET", "/results?status=to_review")
        assert [r["candidate_id"] for r in to_review["results"]] == [cand["id"]]
        result = await org.ok(
            "PUT",
            f"/candidates/{cand['id']}/result",
            json={
                "parts": [{"name": "Épreuve écrite", "level": "B1", "score": 68}],
                "overall_level": "B2",
                "target_level": "B2",
                "target_reached": True,
            },
        )
        assert result["oral_level"] == "B2"
        published = await org.ok("POST", f"/candidates/{cand['id']}/result/publish")
        code = published["verification_code"]

        # The candidate's e-mail arrives with the link.
        def results_mail() -> Any:
            return next(
                (
                    r.message
                    for r in smtp.received
                    if r.rcpt_tos == [cand["email"]] and "résultats" in r.message["Subject"]
                ),
                None,
            )

        await eventually(lambda: results_mail() is not None, "the results e-mail")
        text = results_mail().get_body(("plain",)).get_content()
        found = re.search(r"http://viva\.test(/results/[A-Za-z0-9_-]+)", text)
        assert found is not None, text

        candidate = Tab("candidate", await context.new_page())
        await candidate.page.goto(base + found[1])
        page_text = await candidate.page.inner_text("main")
        assert "Vos résultats" in page_text and NAME in page_text
        assert "Épreuve écrite" in page_text and "B1 (score 68)" in page_text
        assert await candidate.page.inner_text("[data-level=oral]") == "B2"
        assert await candidate.page.inner_text("[data-level=overall]") == "B2"

        texts = {}
        for label in ("Relevé de résultats (PDF)", "Certificat (PDF)"):
            async with candidate.page.expect_download(timeout=UI_TIMEOUT_MS) as info:
                await candidate.page.click(f"text={label}")
            download = await info.value
            texts[label] = _pdf_text(str(await download.path()))
        statement = texts["Relevé de résultats (PDF)"]
        for words in (NAME, ORG, "Langue évaluée : anglais", "Entretien oral : B2"):
            assert words in statement, words
        assert "Épreuve écrite: B1 (score 68)" in statement and "Niveau global : B2" in statement
        certificate = texts["Certificat (PDF)"]
        assert NAME in certificate and "a atteint le niveau B2 en anglais" in certificate
        assert code in certificate

        # Anyone checks the certificate's code; after revocation the page says so.
        checker = Tab("checker", await context.new_page())
        await checker.page.goto(f"{base}/v/{code}?lang=fr")
        verdict = await checker.page.inner_text("main")
        assert "Ce document est authentique." in verdict and NAME in verdict
        assert "B2" in verdict and "anglais" in verdict
        await org.ok("POST", f"/candidates/{cand['id']}/result/revoke", json={"reason": "Fraude."})
        await checker.page.reload()
        verdict = await checker.page.inner_text("main")
        assert "Ce certificat a été révoqué le" in verdict and NAME not in verdict
    finally:
        await context.close()
