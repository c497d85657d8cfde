"""Guards that a whole green suite once did not protect (issue 9, section 8).

Each test here fails when its guard is removed: an API key's revocation, both ways a
cancelled booking's room links die (its status and its rotated nonce), the
`application/json` requirement on the candidate's JSON endpoints (what stops a cross-site
form from posting to them), and a `/healthz` that really asks the database.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import select, update

from rooms.tokens import LinkKind, LinkSigner, new_nonce
from scheduler import keys
from scheduler.models import ApiKey, Booking
from scheduler.orgs import add_api_key
from tests.conftest import token_of
from tests.support.unreachable import unreachable

PROBLEM = "application/problem+json"


async def _book(org: Any) -> dict[str, Any]:
    """A candidate of `org` books the last green slot of the week (outside the lock, so
    they may still cancel it); returns the candidate JSON's booking and link token."""
    await org.make_evaluator()
    cand = await org.make_candidate()
    token = token_of(cand["link"])
    slots = await (await org.client.get(f"/c/{token}/slots")).json()
    resp = await org.client.post(f"/c/{token}/booking", json={"start": slots["slots"][-1]["start"]})
    assert resp.status == 201, await resp.text()
    return {"token": token, **(await resp.json())}


# --- API keys -----------------------------------------------------------------------------


async def test_a_revoked_api_key_is_refused_and_the_others_still_work(make_org, clock) -> None:
    org = await make_org()
    db = org.client.app[keys.DB]
    async with db.write() as session:
        spare = await add_api_key(session, org.id, name="spare", now=clock.now())
    assert (await org.call("GET", "/organisation"))[0] == 200

    async with db.write() as session:
        await session.execute(
            update(ApiKey).where(ApiKey.name == "default").values(revoked_at=clock.now())
        )
    status, body = await org.call("GET", "/organisation")
    assert status == 401 and body["status"] == 401
    # A write is refused too, and changes nothing.
    status, _ = await org.call("POST", "/candidates", json={"name": "X", "email": "x@e.org"})
    assert status == 401
    other = {"Authorization": f"Bearer {spare}"}
    resp = await org.client.get("/api/v1/candidates", headers=other)
    assert resp.status == 200 and (await resp.json())["candidates"] == []
    async with db.read() as session:
        revoked = (await session.scalars(select(ApiKey).where(ApiKey.name == "default"))).one()
    assert revoked.revoked_at is not None


# --- a cancelled booking's room links -------------------------------------------------------


async def test_a_cancelled_booking_resolves_for_nobody_even_with_its_old_nonce(make_org) -> None:
    """The status check alone: a booking cancelled without a nonce rotation (as a row could
    be, by hand or by a future code path) still opens no room."""
    org = await make_org()
    booked = await _book(org)
    detail = await org.ok("GET", f"/bookings/{booked['id']}")
    links = [detail["rooms"]["candidate"], detail["rooms"]["evaluator"]]
    for link in links:
        assert (await org.client.get(f"/r/{token_of(link)}/info")).status == 200

    db = org.client.app[keys.DB]
    async with db.write() as session:
        await session.execute(
            update(Booking).where(Booking.id == uuid.UUID(booked["id"])).values(status="cancelled")
        )
    for link in links:
        resp = await org.client.get(f"/r/{token_of(link)}/info")
        assert resp.status == 404 and resp.content_type == PROBLEM
        assert (await org.client.get(f"/r/{token_of(link)}")).status == 404


async def test_cancelling_rotates_the_room_nonce_so_old_links_fail_their_mac(make_org) -> None:
    """The nonce alone: after a cancellation the old links no longer match the booking's
    MAC, whatever its status says later, and no response hands out a room link."""
    org = await make_org()
    booked = await _book(org)
    detail = await org.ok("GET", f"/bookings/{booked['id']}")
    old = {"candidate": detail["rooms"]["candidate"], "evaluator": detail["rooms"]["evaluator"]}

    resp = await org.client.delete(f"/c/{booked['token']}/booking")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "cancelled" and body["room"] is None
    assert (await org.ok("GET", f"/bookings/{booked['id']}"))["rooms"] is None

    links = org.client.app[keys.LINKS]
    db = org.client.app[keys.DB]
    async with db.read() as session:
        booking = await session.get(Booking, uuid.UUID(booked["id"]))
    assert booking is not None
    for role, url in old.items():
        assert links.room_url(booking, role) != url
    # Were the booking active again, its old links would still be dead.
    async with db.write() as session:
        await session.execute(
            update(Booking).where(Booking.id == booking.id).values(status="confirmed")
        )
    for url in old.values():
        assert (await org.client.get(f"/r/{token_of(url)}/info")).status == 404


# --- the candidate's JSON endpoints need application/json ------------------------------------


async def test_candidate_json_endpoints_refuse_a_form_content_type(make_org) -> None:
    """A cross-site HTML form can post `text/plain` (or urlencoded) without a preflight:
    with a JSON-looking body it would book or move an interview. Refused, nothing changed."""
    org = await make_org()
    await org.make_evaluator()
    cand = await org.make_candidate()
    token = token_of(cand["link"])
    slots = (await (await org.client.get(f"/c/{token}/slots")).json())["slots"]
    body = json.dumps({"start": slots[0]["start"]})
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        resp = await org.client.post(
            f"/c/{token}/booking", data=body, headers={"Content-Type": content_type}
        )
        assert resp.status == 422 and resp.content_type == PROBLEM, content_type
        assert (await resp.json())["errors"][0]["field"] == "body"
    assert (await org.ok("GET", f"/candidates/{cand['id']}"))["booking"] is None

    booked = await org.client.post(f"/c/{token}/booking", json={"start": slots[0]["start"]})
    assert booked.status == 201
    before = (await org.ok("GET", f"/candidates/{cand['id']}"))["booking"]
    moved = json.dumps({"start": slots[1]["start"]})
    resp = await org.client.put(
        f"/c/{token}/booking", data=moved, headers={"Content-Type": "text/plain"}
    )
    assert resp.status == 422 and resp.content_type == PROBLEM
    assert (await org.ok("GET", f"/candidates/{cand['id']}"))["booking"] == before


async def test_api_refuses_valid_json_sent_with_another_content_type(make_org) -> None:
    org = await make_org()
    resp = await org.client.post(
        "/api/v1/candidates",
        data='{"name": "A", "email": "a@example.org", "language": "en"}',
        headers={**org.headers, "Content-Type": "text/plain"},
    )
    assert resp.status == 422 and resp.content_type == PROBLEM
    assert (await resp.json())["errors"][0]["field"] == "body"
    assert (await org.ok("GET", "/candidates"))["candidates"] == []


# --- /healthz asks the database ---------------------------------------------------------------


async def test_readyz_fails_when_the_database_is_unreachable(client) -> None:
    """Readiness asks the database; liveness (/healthz) only says the process answers, so a
    load balancer takes the process out of rotation without restarting it."""
    db = client.app[keys.DB]
    assert (await client.get("/readyz")).status == 200
    async with unreachable(db):
        resp = await client.get("/readyz")
        assert resp.status == 503 and resp.content_type == PROBLEM
        assert "read" in (await resp.json())["failed"]
        assert (await client.get("/healthz")).status == 200
    resp = await client.get("/readyz")
    assert resp.status == 200


async def test_a_body_over_the_size_limit_is_the_documented_413(make_org) -> None:
    org = await make_org()
    resp = await org.client.post(
        "/api/v1/candidates",
        data=json.dumps({"name": "A" * 300_000, "email": "a@example.org", "language": "en"}),
        headers={**org.headers, "Content-Type": "application/json"},
    )
    assert resp.status == 413 and resp.content_type == PROBLEM
    doc = await (await org.client.get("/api/v1/openapi.json")).json()
    assert "413" in doc["paths"]["/api/v1/candidates"]["post"]["responses"]
    assert "413" not in doc["paths"]["/api/v1/candidates"]["get"]["responses"]
    assert (await org.ok("GET", "/candidates"))["candidates"] == []


# --- found by mutation testing (docs/security.md, "Mutation score") ---------------------------


async def test_well_formed_links_to_rows_that_do_not_exist_are_404(client) -> None:
    """Forged ids take the same way out as real ones: 404, never a crash on a missing row
    (the room path checks the MAC against a random nonce, `room_wiring._NO_NONCE`)."""
    signer = client.app[keys.LINKS].signer
    for kind in (LinkKind.ROOM_CANDIDATE, LinkKind.ROOM_EVALUATOR):
        token = signer.make(kind, uuid.uuid4(), new_nonce())
        resp = await client.get(f"/r/{token}/info")
        assert resp.status == 404 and resp.content_type == PROBLEM
        assert (await resp.json())["detail"]
        # Even a refusal names the link in its URL: never cached, never in a Referer.
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
    token = signer.make(LinkKind.CANDIDATE, uuid.uuid4(), new_nonce())
    assert (await client.get(f"/c/{token}/slots")).status == 404
    assert (await client.get(f"/c/{token}")).status == 404


async def test_each_room_link_tells_its_own_participant_who_they_are(make_org) -> None:
    org = await make_org("CCI Formation")
    booked = await _book(org)
    detail = await org.ok("GET", f"/bookings/{booked['id']}")
    cand = await org.ok("GET", f"/candidates/{detail['candidate_id']}")
    ev = await org.ok("GET", f"/evaluators/{detail['evaluator_id']}")
    infos = {}
    for role in ("candidate", "evaluator"):
        resp = await org.client.get(f"/r/{token_of(detail['rooms'][role])}/info")
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
        infos[role] = await resp.json()
    assert infos["candidate"]["role"] == "candidate"
    assert infos["candidate"]["name"] == cand["name"] == infos["evaluator"]["other_name"]
    assert infos["evaluator"]["role"] == "evaluator"
    assert infos["evaluator"]["name"] == ev["name"] == infos["candidate"]["other_name"]
    for info in infos.values():
        assert info["organisation"] == "CCI Formation"
        assert info["language"] == cand["language"]
    assert infos["candidate"]["timezone"] == cand["timezone"]
    assert infos["evaluator"]["timezone"] == ev["timezone"]


async def test_the_booking_list_hands_out_no_room_links(make_org) -> None:
    """Room links are credentials: only a booking's own detail carries them."""
    org = await make_org()
    booked = await _book(org)
    listed = (await org.ok("GET", "/bookings"))["bookings"]
    assert [b["id"] for b in listed] == [booked["id"]]
    assert listed[0]["rooms"] is None
    assert (await org.ok("GET", f"/bookings/{booked['id']}"))["rooms"] is not None


async def test_only_a_401_asks_for_credentials_and_a_whole_body_error_names_the_body(
    make_org,
) -> None:
    org = await make_org()
    booked = await _book(org)
    resp = await org.client.get(f"/api/v1/evaluators/{uuid.uuid4()}", headers=org.headers)
    assert resp.status == 404 and "WWW-Authenticate" not in resp.headers
    resp = await org.client.post(
        f"/api/v1/bookings/{booked['id']}/force-majeure",
        json={"action": "move", "reason": "flood"},
        headers=org.headers,
    )
    assert resp.status == 422 and "WWW-Authenticate" not in resp.headers
    assert [e["field"] for e in (await resp.json())["errors"]] == ["body"]
    resp = await org.client.get("/api/v1/evaluators")
    assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"


async def test_a_valid_key_under_another_scheme_is_refused(make_org) -> None:
    org = await make_org()
    for header in (f"Basic {org.api_key}", f"Token {org.api_key}", org.api_key):
        resp = await org.client.get("/api/v1/organisation", headers={"Authorization": header})
        assert resp.status == 401, header
    resp = await org.client.get(
        "/api/v1/organisation", headers={"Authorization": f"bearer {org.api_key}"}
    )
    assert resp.status == 200


# --- survivors of `make mutate`, each killed here (docs/security.md, "Mutation score") ----


async def test_a_key_after_extra_spaces_still_authenticates(make_org) -> None:
    """`_org_for` splits the scheme at the first space and strips the key: `rpartition`
    would read `Bearer ` as the scheme and refuse a valid key."""
    org = await make_org()
    resp = await org.client.get(
        "/api/v1/organisation", headers={"Authorization": f"Bearer  {org.api_key} "}
    )
    assert resp.status == 200, await resp.text()


async def test_the_organisation_keeps_the_contact_phone_it_was_created_with(make_org) -> None:
    org = await make_org()
    assert (await org.ok("GET", "/organisation"))["contact_phone"] == "+33 1 23 45 67 89"


async def test_a_created_key_answers_201_with_its_12_character_prefix(make_org) -> None:
    """`_wrap` answers with each endpoint's documented status, not aiohttp's default 200."""
    org = await make_org()
    resp = await org.client.post(
        "/api/v1/organisation/keys", json={"name": "rotation"}, headers=org.headers
    )
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    # docs/security.md: the database keeps the key's 12-character prefix, no more.
    assert created["prefix"] == created["key"][:12] and len(created["prefix"]) == 12
    resp = await org.client.get("/api/v1/organisation", headers=org.headers)
    assert resp.status == 200


async def test_an_unknown_api_route_is_a_titled_problem(make_org) -> None:
    """aiohttp's own 404 carries no title: `problem` supplies the status's."""
    org = await make_org()
    resp = await org.client.get("/api/v1/no-such-thing", headers=org.headers)
    assert resp.status == 404 and resp.content_type == PROBLEM
    assert (await resp.json())["title"] == "Not found"


def test_a_problem_always_has_a_string_title_and_serialises_its_extras() -> None:
    from scheduler.web.problems import problem

    assert json.loads(problem(404, "x", title="Gone away").text)["title"] == "Gone away"
    assert json.loads(problem(404, "x").text)["title"] == "Not found"
    odd = json.loads(problem(418, "x", ident=uuid.UUID(int=1)).text)
    assert odd["title"] == "Error"
    assert odd["ident"] == "00000000-0000-0000-0000-000000000001"


def test_field_errors_name_nested_fields_with_dots_and_no_prefix_by_default() -> None:
    from pydantic import BaseModel, ValidationError

    from scheduler.web.problems import field_errors

    class Inner(BaseModel):
        start: int

    class Outer(BaseModel):
        slots: list[Inner]

    try:
        Outer.model_validate({"slots": [{"start": "soon"}]})
    except ValidationError as exc:
        assert [e.field for e in field_errors(exc)] == ["slots.0.start"]
    else:
        raise AssertionError("the model accepted a bad start")
    try:
        Outer.model_validate([])
    except ValidationError as exc:
        assert [e.field for e in field_errors(exc)] == ["body"]
    else:
        raise AssertionError("the model accepted a list")


async def test_the_candidate_slots_endpoint_answers_problem_json(client) -> None:
    """`/c/<token>/slots` is JSON: its errors are problem+json, not an HTML page."""
    resp = await client.get("/c/not-a-token/slots")
    assert resp.status == 404 and resp.content_type == PROBLEM, await resp.text()


def test_a_trailing_slash_on_the_base_url_makes_no_double_slash() -> None:
    from scheduler.links import Links
    from scheduler.models import Candidate

    links = Links(LinkSigner(b"s" * 16), "https://viva.example/")
    url = links.candidate_url(Candidate(id=uuid.uuid4(), link_nonce=new_nonce()))
    assert url.startswith("https://viva.example/c/") and "//c/" not in url
