"""The recording notice per organisation and language: the room page shows the
organisation's text in the reader's language, a consent stores the SHA-256 of the exact
text shown, and a participant who consented to an older text is asked again."""

from __future__ import annotations

import hashlib
import html
import json
import re
from datetime import datetime, timedelta
from typing import Any

from scheduler import keys
from scheduler.web.room_pages import notice_version
from tests.conftest import token_of
from tests.rooms.room_support import consent

FR = "Cet entretien est enregistré pour les recours ; l'enregistrement est effacé après 30 jours."
EN = "This interview is recorded for appeals; the recording is deleted after 30 days."


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def _page(client: Any, token: str, lang: str) -> tuple[str, dict[str, Any]]:
    resp = await client.get(f"/r/{token}?lang={lang}")
    assert resp.status == 200
    page = await resp.text()
    data = re.search(r'<script type="application/json" id="room-data">(.*?)</script>', page, re.S)
    assert data is not None
    return html.unescape(page), json.loads(data[1])


async def test_a_changed_notice_is_shown_and_asked_again(make_org: Any, clock: Any) -> None:
    org = await make_org()
    app = org.client.app
    await org.ok("PATCH", "/organisation", json={"recording": True})
    await org.make_evaluator()
    cand = await org.make_candidate(locale="en")
    token = token_of(cand["link"])
    slots = await (await org.client.get(f"/c/{token}/slots")).json()
    booked = await org.client.post(
        f"/c/{token}/booking", json={"start": slots["slots"][0]["start"]}
    )
    booking_id = (await booked.json())["id"]
    room = token_of((await org.ok("GET", f"/bookings/{booking_id}"))["rooms"]["candidate"])
    tickets = app[keys.ROOM_TICKETS]
    # The room is open (the notice is shown with the join button).
    clock.set(datetime.fromisoformat(slots["slots"][0]["start"]) - timedelta(minutes=5))

    # Viva's own notice until the organisation writes its own.
    shown = await org.ok("GET", "/organisation/privacy")
    assert not any(n["own"] for n in shown["consent_notices"])
    page, data = await _page(org.client, room, "en")
    assert "This interview is recorded." in page and FR not in page
    await consent(org.client, room)
    assert (await tickets.resolve(room)).consented

    # Refused: a language the pages do not speak, an empty text; nothing changes.
    status, problem = await org.call(
        "PUT", "/organisation/privacy", json={"consent_notices": {"de": "Aufgezeichnet."}}
    )
    assert status == 422 and "consent_notices.de" in json.dumps(problem)
    status, _ = await org.call(
        "PUT", "/organisation/privacy", json={"consent_notices": {"fr": " "}}
    )
    assert status == 422
    assert (await tickets.resolve(room)).consented

    put = await org.ok(
        "PUT", "/organisation/privacy", json={"consent_notices": {"fr": FR, "en": EN}}
    )
    assert {n["language"]: (n["text"], n["own"], n["version"]) for n in put["consent_notices"]} == {
        "fr": (FR, True, _sha(FR)),
        "en": (EN, True, _sha(EN)),
    }
    # The page shows the organisation's text in the reader's language, and names its hash.
    page, data = await _page(org.client, room, "fr")
    assert FR in page and EN not in page and data["notice"] == _sha(FR)
    page, data = await _page(org.client, room, "en")
    assert EN in page and data["notice"] == _sha(EN)
    # The consent to the old text no longer counts: the participant is asked again, and
    # the old text's version is refused.
    assert not (await tickets.resolve(room)).consented
    old = await org.client.post(f"/r/{room}/consent", json={"notice": notice_version(app, "en")})
    assert old.status == 422
    resp = await org.client.post(f"/r/{room}/consent", json={"notice": _sha(FR)})
    assert resp.status == 204
    assert (await tickets.resolve(room)).consented
    consents = (await org.ok("GET", f"/bookings/{booking_id}"))["room"]["consents"]
    assert {c["notice"] for c in consents} == {notice_version(app, "en"), _sha(FR)}

    # Back to Viva's text for English only: French readers still see the organisation's.
    put = await org.ok("PUT", "/organisation/privacy", json={"consent_notices": {"fr": FR}})
    assert {n["language"]: n["own"] for n in put["consent_notices"]} == {"fr": True, "en": False}
    assert (await tickets.resolve(room)).consented, "the French text they agreed to stands"
