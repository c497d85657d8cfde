"""The organisation API: validation, authentication, tenant isolation, one error shape."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from scheduler.web.api import ENDPOINTS, PREFIX
from tests.conftest import token_of

PROBLEM = "application/problem+json"


def _concrete(path: str, ident: str) -> str:
    return PREFIX + re.sub(r"{\w+}", ident, path)


def _assert_problem(resp_status: int, content_type: str, body: Any, status: int) -> None:
    assert resp_status == status
    assert content_type == PROBLEM
    assert body["status"] == status
    assert body["title"] and body["detail"]
    assert body["type"] == "about:blank"


async def test_every_endpoint_refuses_without_a_key(client) -> None:
    for ep in ENDPOINTS:
        resp = await client.request(ep.method, _concrete(ep.path, str(uuid.uuid4())), json={})
        _assert_problem(resp.status, resp.content_type, await resp.json(content_type=None), 401)
        assert resp.headers["WWW-Authenticate"] == "Bearer"


async def test_unknown_key_is_401(client) -> None:
    resp = await client.get(
        "/api/v1/evaluators", headers={"Authorization": "Bearer viva_not-a-real-key"}
    )
    _assert_problem(resp.status, resp.content_type, await resp.json(content_type=None), 401)


async def test_validation_names_the_field_and_changes_nothing(make_org) -> None:
    org = await make_org()
    status, body = await org.call(
        "POST",
        "/evaluators",
        json={"name": "", "email": "not-an-address", "timezone": "Mars/Olympus", "languages": []},
    )
    assert status == 422
    fields = {e["field"] for e in body["errors"]}
    assert {"name", "email", "timezone", "languages"} <= fields
    assert (await org.ok("GET", "/evaluators"))["evaluators"] == []


async def test_malformed_json_and_wrong_content_type(make_org) -> None:
    org = await make_org()
    resp = await org.client.post(
        "/api/v1/candidates",
        data=b"{not json",
        headers={**org.headers, "Content-Type": "application/json"},
    )
    body = await resp.json(content_type=None)
    _assert_problem(resp.status, resp.content_type, body, 422)
    assert body["errors"][0]["field"] == "body"
    resp = await org.client.post("/api/v1/candidates", data="x=1", headers=org.headers)
    _assert_problem(resp.status, resp.content_type, await resp.json(content_type=None), 422)


async def test_unknown_fields_are_refused(make_org) -> None:
    org = await make_org()
    status, body = await org.call(
        "POST",
        "/candidates",
        json={"name": "A", "email": "a@example.org", "language": "en", "colour": "red"},
    )
    assert status == 422
    assert [e["field"] for e in body["errors"]] == ["colour"]


async def test_availability_errors_point_at_the_interval(make_org) -> None:
    org = await make_org()
    ev = await org.make_evaluator()
    status, body = await org.call(
        "PUT",
        f"/evaluators/{ev['id']}/availability",
        json={
            "weekly": [
                {"day": "mon", "start": "09:00", "end": "12:00"},
                {"day": "mon", "start": "11:00", "end": "13:00"},
            ]
        },
    )
    assert status == 422
    assert body["errors"][0]["field"].startswith("weekly[")
    before = await org.ok("GET", f"/evaluators/{ev['id']}/availability")
    assert len(before["weekly"]) == 5  # the factory's Monday-Friday hours are untouched


async def test_availability_round_trip(make_org) -> None:
    org = await make_org()
    ev = await org.make_evaluator(
        weekly=[{"day": "tue", "start": "14:00", "end": "17:00"}],
        overrides=[
            {"date": "2026-12-24", "intervals": []},
            {"date": "2026-12-31", "intervals": [{"start": "09:00", "end": "11:00"}]},
        ],
    )
    got = await org.ok("GET", f"/evaluators/{ev['id']}/availability")
    assert got["weekly"] == [{"day": "tue", "start": "14:00", "end": "17:00"}]
    assert {o["date"] for o in got["overrides"]} == {"2026-12-24", "2026-12-31"}


async def test_evaluator_crud(make_org) -> None:
    org = await make_org()
    ev = await org.make_evaluator(name="Ana", languages=("fr",))
    patched = await org.ok("PATCH", f"/evaluators/{ev['id']}", json={"languages": ["fr", "EN"]})
    assert patched["languages"] == ["fr", "en"]
    status, body = await org.call("PATCH", f"/evaluators/{ev['id']}", json={"name": None})
    assert status == 422
    assert [(e["field"], e["message"].split(";")[0]) for e in body["errors"]] == [
        ("name", "Value error, cannot be null")
    ]
    status, _ = await org.call("DELETE", f"/evaluators/{ev['id']}")
    assert status == 204
    status, _ = await org.call("GET", f"/evaluators/{ev['id']}")
    assert status == 404


async def test_evaluator_with_interviews_ahead_cannot_be_removed(make_org) -> None:
    org = await make_org()
    ev = await org.make_evaluator()
    cand = await org.make_candidate()
    token = token_of(cand["link"])
    slots = await (await org.client.get(f"/c/{token}/slots")).json()
    resp = await org.client.post(f"/c/{token}/booking", json={"start": slots["slots"][0]["start"]})
    assert resp.status == 201
    status, body = await org.call("DELETE", f"/evaluators/{ev['id']}")
    assert status == 409 and body["status"] == 409


async def test_candidate_book_by_date_means_end_of_local_day(make_org) -> None:
    org = await make_org()
    cand = await org.make_candidate(book_by="2026-12-24", timezone="America/New_York")
    assert cand["book_by"] == "2026-12-25T05:00:00Z"
    status, body = await org.call(
        "POST",
        "/candidates",
        json={
            "name": "B",
            "email": "b@example.org",
            "language": "en",
            "book_by": "2026-12-24T10:00:00",
        },
    )
    assert status == 422 and body["errors"][0]["field"] == "book_by"


async def test_a_candidate_nobody_examines_is_accepted_with_a_warning_and_listed(
    make_org,
) -> None:
    """Candidates are often imported before evaluators: accept, but say they see no slot."""
    org = await make_org()
    other = await make_org("Org B", "b@b.example")
    await other.make_evaluator(languages=("de",))  # another organisation's evaluator counts not
    await org.make_evaluator(languages=("en",))
    served = await org.make_candidate(language="en")
    assert served["warnings"] == []
    german = await org.make_candidate(language="de")
    assert german["warnings"] == [
        {
            "field": "language",
            "code": "no_evaluator_for_language",
            "message": "no evaluator examines 'de': the candidate sees no slot until an "
            "evaluator for this language is added",
        }
    ]
    assert (await org.ok("GET", f"/candidates/{german['id']}"))["warnings"] == german["warnings"]

    unservable = await org.ok("GET", "/candidates?unservable=true")
    assert [c["id"] for c in unservable["candidates"]] == [german["id"]]
    servable = await org.ok("GET", "/candidates?unservable=false")
    assert [c["id"] for c in servable["candidates"]] == [served["id"]]
    everyone = await org.ok("GET", "/candidates")
    assert {c["id"] for c in everyone["candidates"]} == {served["id"], german["id"]}
    status, body = await org.call("GET", "/candidates?unservable=maybe")
    assert status == 422 and body["errors"][0]["field"] == "unservable"

    # An evaluator for German arrives: the warning and the listing follow.
    await org.make_evaluator(languages=("de", "fr"))
    assert (await org.ok("GET", f"/candidates/{german['id']}"))["warnings"] == []
    assert (await org.ok("GET", "/candidates?unservable=true"))["candidates"] == []


async def test_tenant_isolation(make_org) -> None:
    alice = await make_org("Org A", "a@a.example")
    bob = await make_org("Org B", "b@b.example")
    ev = await alice.make_evaluator()
    cand = await alice.make_candidate()
    token = token_of(cand["link"])
    slots = await (await alice.client.get(f"/c/{token}/slots")).json()
    booked = await alice.client.post(
        f"/c/{token}/booking", json={"start": slots["slots"][0]["start"]}
    )
    booking_id = (await booked.json())["id"]

    for method, path, body in [
        ("GET", f"/evaluators/{ev['id']}", None),
        ("PATCH", f"/evaluators/{ev['id']}", {"name": "Mallory"}),
        ("DELETE", f"/evaluators/{ev['id']}", None),
        ("GET", f"/evaluators/{ev['id']}/availability", None),
        ("PUT", f"/evaluators/{ev['id']}/availability", {"weekly": []}),
        ("GET", f"/candidates/{cand['id']}", None),
        ("GET", f"/bookings/{booking_id}", None),
    ]:
        status, problem = await bob.call(method, path, json=body)
        assert status == 404, (method, path, status)
        assert problem["status"] == 404
    assert (await bob.ok("GET", "/evaluators"))["evaluators"] == []
    assert (await bob.ok("GET", "/candidates"))["candidates"] == []
    assert (await bob.ok("GET", "/bookings"))["bookings"] == []
    assert (
        await bob.ok(
            "GET", "/slots", params={"language": "en", "from": "2026-12-01", "to": "2026-12-31"}
        )
    )["slots"] == []
    # Alice's data is untouched by Bob's attempts.
    assert (await alice.ok("GET", f"/evaluators/{ev['id']}"))["name"] == ev["name"]
    assert len((await alice.ok("GET", f"/evaluators/{ev['id']}/availability"))["weekly"]) == 5


async def test_bookings_list_and_detail(make_org) -> None:
    org = await make_org()
    ev = await org.make_evaluator()
    cand = await org.make_candidate()
    token = token_of(cand["link"])
    slots = await (await org.client.get(f"/c/{token}/slots")).json()
    resp = await org.client.post(f"/c/{token}/booking", json={"start": slots["slots"][0]["start"]})
    booking = await resp.json()
    listed = await org.ok("GET", "/bookings", params={"evaluator_id": ev["id"]})
    assert [b["id"] for b in listed["bookings"]] == [booking["id"]]
    assert (await org.ok("GET", "/bookings", params={"from": "2027-01-01"}))["bookings"] == []
    detail = await org.ok("GET", f"/bookings/{booking['id']}")
    assert detail["rooms"]["candidate"] == booking["room"]
    assert detail["rooms"]["evaluator"] != detail["rooms"]["candidate"]
    assert re.fullmatch(r"http://viva\.test/r/[A-Za-z0-9_-]{40,}", detail["rooms"]["evaluator"])
    got = await org.ok("GET", f"/candidates/{cand['id']}")
    assert got["booking"]["id"] == booking["id"]


async def test_slots_query_validation(make_org) -> None:
    org = await make_org()
    status, body = await org.call(
        "GET", "/slots", params={"language": "en", "from": "2026-12-10", "to": "2026-12-01"}
    )
    assert status == 422 and body["errors"][0]["field"] == "to"
    status, body = await org.call("GET", "/slots", params={"from": "2026-12-01", "to": "x"})
    assert status == 422
    assert {e["field"] for e in body["errors"]} == {"language", "to"}


async def test_openapi_document_covers_every_endpoint(client) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    for ep in ENDPOINTS:
        op = doc["paths"][PREFIX + ep.path][ep.method.lower()]
        if ep.body is not None:
            ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.rsplit("/", 1)[1] in doc["components"]["schemas"]
    evaluator_in = doc["components"]["schemas"]["EvaluatorIn"]
    assert set(evaluator_in["required"]) == {"name", "email", "timezone", "languages"}
    reference = await client.get("/api/v1/docs")
    assert reference.status == 200
    assert "/api/v1/evaluators/{id}/availability" in await reference.text()


async def test_every_operation_has_a_request_example_the_server_accepts(make_org) -> None:
    from scheduler.web.api import parse
    from scheduler.web.openapi import EXAMPLES, example_requests

    org = await make_org()
    doc = await (await org.client.get("/api/v1/openapi.json")).json()
    commands = example_requests(doc)
    for ep in ENDPOINTS:
        op = doc["paths"][PREFIX + ep.path][ep.method.lower()]
        assert commands[op["operationId"]], op["operationId"]
        if ep.body is not None:
            media = op["requestBody"]["content"]["application/json"]
            values = (
                [media["example"]]
                if "example" in media
                else [e["value"] for e in media["examples"].values()]
            )
            for value in values:
                parse(ep.body, value)  # raises, naming the field, if the example drifted
        if ep.query is not None:
            query = {
                p["name"]: p["example"]
                for p in op["parameters"]
                if p["in"] == "query" and "example" in p
            }
            assert query, op["operationId"]
            parse(ep.query, query)
    assert set(EXAMPLES) <= {ep.handler.__name__ for ep in ENDPOINTS}
    # And the examples work for real, in order: an evaluator, their hours, a candidate.
    status, ev = await org.call("POST", "/evaluators", json=EXAMPLES["create_evaluator"]["body"])
    assert status == 201
    hours = EXAMPLES["put_availability"]["body"]
    assert (await org.call("PUT", f"/evaluators/{ev['id']}/availability", json=hours))[0] == 200
    status, cand = await org.call("POST", "/candidates", json=EXAMPLES["create_candidate"]["body"])
    assert status == 201 and cand["warnings"] == []


async def test_the_reference_page_renders_markdown_and_shows_examples(client) -> None:
    page = await (await client.get("/api/v1/docs")).text()
    # Backticks became code; no description shows a literal one.
    assert "<code>Authorization: Bearer &lt;api key&gt;</code>" in page
    assert "`" not in page
    section = page.split('id="op-force_majeure_booking"', 1)[1].split("</section>", 1)[0]
    assert "Example request" in section
    assert section.count("<pre") == 2  # move and cancel
    assert "&#34;reason&#34;" in section or "&quot;reason&quot;" in section
    assert "Bearer $VIVA_API_KEY" in section


def test_markdown_descriptions_never_pass_html_through() -> None:
    from scheduler.web.openapi import markdown, markdown_inline

    hostile = "a `b` <script>alert(1)</script> [x](javascript:alert(1)) <img src=x onerror=y>"
    for html in (markdown(hostile), markdown_inline(hostile)):
        assert "<code>b</code>" in html
        assert "<script" not in html and "<img" not in html
        assert 'href="javascript:' not in html


async def test_healthz(client) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200 and (await resp.json())["status"] == "ok"


@pytest.mark.parametrize("path", ["/c/short", "/c/" + "A" * 46, "/c/../../etc/passwd"])
async def test_candidate_json_with_bad_token_is_404(client, path: str) -> None:
    resp = await client.get(path + "/slots")
    assert resp.status == 404
