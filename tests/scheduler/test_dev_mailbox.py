"""Dev mode keeps every message at /dev/mail, with working links and a downloadable .ics."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import icalendar

from scheduler.app import create_app
from scheduler.config import load_settings
from tests.conftest import Org, app_environ, token_of
from tests.support.polling import eventually


async def test_dev_mailbox_shows_the_booking_messages(
    aiohttp_client, db_url: str, tmp_path: Path, clock
) -> None:
    from scheduler import keys
    from scheduler.orgs import create_organisation

    settings = load_settings(environ=app_environ(db_url, tmp_path, VIVA_SERVER_DEV_MODE="true"))
    client = await aiohttp_client(create_app(settings, clock=clock))
    async with client.app[keys.DB].write() as session:
        new = await create_organisation(
            session, name="Demo", contact_email="demo@cci.test", now=clock.now()
        )
    org = Org(client, new.organisation.id, new.api_key)
    await org.make_evaluator(email="eva@cci.test")
    cand = await org.make_candidate(email="cam@example.test", locale="fr")
    token = token_of(cand["link"])
    resp = await client.post(f"/c/{token}/booking", json={"start": "2026-12-02T09:00:00+01:00"})
    assert resp.status == 201

    async def both_sent() -> tuple[str, list[str]] | None:
        listing = await (await client.get("/dev/mail")).text()
        ids = re.findall(r'href="/dev/mail/([0-9a-f-]{36})"', listing)
        return (listing, ids) if len(ids) == 2 and listing.count(">sent<") == 2 else None

    listing, ids = await eventually(both_sent, "both invitations listed as sent")
    assert "cam@example.test" in listing and "eva@cci.test" in listing

    pages = [await (await client.get(f"/dev/mail/{i}")).text() for i in ids]
    candidate_page = next(p for p in pages if re.search(r"<dt>To</dt><dd>[^<]*cam@example", p))
    # The personal link in the message is the candidate's working link.
    assert cand["link"] in candidate_page
    opened = await client.get(cand["link"].replace("http://viva.test", ""))
    assert opened.status == 200

    ics = await client.get(f"/dev/mail/{ids[0]}/invite.ics")
    assert ics.status == 200 and ics.content_type == "text/calendar"
    cal = icalendar.Calendar.from_ical(await ics.read())
    assert str(cal["METHOD"]) == "REQUEST"
    assert (await client.get("/dev/mail/not-a-uuid")).status == 404

    # The page's "Download the message (.eml)" link answers the message itself.
    eml_link = re.search(r'href="(/dev/mail/[0-9a-f-]{36}\.eml)"', candidate_page)
    assert eml_link is not None
    eml = await client.get(eml_link.group(1))
    assert eml.status == 200 and eml.content_type == "message/rfc822"
    parsed = email.message_from_bytes(await eml.read(), policy=email.policy.default)
    assert "cam@example.test" in str(parsed["To"])
    assert parsed.get_body(preferencelist=("plain",)) is not None
    assert cand["link"] in parsed.get_body(preferencelist=("plain",)).get_content()


async def test_no_dev_mailbox_outside_dev_mode(client) -> None:
    assert (await client.get("/dev/mail")).status == 404
