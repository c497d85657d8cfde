"""Changing and cancelling from the personal link, with plain links and forms, until the lock.

The clock is frozen on Monday 2026-11-30 08:00 UTC and the one evaluator is free Mon-Fri
09:00-12:00 in Paris. A booking on Wednesday 2 December 09:00 Paris (08:00 UTC) locks 24 h
earlier, on Tuesday 1 December 08:00 UTC; a slot starting exactly 24 h from now is already
inside the lock window.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from tests.conftest import Org
from tests.scheduler.test_pages import NNBSP, Page, get_page, seeded

DEC_2 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)  # Wednesday 09:00 in Paris
DEC_3 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)  # Thursday 10:00 in Paris
LOCK = DEC_2 - timedelta(hours=24)

WORDS = {
    "en": {
        "change": "Change the time",
        "cancel": "Cancel the interview",
        "until": f"You can change or cancel until Tuesday, December 1, 2026 at 9:00{NNBSP}AM.",
        "locked": "Locked",
        "closed": "Changes closed on Tuesday, December 1, 2026 at 9:00",
        "refused": "Changes are closed",
        "unchanged": "Nothing has been changed.",
        "force": "In case of force majeure",
    },
    "fr": {
        "change": "Changer de créneau",
        "cancel": "Annuler l’entretien",
        "until": "Vous pouvez le modifier ou l’annuler jusqu’au mardi 1 décembre 2026 à 09:00.",
        "locked": "Verrouillé",
        "closed": "Les modifications sont closes depuis le mardi 1 décembre 2026 à 09:00",
        "refused": "Les modifications sont closes",
        "unchanged": "Rien n’a été modifié.",
        "force": "En cas de force majeure",
    },
}


def z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def booked(make_org: Any, start: datetime = DEC_2, **candidate: Any) -> tuple[Org, str, str]:
    """An organisation, one evaluator, a candidate booked at `start`: (org, page path, id)."""
    org, _, path = await seeded(make_org, **candidate)
    resp = await org.client.post(f"{path}/booking", json={"start": z(start)})
    assert resp.status == 201, await resp.text()
    return org, path, (await resp.json())["id"]


async def post(client: TestClient, url: str, fields: dict[str, str], status: int = 303) -> Any:
    resp = await client.post(url, data=fields, allow_redirects=False)
    assert resp.status == status, (resp.status, (await resp.text())[:2000])
    return resp


def slot_to(page: Page, start: datetime) -> str:
    (link,) = [s for s in page.by_class("slot") if URL(s.href).query["start"] == z(start)]
    return link.href


async def change_form(client: TestClient, booked_page: Page, words: dict[str, str], to: datetime):
    calendar = await get_page(client, booked_page.link_named(words["change"]).href)
    return (await get_page(client, slot_to(calendar, to))).post_form()


async def cancel_form(client: TestClient, booked_page: Page, words: dict[str, str]):
    return (await get_page(client, booked_page.link_named(words["cancel"]).href)).post_form()


# --- changing ---------------------------------------------------------------------------------


async def test_change_with_plain_links_and_forms(client, make_org) -> None:
    org, path, booking_id = await booked(make_org, locale="en")
    page = await get_page(client, path)
    assert WORDS["en"]["until"] in page.text
    assert "Confirmed" in page.text and "Locked" not in page.text

    calendar = await get_page(client, page.link_named("Change the time").href)
    assert "Change the time of your interview" in calendar.text
    assert f"Your interview is booked for Wednesday, December 2, 2026 at 9:00{NNBSP}AM" in (
        calendar.text
    )
    # The current time is shown in its day, but is not a slot to choose.
    assert "current time" in calendar.text
    assert 'class="slot slot--current"' in calendar.source
    starts = [URL(s.href).query["start"] for s in calendar.by_class("slot")]
    assert z(DEC_2) not in starts
    # Its own buffer does not hide the neighbouring time it could move to.
    assert z(DEC_2 + timedelta(minutes=20)) in starts
    assert all(URL(s.href).query["change"] == "1" for s in calendar.by_class("slot"))
    assert URL(calendar.link_named("Next week").href).query["change"] == "1"
    (zone_form,) = [f for f in calendar.forms if "tz" in f.selects]
    assert zone_form.fields["change"] == "1"
    assert URL(calendar.link_named("Keep the current time").href).path == path

    confirm = await get_page(client, slot_to(calendar, DEC_3))
    assert "Confirm the new time" in confirm.text
    assert f"Current time Wednesday, December 2, 2026 at 9:00{NNBSP}AM" in confirm.text
    assert f"New time Thursday, December 3, 2026 at 10:00{NNBSP}AM" in confirm.text
    assert "You will not be able to change it" not in confirm.text
    form = confirm.post_form()
    assert form.action == f"{path}/reschedule"
    assert form.fields["start"] == z(DEC_3)

    resp = await post(client, form.action, form.fields)
    location = URL(resp.headers["Location"])
    assert location.path == path and location.query["changed"] == "1"
    after = await get_page(client, str(location))
    assert "Your interview has been moved to the new time." in after.text
    assert f"Thursday, December 3, 2026 at 10:00{NNBSP}AM" in after.text
    assert f"Wednesday, December 2, 2026 at 9:00{NNBSP}AM" not in after.text
    # The deadline for changes follows the new time.
    assert f"until Wednesday, December 2, 2026 at 10:00{NNBSP}AM." in after.text
    assert after.link_named("Change the time")  # still outside the lock: changeable again

    api = await org.ok("GET", f"/bookings/{booking_id}")
    assert api["sequence"] == 1
    assert api["start"] == z(DEC_3) and api["status"] == "confirmed"


async def test_a_time_taken_while_changing_keeps_the_booking(client, make_org) -> None:
    org, path, booking_id = await booked(make_org, locale="fr")
    form = await change_form(client, await get_page(client, path), WORDS["fr"], DEC_3)
    other = await org.make_candidate(locale="fr")
    taken = await client.post(
        f"/c/{other['link'].rsplit('/', 1)[1]}/booking", json={"start": z(DEC_3)}
    )
    assert taken.status == 201

    resp = await post(client, form.action, form.fields, status=409)
    assert resp.content_type == "text/html"
    page = Page(await resp.text())
    assert page.html_lang == "fr"
    assert "Ce créneau n’est plus disponible" in page.text
    assert "Votre réservation est inchangée." in page.text
    assert "Votre entretien a toujours lieu le mercredi 2 décembre 2026 à 09:00." in page.text
    again = URL(page.link_named("Choisir un autre créneau").href)
    assert again.path == path and again.query["change"] == "1"
    assert again.query["week"] == "2026-12-03"
    assert URL(page.link_named("Garder le créneau actuel").href).path == path
    assert "contact@cci.example" in page.text

    api = await org.ok("GET", f"/bookings/{booking_id}")
    assert api["sequence"] == 0 and api["start"] == z(DEC_2)
    # The same page, opened again, says the time went before the form is even shown.
    confirm_url = str(URL(path + "/confirm").with_query(start=z(DEC_3), change="1", lang="fr"))
    await get_page(client, confirm_url, status=409)


# --- cancelling -------------------------------------------------------------------------------


async def test_cancel_through_the_confirm_step_then_book_again(client, make_org) -> None:
    org, path, booking_id = await booked(make_org, locale="fr")
    page = await get_page(client, path)
    assert WORDS["fr"]["until"] in page.text

    confirm = await get_page(client, page.link_named("Annuler l’entretien").href)
    assert "Annuler votre entretien" in confirm.text
    assert "mercredi 2 décembre 2026 à 09:00" in confirm.text
    assert "Vous pourrez ensuite réserver un autre créneau depuis cette page." in confirm.text
    assert URL(confirm.link_named("Garder mon entretien").href).path == path
    form = confirm.post_form()
    assert form.action == f"{path}/cancel"
    # Opening the confirm step cancels nothing.
    assert (await org.ok("GET", f"/bookings/{booking_id}"))["status"] == "confirmed"

    resp = await post(client, form.action, form.fields)
    location = URL(resp.headers["Location"])
    assert location.path == path and location.query["cancelled"] == "1"
    calendar = await get_page(client, str(location))
    assert "Votre entretien a été annulé." in calendar.text
    assert "Réservez votre entretien oral" in calendar.text
    assert z(DEC_2) in [URL(s.href).query["start"] for s in calendar.by_class("slot")]
    assert (await org.ok("GET", f"/bookings/{booking_id}"))["status"] == "cancelled"

    # The calendar books again, as the first time.
    book = (await get_page(client, slot_to(calendar, DEC_3))).post_form()
    assert book.action == f"{path}/book"
    await post(client, book.action, book.fields)
    assert "jeudi 3 décembre 2026 à 10:00" in (await get_page(client, path)).text


async def test_without_a_booking_the_change_urls_lead_to_the_page(client, make_org) -> None:
    _, _, path = await seeded(make_org, locale="en")
    for method, url, data in (
        ("POST", f"{path}/reschedule", {"start": z(DEC_3)}),
        ("POST", f"{path}/cancel", {}),
        ("GET", f"{path}/cancel", None),
        ("GET", f"{path}/reschedule", None),
    ):
        resp = await client.request(method, url, data=data, allow_redirects=False)
        assert resp.status == 303, (method, url, resp.status)
        assert URL(resp.headers["Location"]).path == path
    # Change mode without a booking is the ordinary calendar and confirm step.
    calendar = await get_page(client, f"{path}?change=1")
    assert "Book your oral interview" in calendar.text
    confirm = await get_page(client, slot_to(calendar, DEC_3))
    assert confirm.post_form().action == f"{path}/book"


async def test_malformed_reschedule_is_a_readable_400(client, make_org) -> None:
    org, path, booking_id = await booked(make_org, locale="en")
    for data in ({"start": "2026-12-03T09:00:00"}, {}, {"start": "x" * 500}):
        resp = await post(client, f"{path}/reschedule", data, status=400)
        assert "This request could not be understood" in Page(await resp.text()).text
    # Moving to the time it already has changes nothing, and sends no update.
    resp = await post(client, f"{path}/reschedule", {"start": z(DEC_2)})
    assert URL(resp.headers["Location"]).path == path
    assert (await org.ok("GET", f"/bookings/{booking_id}"))["sequence"] == 0


# --- the lock -----------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["change", "cancel"])
async def test_one_second_before_the_lock_both_still_work(client, make_org, clock, action) -> None:
    org, path, booking_id = await booked(make_org, locale="en")
    clock.set(LOCK - timedelta(seconds=1))
    page = await get_page(client, path)
    assert page.link_named("Change the time") and page.link_named("Cancel the interview")
    assert WORDS["en"]["until"] in page.text
    if action == "change":
        form = await change_form(client, page, WORDS["en"], DEC_3)
    else:
        form = await cancel_form(client, page, WORDS["en"])
    await post(client, form.action, form.fields)
    api = await org.ok("GET", f"/bookings/{booking_id}")
    if action == "change":
        assert api["start"] == z(DEC_3) and api["sequence"] == 1
    else:
        assert api["status"] == "cancelled"


@pytest.mark.parametrize("locale", ["en", "fr"])
async def test_at_the_lock_the_page_explains_and_refuses(client, make_org, clock, locale) -> None:
    words = WORDS[locale]
    org, path, booking_id = await booked(make_org, locale=locale)
    # Forms taken while changes were open, posted once they are closed.
    page = await get_page(client, path)
    reschedule = await change_form(client, page, words, DEC_3)
    cancel = await cancel_form(client, page, words)
    before = await org.ok("GET", f"/bookings/{booking_id}")

    clock.set(LOCK)
    page = await get_page(client, path)
    assert words["change"] not in [link.name for link in page.links]
    assert words["cancel"] not in [link.name for link in page.links]
    assert not [link for link in page.links if "/cancel" in link.href or "change=" in link.href]
    assert words["locked"] in page.text and words["closed"] in page.text
    assert words["force"] in page.text
    assert "CCI Formation" in page.text
    assert page.link_named("contact@cci.example").href == "mailto:contact@cci.example"
    assert page.link_named("+33 1 23 45 67 89").href == "tel:+33123456789"
    # Change mode is no longer offered, even by URL: the page stays the booked page.
    assert not (await get_page(client, f"{path}?change=1")).by_class("slot")

    for form in (reschedule, cancel):
        resp = await post(client, form.action, form.fields, status=403)
        assert resp.content_type == "text/html"
        assert resp.headers["Cache-Control"] == "no-store"
        refused = Page(await resp.text())
        assert refused.html_lang == locale
        assert words["refused"] in refused.text and words["closed"] in refused.text
        assert words["unchanged"] in refused.text and words["force"] in refused.text
        assert "contact@cci.example" in refused.text and "+33 1 23 45 67 89" in refused.text
    # The pages leading to those forms refuse too.
    await get_page(client, f"{path}/cancel", status=403)
    await get_page(client, f"{path}/confirm?change=1&start={z(DEC_3)}", status=403)

    after = await org.ok("GET", f"/bookings/{booking_id}")
    assert after["start"] == before["start"] == z(DEC_2)
    assert after["sequence"] == before["sequence"] == 0
    assert after["status"] in ("confirmed", "locked")


# --- the confirm step's lock warning ------------------------------------------------------------


async def test_booking_inside_the_lock_window_is_warned_and_then_locked(client, make_org) -> None:
    org, cand, path = await seeded(make_org, locale="fr")
    calendar = await get_page(client, path)
    inside = await get_page(client, slot_to(calendar, LOCK))  # exactly 24 h from now
    assert "Vous ne pourrez plus le modifier." in inside.text
    assert "une fois confirmé, vous ne pourrez plus le modifier ni l’annuler en ligne" in (
        inside.text
    )
    outside = await get_page(client, slot_to(calendar, DEC_2))
    assert "Vous ne pourrez plus le modifier" not in outside.text

    form = inside.post_form()
    await post(client, form.action, form.fields)
    page = await get_page(client, path)
    assert "Verrouillé" in page.text and "Confirmé, ne peut plus être modifié en ligne" in page.text
    assert "Changer de créneau" not in page.text
    api = await org.ok("GET", f"/candidates/{cand['id']}")
    assert api["booking"]["status"] == "locked"


async def test_moving_into_the_lock_window_is_warned(client, make_org) -> None:
    org, path, booking_id = await booked(make_org, start=DEC_3, locale="en")
    calendar = await get_page(client, (await get_page(client, path)).link_named("Change").href)
    confirm = await get_page(client, slot_to(calendar, LOCK))
    assert "You will not be able to change it." in confirm.text
    assert "Current time Thursday, December 3" in confirm.text
    form = confirm.post_form()
    await post(client, form.action, form.fields)
    page = await get_page(client, path)
    assert "Locked" in page.text
    assert not [link for link in page.links if "/cancel" in link.href]
    api = await org.ok("GET", f"/bookings/{booking_id}")
    assert api["status"] == "locked" and api["start"] == z(LOCK)


async def test_change_pages_keep_the_page_hygiene(client, make_org) -> None:
    _, path, _ = await booked(make_org, locale="en")
    for url in (f"{path}?change=1", f"{path}/cancel", f"{path}/confirm?change=1&start={z(DEC_3)}"):
        resp = await client.get(url)
        assert resp.status == 200, url
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert "form-action 'self'" in resp.headers["Content-Security-Policy"]
        page = Page(await resp.text())
        assert " style=" not in page.source and "<style" not in page.source
        assert all(s.get("src") for s in page.scripts)
        assert page.link_named("Skip to main content").href == "#main"
