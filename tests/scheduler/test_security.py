"""Issue 9's guards on the HTTP layer: headers, cross-site posts, input that used to reach a
500, and link spellings. Each test fails when its guard is removed."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient

from scheduler import keys
from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.config import load_settings
from tests.conftest import Org, app_environ, token_of
from tests.rooms.room_support import book_interview
from tests.support.polling import eventually

PROBLEM = "application/problem+json"
OWN = "http://viva.test"  # app_environ's base_url
EVIL = "https://evil.example"
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


async def candidate_with_slot(org: Org) -> tuple[str, str]:
    """A candidate's link token and the start of a free slot (as the forms send it)."""
    await org.make_evaluator()
    token = token_of((await org.make_candidate())["link"])
    slots = await (await org.client.get(f"/c/{token}/slots")).json()
    return token, slots["slots"][0]["start"]


async def booking_of(org: Org, token: str) -> Any:
    candidates = (await org.ok("GET", "/candidates"))["candidates"]
    return next(c for c in candidates if token_of(c["link"]) == token)["booking"]


# --- §4 headers ------------------------------------------------------------------------


async def test_every_answer_has_the_security_headers_and_no_server_version(
    client: TestClient, make_org: Any
) -> None:
    org = await make_org()
    token, _ = await candidate_with_slot(org)
    answers = {
        "api": await client.get("/api/v1/organisation", headers=org.headers),
        "api_401": await client.get("/api/v1/organisation"),
        "candidate_json": await client.get(f"/c/{token}/slots"),
        "candidate_page": await client.get(f"/c/{token}"),
        "bad_link_page": await client.get("/c/nothing-here"),
        "room_info_404": await client.get("/r/nothing-here/info"),
        "unknown_route": await client.get("/nowhere"),
        "health": await client.get("/healthz"),
    }
    for name, resp in answers.items():
        assert resp.headers["Server"] == "Viva", name
        assert resp.headers["X-Content-Type-Options"] == "nosniff", name
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"], name
        assert "Strict-Transport-Security" not in resp.headers, name  # http base_url
    for name in ("api", "api_401", "candidate_json", "candidate_page", "bad_link_page"):
        assert answers[name].headers["Cache-Control"] == "no-store", name
    for name in ("candidate_page", "bad_link_page", "room_info_404"):
        assert answers[name].headers["Referrer-Policy"] == "no-referrer", name


async def test_hsts_when_the_public_url_is_https(
    aiohttp_client: Any, db_url: str, tmp_path: Path, clock: FrozenClock
) -> None:
    settings = load_settings(
        environ=app_environ(db_url, tmp_path, VIVA_SERVER_BASE_URL="https://viva.example")
    )
    client = await aiohttp_client(create_app(settings, clock=clock))
    for path in ("/healthz", "/c/nothing-here", "/api/v1/organisation"):
        resp = await client.get(path)
        assert resp.headers["Strict-Transport-Security"].startswith("max-age="), path


# --- §3 cross-site requests --------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": EVIL},
        {"Origin": "null"},
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://viva.test.evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
    ids=[
        "foreign-origin",
        "null-origin",
        "null-origin-cross-site",
        "lookalike-origin",
        "cross-site",
        "same-site",
    ],
)
async def test_a_cross_site_form_post_is_refused_and_books_nothing(
    client: TestClient, make_org: Any, headers: dict[str, str]
) -> None:
    org = await make_org()
    token, start = await candidate_with_slot(org)
    resp = await client.post(
        f"/c/{token}/book",
        data={"start": start},
        headers={**headers, "Accept-Language": "en"},
        allow_redirects=False,
    )
    assert resp.status == 403
    assert resp.content_type == "text/html"
    assert "another website" in await resp.text()
    assert await booking_of(org, token) is None
    # The same form from the server's own page books.
    resp = await client.post(
        f"/c/{token}/book",
        data={"start": start},
        headers={"Origin": OWN, "Sec-Fetch-Site": "same-origin"},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert await booking_of(org, token) is not None


async def test_our_own_form_books_though_no_referrer_makes_its_origin_null(
    client: TestClient, make_org: Any
) -> None:
    """Chromium sends `Origin: null` for a form post from a no-referrer page (found by the
    end-to-end test through nginx): the browser's Sec-Fetch-Site still says same-origin."""
    org = await make_org()
    token, start = await candidate_with_slot(org)
    resp = await client.post(
        f"/c/{token}/book",
        data={"start": start},
        headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert await booking_of(org, token) is not None


async def test_cross_site_cancel_and_json_posts_change_nothing(
    client: TestClient, make_org: Any
) -> None:
    org = await make_org()
    booked = await book_interview(org)
    token = booked.candidate_link
    before = await booking_of(org, token)
    resp = await client.post(f"/c/{token}/cancel", headers={"Origin": EVIL}, allow_redirects=False)
    assert resp.status == 403
    resp = await client.delete(f"/c/{token}/booking", headers={"Sec-Fetch-Site": "cross-site"})
    assert (resp.status, resp.content_type) == (403, PROBLEM)
    resp = await client.put(
        f"/c/{token}/booking", json={"start": before["start"]}, headers={"Origin": EVIL}
    )
    assert (resp.status, resp.content_type) == (403, PROBLEM)
    resp = await client.patch(
        "/api/v1/organisation",
        json={"recording": True},
        headers={**org.headers, "Origin": EVIL},
    )
    assert (resp.status, resp.content_type) == (403, PROBLEM)
    assert (await org.ok("GET", "/organisation"))["recording"] is False
    assert await booking_of(org, token) == before


async def test_requests_without_origin_or_fetch_metadata_pass(
    client: TestClient, make_org: Any
) -> None:
    """Scripts and integrators send neither header: they hold the link themselves."""
    org = await make_org()
    token, start = await candidate_with_slot(org)
    resp = await client.post(f"/c/{token}/booking", json={"start": start})
    assert resp.status == 201


def not_json(kind: str, start: str) -> tuple[str, dict[str, str]]:
    """The body another site's page can post without a CORS preflight."""
    if kind == "form":
        return urlencode({"start": start}), {"Content-Type": "application/x-www-form-urlencoded"}
    return json.dumps({"start": start}), {"Content-Type": "text/plain"}


@pytest.mark.parametrize("kind", ["form", "text-plain"])
async def test_candidate_json_endpoints_take_only_json(
    client: TestClient, make_org: Any, kind: str
) -> None:
    org = await make_org()
    token, start = await candidate_with_slot(org)
    body, headers = not_json(kind, start)
    resp = await client.post(f"/c/{token}/booking", data=body, headers=headers)
    assert (resp.status, resp.content_type) == (422, PROBLEM)
    assert await booking_of(org, token) is None

    booked = await client.post(f"/c/{token}/booking", json={"start": start})
    assert booked.status == 201
    moved_to = (await (await client.get(f"/c/{token}/slots")).json())["slots"][-1]["start"]
    body, headers = not_json(kind, moved_to)
    resp = await client.put(f"/c/{token}/booking", data=body, headers=headers)
    assert (resp.status, resp.content_type) == (422, PROBLEM)
    now_at = datetime.fromisoformat((await booking_of(org, token))["start"])
    assert now_at == datetime.fromisoformat(start)


# --- §7 bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [33, 100_000])
async def test_deeply_nested_json_is_a_400_before_any_work(
    client: TestClient, make_org: Any, depth: int
) -> None:
    org = await make_org()
    token, _ = await candidate_with_slot(org)
    deep = "[" * depth + "]" * depth
    json_type = {"Content-Type": "application/json"}
    # Unauthenticated: a candidate path with a link that does not exist, and the API.
    for path in (
        "/c/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/booking",
        f"/c/{token}/booking",
    ):
        resp = await client.post(path, data=deep, headers=json_type)
        body = await resp.json(content_type=None)
        assert (resp.status, resp.content_type) == (400, PROBLEM), body
        assert "nests deeper" in body["detail"]
    resp = await client.post("/api/v1/candidates", data=deep, headers=json_type)
    assert resp.status == 401
    resp = await client.post("/api/v1/candidates", data=deep, headers={**json_type, **org.headers})
    assert (resp.status, resp.content_type) == (400, PROBLEM)
    assert await booking_of(org, token) is None
    # 32 levels are still JSON the API reads (and refuses for its shape, as any other).
    resp = await client.post(
        "/api/v1/candidates", data="[" * 32 + "]" * 32, headers={**json_type, **org.headers}
    )
    assert resp.status == 422


async def test_patch_organisation_validates_the_contact_email(
    client: TestClient, make_org: Any
) -> None:
    org = await make_org()
    for bad in ("not an address", "a@b@c.example", "x@", "Name <x@cci.example>"):
        status, body = await org.call("PATCH", "/organisation", json={"contact_email": bad})
        assert status == 422, body
        assert [e["field"] for e in body["errors"]] == ["contact_email"]
    assert (await org.ok("GET", "/organisation"))["contact_email"] == "contact@cci.example"
    body = await org.ok("PATCH", "/organisation", json={"contact_email": "oral@cci.example"})
    assert body["contact_email"] == "oral@cci.example"


def test_org_create_refuses_an_invalid_email(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    import asyncio

    from sqlalchemy import func, select

    from scheduler.cli import main
    from scheduler.db import Database
    from scheduler.models import Organisation

    for name, value in app_environ(db_url, tmp_path).items():
        monkeypatch.setenv(name, value)
    assert main(["org", "create", "--name", "Bad", "--email", "oral at cci"]) == 2
    assert "--email" in capsys.readouterr().err

    async def count() -> int:
        db = Database(db_url)
        try:
            async with db.read() as session:
                return int(await session.scalar(select(func.count()).select_from(Organisation)))
        finally:
            await db.dispose()

    assert asyncio.run(count()) == 0
    assert main(["org", "create", "--name", "Good", "--email", "oral@cci.example"]) == 0
    assert asyncio.run(count()) == 1


async def test_create_organisation_refuses_an_invalid_email(db: Any, clock: FrozenClock) -> None:
    from scheduler.orgs import create_organisation

    with pytest.raises(ValueError, match="invalid e-mail"):
        async with db.write() as session:
            await create_organisation(session, name="Bad", contact_email="oral@", now=clock.now())


def spellings(token: str) -> list[str]:
    """Three other spellings that decoded to the very same bytes before the fix."""

    def decode(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    stray_bits = token[:-1] + _ALPHABET[_ALPHABET.index(token[-1]) ^ 1]
    variants = [token + "=", stray_bits, token[:10] + "." + token[10:] + "==="]
    for variant in variants:
        assert variant != token and decode(variant) == decode(token), variant
    return variants


async def test_only_the_canonical_spelling_of_a_link_opens_anything(
    client: TestClient, make_org: Any, clock: FrozenClock
) -> None:
    org = await make_org()
    booked = await book_interview(org)
    for variant in spellings(booked.candidate_link):
        for path in (f"/c/{variant}", f"/c/{variant}/slots"):
            assert (await client.get(path)).status == 404, path
    for variant in spellings(booked.evaluator_token):
        for path in (f"/r/{variant}", f"/r/{variant}/info"):
            assert (await client.get(path)).status == 404, path
    assert (await client.get(f"/c/{booked.candidate_link}")).status == 200
    assert (await client.get(f"/r/{booked.evaluator_token}/info")).status == 200


async def test_an_evaluator_using_the_contact_address_still_gets_a_valid_invitation(
    aiohttp_client: Any, mail_settings: Any, clock: FrozenClock, smtp_server: Any
) -> None:
    """ORGANIZER = ATTENDEE used to make every booking a 500: the sender organises instead."""

    import icalendar

    from scheduler.orgs import create_organisation

    client = await aiohttp_client(create_app(mail_settings, clock=clock))
    async with client.app[keys.DB].write() as session:
        new = await create_organisation(
            session, name="CCI Paris", contact_email="oral@cci.test", now=clock.now()
        )
    org = Org(client, new.organisation.id, new.api_key)
    await org.make_evaluator(email="Oral@cci.test")
    token = token_of((await org.make_candidate(email="sarah@example.test"))["link"])
    slots = await (await client.get(f"/c/{token}/slots")).json()
    resp = await client.post(f"/c/{token}/booking", json={"start": slots["slots"][0]["start"]})
    assert resp.status == 201, await resp.text()

    await eventually(lambda: len(smtp_server.received) >= 2, "both invitations delivered")
    organizers = {}
    for received in smtp_server.received:
        part = next(p for p in received.message.walk() if p.get_content_type() == "text/calendar")
        event = next(
            iter(icalendar.Calendar.from_ical(part.get_payload(decode=True)).walk("VEVENT"))
        )
        attendee = str(event["ATTENDEE"]).lower()
        organizers[attendee] = str(event["ORGANIZER"]).lower()
        assert organizers[attendee] != attendee
    assert organizers == {
        "mailto:oral@cci.test": "mailto:viva@viva.test",  # the sender address
        "mailto:sarah@example.test": "mailto:oral@cci.test",
    }
