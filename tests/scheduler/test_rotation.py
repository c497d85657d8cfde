"""Rotating and revoking secrets (issue 9, section 6): API keys and candidates' links.

API keys: several per organisation, created (shown once), listed (never shown), revoked at
once on every process (each request reads the database: two apps on one database prove
it); a key cannot revoke itself while it is the last active one; another organisation's
key is 404. Candidates' links: re-issued by the organisation, the old ones answer 404, the
candidate is mailed the new ones. Both databases, through the real API and outbox.
"""

from __future__ import annotations

import email
import json
import uuid
from collections.abc import Awaitable, Callable
from email.policy import default
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from mailer.outbox import list_messages
from scheduler import keys
from scheduler.app import create_app
from scheduler.cli import main
from scheduler.clock import FrozenClock
from scheduler.config import Settings
from scheduler.models import ApiKey, Booking
from tests.conftest import Org, app_environ, token_of

PARIS_DEC_2 = "2026-12-02T09:00:00+01:00"


async def _as(org: Org, key: str, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    """A call with another of the organisation's keys."""
    resp = await org.client.request(
        method, "/api/v1" + path, headers={"Authorization": f"Bearer {key}"}, **kw
    )
    body = await resp.json(content_type=None) if resp.status != 204 else None
    return resp.status, body


async def _key_id(org: Org, key: str) -> str:
    listed = (await org.ok("GET", "/organisation/keys"))["keys"]
    found = [k["id"] for k in listed if key.startswith(k["prefix"]) and k["revoked_at"] is None]
    assert len(found) == 1, listed
    return found[0]


# --- API keys ------------------------------------------------------------------------------


async def test_an_organisation_rotates_its_key_without_downtime(make_org) -> None:
    org = await make_org()
    old_id = await _key_id(org, org.api_key)

    resp = await org.client.post(
        "/api/v1/organisation/keys", json={"name": "LMS 2027"}, headers=org.headers
    )
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    new_key = created["key"]
    assert new_key.startswith("viva_") and new_key.startswith(created["prefix"])
    assert (created["name"], created["revoked_at"]) == ("LMS 2027", None)
    assert (await _as(org, new_key, "GET", "/organisation"))[0] == 200

    # Listed, never shown: neither key appears in the listing, whoever asks.
    for key in (org.api_key, new_key):
        resp = await org.client.get(
            "/api/v1/organisation/keys", headers={"Authorization": f"Bearer {key}"}
        )
        text = await resp.text()
        assert resp.status == 200
        assert org.api_key not in text and new_key not in text
        assert org.api_key[12:20] not in text and new_key[12:20] not in text
        listed = json.loads(text)["keys"]
        assert sorted(k["name"] for k in listed) == ["LMS 2027", "default"]
        assert all(set(k) == {"id", "name", "prefix", "created_at", "revoked_at"} for k in listed)
    # Nor does the database hold a key in clear.
    async with org.client.app[keys.DB].read() as session:
        rows = list(await session.scalars(select(ApiKey)))
    stored = " ".join(f"{r.name} {r.prefix} {r.key_hash}" for r in rows)
    assert org.api_key not in stored and new_key not in stored

    # The new key revokes the old one: the old key is refused from the next request on.
    status, _ = await _as(org, new_key, "DELETE", f"/organisation/keys/{old_id}")
    assert status == 204
    status, problem = await org.call("GET", "/organisation")
    assert status == 401 and problem["detail"] == "unknown or revoked API key"
    status, _ = await org.call("POST", "/evaluators", json={"name": "X"})
    assert status == 401
    listed = (await _as(org, new_key, "GET", "/organisation/keys"))[1]["keys"]
    assert {k["name"]: k["revoked_at"] is not None for k in listed} == {
        "default": True,
        "LMS 2027": False,
    }
    # Revoking again changes nothing.
    assert (await _as(org, new_key, "DELETE", f"/organisation/keys/{old_id}"))[0] == 204


async def test_a_key_cannot_revoke_itself_while_it_is_the_last_active_one(make_org) -> None:
    org = await make_org()
    own = await _key_id(org, org.api_key)
    resp = await org.client.delete(f"/api/v1/organisation/keys/{own}", headers=org.headers)
    assert resp.status == 409 and resp.content_type == "application/problem+json"
    assert "last active key" in (await resp.json())["detail"]
    assert (await org.call("GET", "/organisation"))[0] == 200  # nothing changed

    # With another active key, it may.
    other = (await org.ok("POST", "/organisation/keys", json={"name": "spare"}))["key"]
    assert (await org.call("DELETE", f"/organisation/keys/{own}"))[0] == 204
    assert (await org.call("GET", "/organisation"))[0] == 401
    assert (await _as(org, other, "GET", "/organisation"))[0] == 200


async def test_another_organisations_key_is_not_found(make_org) -> None:
    org = await make_org()
    rival = await make_org(name="Rival", email="contact@rival.example")
    rival_key = await _key_id(rival, rival.api_key)
    await org.ok("POST", "/organisation/keys", json={"name": "spare"})  # not the last one
    for key_id in (rival_key, str(uuid.uuid4()), "not-an-id"):
        status, problem = await org.call("DELETE", f"/organisation/keys/{key_id}")
        assert status == 404, (key_id, problem)
        assert problem["detail"] != "unknown or revoked API key"
    assert (await rival.call("GET", "/organisation"))[0] == 200
    listed = (await org.ok("GET", "/organisation/keys"))["keys"]
    assert rival_key not in {k["id"] for k in listed}


async def test_bad_key_input_is_refused_and_changes_nothing(make_org) -> None:
    org = await make_org()
    for body in ({}, {"name": ""}, {"name": "a\nb"}, {"name": "x", "key": "viva_mine"}):
        status, problem = await org.call("POST", "/organisation/keys", json=body)
        assert status == 422, (body, problem)
    assert len((await org.ok("GET", "/organisation/keys"))["keys"]) == 1
    resp = await org.client.post("/api/v1/organisation/keys", json={"name": "x"})
    assert resp.status == 401


async def test_a_revocation_is_seen_at_once_by_another_process(
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    make_org: Callable[..., Awaitable[Org]],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    """Two apps on one database, as two `viva serve` processes: no cache outlives a revocation."""
    org = await make_org()
    other_process = await aiohttp_client(create_app(settings, clock=clock))
    spare = (await org.ok("POST", "/organisation/keys", json={"name": "spare"}))["key"]
    headers = {"Authorization": f"Bearer {org.api_key}"}
    for _ in range(2):  # warm whatever a process might keep
        assert (await other_process.get("/api/v1/organisation", headers=headers)).status == 200
    own = await _key_id(org, org.api_key)
    assert (await _as(org, spare, "DELETE", f"/organisation/keys/{own}"))[0] == 204
    assert (await other_process.get("/api/v1/organisation", headers=headers)).status == 401
    spare_headers = {"Authorization": f"Bearer {spare}"}
    assert (await other_process.get("/api/v1/organisation", headers=spare_headers)).status == 200


def test_the_command_line_creates_lists_and_revokes_keys(
    db_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for name, value in app_environ(db_url, tmp_path / "data").items():
        monkeypatch.setenv(name, value)

    def viva(*args: str) -> list[dict[str, Any]]:
        assert main(list(args)) == 0
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    org = viva("org", "create", "--name", "CCI", "--email", "oral@cci.example")[0]
    first_key = org["api_key"]
    created = viva("org", "key", "create", "--org", org["id"], "--name", "rotation")[0]
    assert created["api_key"].startswith(created["prefix"]) and created["revoked_at"] is None
    listed = sorted(viva("org", "key", "list", "--org", org["id"]), key=lambda k: k["name"])
    assert [k["name"] for k in listed] == ["default", "rotation"]
    assert all("api_key" not in k for k in listed)
    assert first_key not in json.dumps(listed) and created["api_key"] not in json.dumps(listed)
    revoked = viva("org", "key", "revoke", "--org", org["id"], listed[0]["id"])[0]
    assert revoked["id"] == listed[0]["id"] and revoked["revoked_at"] is not None
    listed = sorted(viva("org", "key", "list", "--org", org["id"]), key=lambda k: k["name"])
    assert [k["revoked_at"] is not None for k in listed] == [True, False]
    # Another organisation's key, or none: an error, nothing changed.
    other = viva("org", "create", "--name", "Rival", "--email", "oral@rival.example")[0]
    assert main(["org", "key", "revoke", "--org", other["id"], listed[1]["id"]]) == 1
    assert "no such key" in capsys.readouterr().err
    assert main(["org", "key", "list", "--org", str(uuid.uuid4())]) == 1
    assert "no such organisation" in capsys.readouterr().err
    assert main(["org", "key", "create", "--org", org["id"], "--name", " \n "]) == 2
    assert "--name" in capsys.readouterr().err
    assert len(viva("org", "key", "list", "--org", org["id"])) == 2
    after = {k["name"]: k["revoked_at"] for k in viva("org", "key", "list", "--org", org["id"])}
    assert after["rotation"] is None


# --- candidates' links ------------------------------------------------------------------


def _decoded(raw: bytes) -> tuple[str, str]:
    """(subject, every part decoded)."""
    message = email.message_from_bytes(raw, policy=default)
    parts = (p.get_payload(decode=True) for p in message.walk() if not p.is_multipart())
    return str(message["Subject"]), "\n".join(p.decode() for p in parts if p)


async def _messages_to(org: Org, recipient: str) -> list[Any]:
    async with org.client.app[keys.DB].read() as session:
        stored = await list_messages(session, org.id, limit=500)
    return [m for m in stored if m.recipient == recipient]


@pytest.mark.parametrize("booked", [False, True])
async def test_reissuing_a_candidates_links_revokes_the_old_ones_and_mails_the_new(
    make_org, booked: bool
) -> None:
    org = await make_org()
    await org.make_evaluator()
    candidate = await org.make_candidate(email="cam@example.test", locale="fr")
    old_link = token_of(candidate["link"])
    old_room = None
    if booked:
        resp = await org.client.post(f"/c/{old_link}/booking", json={"start": PARIS_DEC_2})
        assert resp.status == 201, await resp.text()
        booking_id = (await resp.json())["id"]
        rooms = (await org.ok("GET", f"/bookings/{booking_id}"))["rooms"]
        old_room, evaluator_room = token_of(rooms["candidate"]), token_of(rooms["evaluator"])
    before = len(await _messages_to(org, "cam@example.test"))

    resp = await org.client.post(f"/api/v1/candidates/{candidate['id']}/link", headers=org.headers)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("application/json")
    new = await resp.json()
    new_link = token_of(new["link"])
    assert new_link != old_link
    assert (await org.ok("GET", f"/candidates/{candidate['id']}"))["link"] == new["link"]

    # The old personal link is dead, like any made-up one; the new one works.
    assert (await org.client.get(f"/c/{old_link}")).status == 404
    assert (await org.client.get(f"/c/{old_link}/slots")).status == 404
    assert (await org.client.get(f"/c/{new_link}")).status == 200
    if booked:
        assert new["room"] is not None
        new_room = token_of(new["room"])
        assert new_room != old_room
        assert (await org.client.get(f"/r/{old_room}/info")).status == 404
        assert (await org.client.get(f"/r/{new_room}/info")).status == 200
        rooms = (await org.ok("GET", f"/bookings/{booking_id}"))["rooms"]
        assert token_of(rooms["candidate"]) == new_room
        assert token_of(rooms["evaluator"]) == evaluator_room  # not the evaluator's business
    else:
        assert new["room"] is None

    # The candidate is mailed the new links, in their language, and only those.
    mails = await _messages_to(org, "cam@example.test")
    assert len(mails) == before + 1
    (mail,) = [m for m in mails if m.kind == "links_reissued"]  # one clock tick: no order
    subject, body = _decoded(mail.raw)
    assert subject == "Votre nouveau lien personnel pour votre entretien oral"
    assert new["link"] in body and old_link not in body
    assert "Les liens des e-mails précédents ne fonctionnent plus" in body
    if booked:
        assert new["room"] in body and old_room not in body
        assert mail.booking_id == uuid.UUID(booking_id)
    assert b"text/calendar" not in mail.raw  # the time has not changed


async def test_a_revoked_or_forged_candidate_link_cannot_book(make_org) -> None:
    """The booking checks the link on the candidate's row inside its own transaction: a link
    re-issued since, or one whose signature was altered, gets the same 404 as a made-up one
    and books nothing; the current link books."""
    org = await make_org()
    await org.make_evaluator()
    candidate = await org.make_candidate()
    old = token_of(candidate["link"])
    new = token_of((await org.ok("POST", f"/candidates/{candidate['id']}/link"))["link"])
    swap = "B" if new[30] == "A" else "A"
    forged = new[:30] + swap + new[31:]  # one signature character changed
    for token in (old, forged):
        resp = await org.client.post(f"/c/{token}/booking", json={"start": PARIS_DEC_2})
        assert resp.status == 404, (token, await resp.text())
        assert resp.content_type == "application/problem+json"
    async with org.client.app[keys.DB].read() as session:
        assert list(await session.scalars(select(Booking.id))) == []

    resp = await org.client.post(f"/c/{new}/booking", json={"start": PARIS_DEC_2})
    assert resp.status == 201, await resp.text()


async def test_an_english_candidate_is_mailed_in_english(make_org) -> None:
    org = await make_org()
    candidate = await org.make_candidate(email="cam@example.test", locale="en")
    new = await org.ok("POST", f"/candidates/{candidate['id']}/link")
    (mail,) = await _messages_to(org, "cam@example.test")
    subject, body = _decoded(mail.raw)
    assert subject == "Your new personal link for your oral interview"
    assert "The links in earlier e-mails no longer work" in body and new["link"] in body


async def test_another_organisations_candidate_is_not_found_and_keeps_its_link(
    make_org,
) -> None:
    org = await make_org()
    rival = await make_org(name="Rival", email="contact@rival.example")
    theirs = await rival.make_candidate(email="theirs@example.test")
    for candidate_id in (theirs["id"], str(uuid.uuid4()), "not-an-id"):
        status, problem = await org.call("POST", f"/candidates/{candidate_id}/link")
        assert status == 404, problem
    assert (await org.client.get(f"/c/{token_of(theirs['link'])}")).status == 200
    assert await _messages_to(rival, "theirs@example.test") == []
    assert (await org.client.post(f"/api/v1/candidates/{theirs['id']}/link")).status == 401


async def test_the_openapi_document_declares_the_rotation_endpoints(client) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    keys_path = doc["paths"]["/api/v1/organisation/keys"]
    # 413: every operation with a body reads it before the key is checked.
    assert set(keys_path["post"]["responses"]) == {"201", "401", "413", "422"}
    assert set(keys_path["get"]["responses"]) == {"200", "401"}
    revoke = doc["paths"]["/api/v1/organisation/keys/{id}"]["delete"]
    assert set(revoke["responses"]) == {"204", "401", "404", "409"}
    link = doc["paths"]["/api/v1/candidates/{id}/link"]["post"]
    assert set(link["responses"]) == {"200", "401", "404"}
    schemas = doc["components"]["schemas"]
    assert "key" in schemas["ApiKeyCreated"]["properties"]
    assert "key" not in schemas["ApiKeyOut"]["properties"]
    assert "key_hash" not in schemas["ApiKeyOut"]["properties"]
    assert set(schemas["CandidateLinks"]["properties"]) == {"link", "room"}
