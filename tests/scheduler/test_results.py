"""Results (issue 13 part B) through the API, the candidate's e-mail, the results page and its
PDFs, and the public verification page, on both databases, with a real SMTP server."""

from __future__ import annotations

import asyncio
import io
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import event, func, select

from mailer.models import outbox_messages
from scheduler import assessments, keys
from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.config import Settings, load_settings
from scheduler.history import Actor
from scheduler.models import Booking, Result, ResultVersion
from scheduler.orgs import create_organisation
from scheduler.results import results_token
from scheduler.scheme import DEFAULT, Marks
from tests.conftest import Org, app_environ, token_of
from tests.mailer.mailer_support import SmtpServer
from tests.support.polling import eventually

LINK = re.compile(r"http://viva\.test/results/[A-Za-z0-9_-]+")


async def _org(aiohttp_client: Any, settings: Settings, clock: FrozenClock, **kw: Any) -> Org:
    client = await aiohttp_client(create_app(settings, clock=clock))
    async with client.app[keys.DB].write() as session:
        new = await create_organisation(
            session,
            name="Société Française d’Œnologie, Łask",
            contact_email="oral@cci.test",
            now=clock.now(),
        )
    return Org(client, new.organisation.id, new.api_key)


async def _interviewed(org: Org, clock: FrozenClock, **candidate: Any) -> tuple[str, str]:
    """A candidate whose interview took place and was assessed (submitted, overall B2).

    The room's end (an evaluator's click, tested in tests/rooms) is stood in for by the
    status it writes; the assessment goes through part A's own domain function."""
    await org.make_evaluator()
    cand = await org.make_candidate(**candidate)
    link = token_of(cand["link"])
    slots = await (await org.client.get(f"/c/{link}/slots")).json()
    booked = await org.client.post(f"/c/{link}/booking", json={"start": slots["slots"][0]["start"]})
    booking_id = (await booked.json())["id"]
    async with org.client.app[keys.DB].write() as session:
        booking = await session.get(Booking, uuid.UUID(booking_id))
        assert booking is not None
        booking.status = "completed"
        await assessments.submit(
            session,
            booking.id,
            Marks({c: "B2" for c in DEFAULT.criterion_codes}, "B2", "Très à l’aise."),
            actor=Actor("evaluator", "Évelyne"),
            now=clock.now(),
        )
    return cand["id"], booking_id


async def _mails(org: Org, kind: str) -> int:
    async with org.client.app[keys.DB].read() as session:
        return (
            await session.scalar(
                select(func.count())
                .select_from(outbox_messages)
                .where(outbox_messages.c.kind == kind)
            )
            or 0
        )


def _pdf_text(body: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(body)).pages)


RESULT = {
    "parts": [{"name": "Épreuve écrite", "level": "B1", "score": 71.5}],
    "overall_level": "B2",
    "target_level": "B2",
    "target_reached": True,
}


async def test_publish_mails_once_and_the_candidate_downloads_both_pdfs(
    aiohttp_client: Any, mail_settings: Settings, clock: FrozenClock, smtp_server: SmtpServer
) -> None:
    org = await _org(aiohttp_client, mail_settings, clock)
    cand_id, booking_id = await _interviewed(
        org, clock, name="Françoise Weiß-Łukasiewicz", locale="fr", language="en"
    )
    to_review = await org.ok("GET", "/results?status=to_review")
    assert [r["candidate_id"] for r in to_review["results"]] == [cand_id]

    saved = await org.ok("PUT", f"/candidates/{cand_id}/result", json=RESULT)
    assert saved["oral_level"] == "B2"  # from the submitted assessment
    assert saved["booking_id"] == booking_id and saved["status"] == "draft"
    assert saved["results_url"] is None and saved["verification_code"] is None

    published = await org.ok("POST", f"/candidates/{cand_id}/result/publish")
    assert published["status"] == "published"
    again = await org.ok("POST", f"/candidates/{cand_id}/result/publish")
    assert again["published_at"] == published["published_at"]
    batch = await org.ok(
        "POST", "/results/publish", json={"candidate_ids": [cand_id, str(uuid.uuid4())]}
    )
    assert [o["outcome"] for o in batch["outcomes"]] == ["already_published", "not_found"]
    assert await _mails(org, "results_published") == 1  # publishing twice sends nothing twice

    await eventually(lambda: len(smtp_server.received) >= 3, "the results e-mail delivered")
    mail = next(r.message for r in smtp_server.received if "résultats" in r.message["Subject"])
    assert mail["Subject"] == "Vos résultats : certification orale en anglais"
    text = mail.get_body(("plain",)).get_content()
    assert "Niveau global : B2" in text and "valable à vie" in text
    found = LINK.search(text)
    assert found is not None and found[0] == published["results_url"]
    token = token_of(found[0])

    assert (await org.ok("GET", "/results?status=to_review"))["results"] == []
    listed = await org.ok("GET", "/results?status=published")
    assert [r["candidate_id"] for r in listed["results"]] == [cand_id]

    page = await org.client.get(f"/results/{token}")
    html = await page.text()
    assert page.status == 200 and "Vos résultats" in html
    assert "Françoise Weiß-Łukasiewicz" in html and "Épreuve écrite" in html
    assert "B1 (score 71,5)" in html  # written as French writes it
    assert 'data-level="overall"><strong>B2' in html
    statement = await org.client.get(f"/results/{token}/statement.pdf")
    assert statement.status == 200 and statement.content_type == "application/pdf"
    body = await statement.read()
    assert body == await (await org.client.get(f"/results/{token}/statement.pdf")).read()
    words = _pdf_text(body)
    assert "Relevé de résultats" in words and "Françoise Weiß-Łukasiewicz" in words
    assert "Société Française d’Œnologie, Łask" in words and "Langue évaluée : anglais" in words
    assert "Entretien oral : B2" in words and "Niveau global : B2" in words
    assert published["verification_code"] in words
    cert = _pdf_text(await (await org.client.get(f"/results/{token}/certificate.pdf")).read())
    assert "Certificat" in cert and "a atteint le niveau B2 en anglais" in cert
    assert "Françoise Weiß-Łukasiewicz" in cert

    # The code, typed loosely: lower case, no dashes.
    code = published["verification_code"].replace("-", "").lower()
    check = await org.client.get(f"/v/{code}", headers={"Accept-Language": "fr"})
    check_html = await check.text()
    assert check.status == 200 and "Ce document est authentique." in check_html
    assert "Françoise Weiß-Łukasiewicz" in check_html and "anglais" in check_html
    assert "Épreuve écrite" not in check_html  # nothing but name, language, level, date
    english = await (await org.client.get(f"/v/{code}?lang=en")).text()
    assert "This document is genuine." in english and "English" in english
    # Typed into the form, with spaces: the form's answer leads to the same page.
    form = await (await org.client.get("/v?lang=en")).text()
    assert 'name="code"' in form and "This document is genuine." not in form
    spaced = " ".join(published["verification_code"].split("-"))
    typed = await org.client.get("/v", params={"code": spaced, "lang": "en"})
    assert typed.status == 200 and "This document is genuine." in await typed.text()


async def test_a_correction_after_publication_needs_a_reason_and_keeps_the_version(
    aiohttp_client: Any, mail_settings: Settings, clock: FrozenClock, smtp_server: SmtpServer
) -> None:
    org = await _org(aiohttp_client, mail_settings, clock)
    cand_id, _ = await _interviewed(org, clock, locale="en")
    await org.ok("PUT", f"/candidates/{cand_id}/result", json=RESULT)
    # Before publication: corrected in place, no history, no e-mail.
    first = await org.ok(
        "PUT", f"/candidates/{cand_id}/result", json={**RESULT, "oral_level": "C1"}
    )
    assert first["version"] == 1 and first["oral_level"] == "C1" and first["versions"] == []
    await org.ok("POST", f"/candidates/{cand_id}/result/publish")

    status, problem = await org.call(
        "PUT", f"/candidates/{cand_id}/result", json={**RESULT, "overall_level": "C1"}
    )
    assert status == 422 and problem["errors"][0]["field"] == "reason"
    assert (await org.ok("GET", f"/candidates/{cand_id}/result"))["overall_level"] == "B2"
    assert await _mails(org, "results_updated") == 0

    fixed = await org.ok(
        "PUT",
        f"/candidates/{cand_id}/result",
        json={**RESULT, "overall_level": "C1", "reason": "Written test re-marked."},
    )
    assert fixed["version"] == 2 and fixed["overall_level"] == "C1"
    assert [(v["version"], v["overall_level"], v["reason"]) for v in fixed["versions"]] == [
        (1, "B2", "Written test re-marked.")
    ]
    assert await _mails(org, "results_updated") == 1
    # The candidate's export holds the result, its former version included.
    export = await org.ok("GET", f"/candidates/{cand_id}/export")
    assert export["result"]["overall_level"] == "C1"
    assert [v["overall_level"] for v in export["result"]["versions"]] == ["B2"]
    await eventually(
        lambda: any("Updated results" in r.message["Subject"] for r in smtp_server.received),
        "the updated results e-mail delivered",
    )


async def test_revocation_and_a_new_link(
    aiohttp_client: Any, settings: Settings, clock: FrozenClock
) -> None:
    org = await _org(aiohttp_client, settings, clock)
    cand_id, _ = await _interviewed(org, clock, locale="en")
    await org.ok("PUT", f"/candidates/{cand_id}/result", json=RESULT)
    status, _ = await org.call("POST", f"/candidates/{cand_id}/result/revoke", json={"reason": "x"})
    assert status == 409  # nothing published yet
    status, _ = await org.call("POST", f"/candidates/{cand_id}/result/link")
    assert status == 409
    published = await org.ok("POST", f"/candidates/{cand_id}/result/publish")
    old = token_of(published["results_url"])

    renewed = await org.ok("POST", f"/candidates/{cand_id}/result/link")
    assert renewed["results_url"] != published["results_url"]
    assert (await org.client.get(f"/results/{old}")).status == 404
    assert (await org.client.get(f"/results/{old}/statement.pdf")).status == 404
    new = token_of(renewed["results_url"])
    assert (await org.client.get(f"/results/{new}")).status == 200
    assert await _mails(org, "results_link") == 1

    status, _ = await org.call("POST", f"/candidates/{cand_id}/result/revoke", json={"reason": " "})
    assert status == 422
    revoked = await org.ok(
        "POST", f"/candidates/{cand_id}/result/revoke", json={"reason": "Identity fraud."}
    )
    assert revoked["status"] == "revoked" and revoked["revoke_reason"] == "Identity fraud."
    clock.advance(timedelta(minutes=5))
    again = await org.ok("POST", f"/candidates/{cand_id}/result/revoke", json={"reason": "Again."})
    assert (
        again["revoked_at"] == revoked["revoked_at"] and again["revoke_reason"] == "Identity fraud."
    )

    page = await (await org.client.get(f"/v/{published['verification_code']}?lang=en")).text()
    assert "This certificate was revoked on" in page and "Camille" not in page
    assert (await org.client.get(f"/results/{new}/certificate.pdf")).status == 404
    status, _ = await org.call(
        "PUT", f"/candidates/{cand_id}/result", json={**RESULT, "reason": "r"}
    )
    assert status == 409
    batch = await org.ok("POST", "/results/publish", json={"candidate_ids": [cand_id]})
    assert batch["outcomes"][0]["outcome"] == "revoked"


async def test_unknown_codes_and_links_are_refused_and_throttled(
    aiohttp_client: Any, db_url: str, tmp_path: Any, clock: FrozenClock
) -> None:
    settings = load_settings(
        environ=app_environ(db_url, tmp_path / "data", VIVA_SECURITY_MAX_FAILURES="3")
    )
    org = await _org(aiohttp_client, settings, clock)
    unknown = await org.client.get("/v/AAAA-BBBB-CCCC-DDDD?lang=en")
    assert unknown.status == 404 and "No certificate has this code." in await unknown.text()
    assert (await org.client.get("/v/not-a-code")).status == 404
    assert (
        await org.client.get("/results/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    ).status == 404
    throttled = await org.client.get("/v/AAAA-BBBB-CCCC-DDDE")
    assert throttled.status == 429 and "Retry-After" in throttled.headers


async def test_a_result_for_nobody_or_badly_formed_changes_nothing(
    aiohttp_client: Any, settings: Settings, clock: FrozenClock
) -> None:
    org = await _org(aiohttp_client, settings, clock)
    cand = await org.make_candidate()
    status, _ = await org.call("GET", f"/candidates/{cand['id']}/result")
    assert status == 404
    status, _ = await org.call("POST", f"/candidates/{cand['id']}/result/publish")
    assert status == 404
    for bad in (
        {**RESULT, "overall_level": ""},
        {**RESULT, "parts": [{"name": "x", "level": "B1", "score": -1}]},
        {**RESULT, "extra": 1},
        {"overall_level": "B2"},
    ):
        status, problem = await org.call("PUT", f"/candidates/{cand['id']}/result", json=bad)
        assert status == 422, (bad, problem)
    # Without an assessed interview the oral level is simply not there.
    saved = await org.ok("PUT", f"/candidates/{cand['id']}/result", json=RESULT)
    assert saved["oral_level"] is None and saved["booking_id"] is None
    async with org.client.app[keys.DB].read() as session:
        assert await session.scalar(select(func.count()).select_from(Result)) == 1
        assert await session.scalar(select(func.count()).select_from(ResultVersion)) == 0


@pytest.mark.parametrize("status", ["published", "to_review"])
async def test_the_list_refuses_a_bad_query(
    aiohttp_client: Any, settings: Settings, clock: FrozenClock, status: str
) -> None:
    org = await _org(aiohttp_client, settings, clock)
    code, _ = await org.call("GET", f"/results?status={status}&from=nope")
    assert code == 422
    code, _ = await org.call("GET", "/results?status=other")
    assert code == 422


async def test_what_the_candidate_and_the_public_cannot_see(
    aiohttp_client: Any, settings: Settings, clock: FrozenClock
) -> None:
    org = await _org(aiohttp_client, settings, clock)
    cand_id, _ = await _interviewed(org, clock, locale="en")
    await org.ok("PUT", f"/candidates/{cand_id}/result", json={**RESULT, "target_reached": False})
    # Before publication the result's link, made by the server itself, opens nothing.
    app = org.client.app
    async with app[keys.DB].read() as session:
        result = await session.scalar(select(Result))
        assert result is not None
        early = results_token(app[keys.LINKS].signer, result)
    assert (await org.client.get(f"/results/{early}")).status == 404

    published = await org.ok("POST", f"/candidates/{cand_id}/result/publish")
    token = token_of(published["results_url"])
    assert token == early  # the same link, alive from publication on
    page = await (await org.client.get(f"/results/{token}")).text()
    assert "Results statement (PDF)" in page and "Certificate (PDF)" not in page
    assert (await org.client.get(f"/results/{token}/statement.pdf")).status == 200
    assert (await org.client.get(f"/results/{token}/certificate.pdf")).status == 404

    await org.ok(
        "PUT",
        f"/candidates/{cand_id}/result",
        json={**RESULT, "target_reached": False, "reason": "Camille Candidate asked."},
    )
    await org.ok("POST", f"/candidates/{cand_id}/result/revoke", json={"reason": "Fraud."})
    status, _ = await org.call("POST", f"/candidates/{cand_id}/result/publish")
    assert status == 409

    # Erased on request: no results page, and the code no longer verifies anything.
    await org.ok("DELETE", f"/candidates/{cand_id}", json={"mode": "erase"})
    assert (await org.client.get(f"/results/{token}")).status == 404
    check = await org.client.get(f"/v/{published['verification_code']}?lang=en")
    assert check.status == 404 and "No certificate has this code." in await check.text()
    async with app[keys.DB].read() as session:
        erased = await session.scalar(select(Result))
        assert erased is not None and erased.overall_level == "B2"  # anonymous figures stay
        assert erased.revoke_reason is None and erased.link_nonce != result.link_nonce
        kept = list(await session.scalars(select(ResultVersion)))
        assert [(v.version, v.reason) for v in kept] == [(1, "")]


async def test_concurrent_publications_mail_once_and_every_code_costs_the_same(
    aiohttp_client: Any, settings: Settings, clock: FrozenClock
) -> None:
    org = await _org(aiohttp_client, settings, clock)
    cand_id, _ = await _interviewed(org, clock, locale="en")
    other_id, _ = await _interviewed(org, clock, locale="en")
    for who in (cand_id, other_id):
        await org.ok("PUT", f"/candidates/{who}/result", json=RESULT)
    answers = await asyncio.gather(
        *(org.call("POST", f"/candidates/{cand_id}/result/publish") for _ in range(4)),
        org.call("POST", "/results/publish", json={"candidate_ids": [cand_id]}),
    )
    assert all(status == 200 for status, _ in answers), answers
    assert await _mails(org, "results_published") == 1

    genuine = (await org.ok("GET", f"/candidates/{cand_id}/result"))["verification_code"]
    revoked = (await org.ok("POST", f"/candidates/{other_id}/result/publish"))["verification_code"]
    await org.ok("POST", f"/candidates/{other_id}/result/revoke", json={"reason": "Fraud."})
    # The same statements whatever the answer: a look-up by hash, a candidate row read.
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.split()[0])

    engine = org.client.app[keys.DB].engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        seen = []
        for code in (genuine, revoked, "AAAA-BBBB-CCCC-DDDD", "x"):
            statements.clear()
            await org.client.get(f"/v/{code}")
            seen.append([s for s in statements if s.upper() == "SELECT"])
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert seen[0] and all(s == seen[0] for s in seen), seen

    doc = await (await org.client.get("/api/v1/openapi.json")).json()
    for path in ("/candidates/{id}/result", "/results/publish", "/results"):
        assert "/api/v1" + path in doc["paths"] or path in doc["paths"], path


async def test_concurrent_first_saves_make_one_result(
    aiohttp_client: Any, settings: Settings, clock: FrozenClock
) -> None:
    org = await _org(aiohttp_client, settings, clock)
    cand_id, _ = await _interviewed(org, clock, locale="en")
    answers = await asyncio.gather(
        *(
            org.call("PUT", f"/candidates/{cand_id}/result", json={**RESULT, "overall_level": lv})
            for lv in ("B1", "B2", "C1", "C2")
        )
    )
    assert [status for status, _ in answers] == [200] * 4, answers
    async with org.client.app[keys.DB].read() as session:
        assert await session.scalar(select(func.count()).select_from(Result)) == 1
