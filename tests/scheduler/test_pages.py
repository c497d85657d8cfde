"""The candidate's pages behind /c/{token}: calendar, confirm, book, errors, in fr and en.

The clock is frozen on Monday 2026-11-30 08:00 UTC; with 24 h notice the first slot is
Tuesday 1 December 09:00 in Paris (08:00 UTC). Pages are read the way a browser without
JavaScript would: follow the links, submit the forms.
"""

from __future__ import annotations

import html
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

from aiohttp.test_utils import TestClient
from yarl import URL

from scheduler import keys
from scheduler.models import Candidate
from tests.conftest import token_of

NNBSP = "\u202f"  # CLDR puts a narrow no-break space before AM/PM
FIRST_SLOT_UTC = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
_SPACES = re.compile(r"[ \t\n\r\f\v]+")  # not \s: that would swallow the NNBSP
_VOID = {"input", "br", "meta", "link", "img", "hr", "source", "wbr", "col", "area"}


def _squash(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


@dataclass
class Link:
    href: str
    classes: list[str]
    name: str = ""  # the text a screen reader announces (aria-hidden parts left out)


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    selects: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)


class Page(HTMLParser):
    """What the tests look at in a page: links, forms, day titles, table headers, text."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.source = source
        self.links: list[Link] = []
        self.forms: list[Form] = []
        self.day_titles: list[str] = []
        self.month_headers: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self.html_lang: str | None = None
        self._stack: list[tuple[str, bool]] = []
        self._link: Link | None = None
        self._title: list[str] | None = None
        self._th: list[str] | None = None
        self._select: str | None = None
        self.feed(source)
        text = re.sub(r"<script.*?</script>|<[^>]+>", " ", source, flags=re.S)
        self.text = _squash(html.unescape(text))

    def _hidden(self) -> bool:
        return any(hidden for _, hidden in self._stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag not in _VOID:
            self._stack.append((tag, a.get("aria-hidden") == "true"))
        classes = (a.get("class") or "").split()
        if tag == "html":
            self.html_lang = a.get("lang")
        elif tag == "script":
            self.scripts.append(a)
        elif tag == "a" and a.get("href"):
            self._link = Link(a["href"] or "", classes)
        elif tag == "h3" and "day__title" in classes:
            self._title = []
        elif tag == "th" and self._in("thead"):
            self._th = []
        elif tag == "form":
            self.forms.append(Form(a.get("action") or "", (a.get("method") or "get").lower()))
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1].fields[a["name"] or ""] = a.get("value") or ""
        elif tag == "select" and self.forms:
            self._select = a.get("name")
            self.forms[-1].selects[self._select or ""] = []
        elif tag == "option" and self._select is not None:
            self.forms[-1].selects[self._select].append((a.get("value") or "", "selected" in a))

    def _in(self, tag: str) -> bool:
        return any(t == tag for t, _ in self._stack)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._link is not None:
            self._link.name = _squash(self._link.name)
            self.links.append(self._link)
            self._link = None
        elif tag == "h3" and self._title is not None:
            self.day_titles.append(_squash("".join(self._title)))
            self._title = None
        elif tag == "th" and self._th is not None:
            self.month_headers.append("".join(self._th).strip())
            self._th = None
        elif tag == "select":
            self._select = None
        while self._stack:
            if self._stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._link is not None and not self._hidden():
            self._link.name += data
        if self._title is not None:
            self._title.append(data)
        if self._th is not None:
            self._th.append(data)

    def post_form(self) -> Form:
        (form,) = [f for f in self.forms if f.method == "post"]
        return form

    def by_class(self, cls: str) -> list[Link]:
        return [link for link in self.links if cls in link.classes]

    def link_named(self, text: str) -> Link:
        found = [link for link in self.links if text in link.name]
        assert found, f"no link named {text!r} in {[link.name for link in self.links]}"
        return found[0]


async def get_page(client: TestClient, url: str, status: int = 200, **kw: Any) -> Page:
    resp = await client.get(url, allow_redirects=False, **kw)
    body = await resp.text()
    assert resp.status == status, (resp.status, body[:2000])
    assert resp.content_type == "text/html"
    return Page(body)


async def seeded(make_org: Any, *, evaluators: int = 1, **candidate: Any) -> tuple[Any, dict, str]:
    """An organisation, evaluators free Mon-Fri 09:00-12:00 Paris, one candidate; its /c/ path."""
    org = await make_org()
    for _ in range(evaluators):
        await org.make_evaluator()
    cand = await org.make_candidate(**candidate)
    return org, cand, f"/c/{token_of(cand['link'])}"


# --- rendering in both languages -----------------------------------------------------------


async def test_french_calendar_starts_on_monday_and_speaks_french(client, make_org) -> None:
    _, _, path = await seeded(make_org, locale="fr")
    page = await get_page(client, path)
    assert page.html_lang == "fr"
    assert "Réservez votre entretien oral" in page.text
    assert page.day_titles == [
        "lundi 30 novembre 2026",
        "mardi 1 décembre 2026",
        "mercredi 2 décembre 2026",
        "jeudi 3 décembre 2026",
        "vendredi 4 décembre 2026",
        "samedi 5 décembre 2026",
        "dimanche 6 décembre 2026",
    ]
    slots = page.by_class("slot")
    # 09:00 to 11:40 every 20 minutes, Tuesday to Friday (Monday is inside the 24 h notice).
    assert len(slots) == 4 * 9
    assert slots[0].name == "Choisir le mardi 1 décembre 2026 à 09:00"
    assert ">09:00<" in page.source
    assert page.month_headers[0] == "lun." and page.month_headers[-1] == "dim."
    assert "décembre 2026" in page.text  # the month overview holds most of the week


async def test_english_calendar_starts_on_sunday(client, make_org) -> None:
    _, _, path = await seeded(make_org, locale="en")
    page = await get_page(client, path)
    assert page.html_lang == "en"
    assert "Book your oral interview" in page.text
    # This week began yesterday (Sunday): a past day is not listed as "no slot", the view
    # starts at today so the first green slot stays near the top of a phone's screen.
    assert page.day_titles[0] == "Monday, November 30, 2026"
    assert "Sunday, November 29, 2026" not in page.text
    assert page.day_titles[1] == "Tuesday, December 1, 2026"
    assert page.day_titles[-1] == "Saturday, December 5, 2026"
    assert "Week: Nov 30\u2009–\u2009Dec 5, 2026" in page.text
    assert page.month_headers[0] == "Sun"
    assert page.by_class("slot")[0].name == f"Choose Tuesday, December 1, 2026 at 9:00{NNBSP}AM"
    # Weeks still start on Sunday.
    following = await get_page(client, page.link_named("Next week").href)
    assert following.day_titles[0] == "Sunday, December 6, 2026"
    assert len(following.day_titles) == 7


async def test_names_are_escaped_exactly_once(client, make_org) -> None:
    """Values interpolated into translated sentences are escaped, and only once."""
    _, _, path = await seeded(make_org, locale="fr", name="Zoé <b>O'Brien</b> & Co")
    page = await get_page(client, path)
    assert "Bonjour Zoé &lt;b&gt;O&#39;Brien&lt;/b&gt; &amp; Co." in page.source
    assert "Bonjour Zoé <b>O'Brien</b> & Co." in page.text


async def test_lang_parameter_overrides_the_candidate_locale_and_stays_in_links(
    client, make_org
) -> None:
    _, _, path = await seeded(make_org, locale="fr")
    page = await get_page(client, path + "?lang=en")
    assert page.html_lang == "en"
    assert page.day_titles[0] == "Monday, November 30, 2026"  # today; Sunday has passed
    assert all("lang=en" in link.href for link in page.by_class("slot"))
    assert "lang=en" in page.link_named("Next week").href
    switch = page.link_named("Français")
    assert URL(switch.href).query["lang"] == "fr"
    assert (await get_page(client, switch.href)).html_lang == "fr"


async def test_month_overview_counts_slots_and_links_to_weeks(client, make_org) -> None:
    _, _, path = await seeded(make_org, locale="fr")
    page = await get_page(client, path)
    day = page.link_named("mardi 1 décembre 2026, 9 créneaux disponibles")
    assert URL(day.href).query["week"] == "2026-12-01"
    # Weekends have no slot: shown, but not a link.
    assert "samedi 5 décembre 2026, aucun créneau disponible" in page.text
    assert not [link for link in page.links if link.name.startswith("samedi 5 décembre")]
    nxt = await get_page(client, page.link_named("Mois suivant").href)
    assert "janvier 2027" in nxt.text
    assert nxt.day_titles[0] == "lundi 28 décembre 2026"


# --- the two-step booking, without JavaScript ------------------------------------------------


async def test_booking_with_plain_links_and_forms(client, make_org) -> None:
    org, cand, path = await seeded(make_org, locale="fr")
    calendar = await get_page(client, path)
    slot = calendar.by_class("slot")[0]
    assert slot.name == "Choisir le mardi 1 décembre 2026 à 09:00"

    confirm = await get_page(client, slot.href)
    assert "mardi 1 décembre 2026 à 09:00" in confirm.text
    assert "Heure de Paris (UTC+1)" in confirm.text and "20 minutes" in confirm.text
    assert "Choisir un autre créneau" in confirm.text
    form = confirm.post_form()
    assert form.action == f"{path}/book"
    assert form.fields["start"] == "2026-12-01T08:00:00Z"

    resp = await client.post(form.action, data=form.fields, allow_redirects=False)
    assert resp.status == 303
    location = resp.headers["Location"]
    assert URL(location).path == path and URL(location).query["booked"] == "1"

    booked = await get_page(client, location)
    assert "Votre entretien est réservé." in booked.text
    assert "mardi 1 décembre 2026 à 09:00" in booked.text
    assert "Confirmé" in booked.text and "20 minutes" in booked.text
    assert booked.link_named("Votre lien personnel vers l’entretien").href.startswith(
        "http://viva.test/r/"
    )
    assert "contact@cci.example" in booked.text
    assert not booked.by_class("slot")

    api = await org.ok("GET", f"/candidates/{cand['id']}")
    assert datetime.fromisoformat(api["booking"]["start"]) == FIRST_SLOT_UTC
    # The first slot starts exactly 24 h (min notice) ahead: already inside the change lock.
    assert api["booking"]["status"] == "locked"


async def test_booking_page_in_english_shows_time_in_the_chosen_zone(client, make_org) -> None:
    _, _, path = await seeded(make_org, locale="en")
    ny = await get_page(client, path + "?tz=America/New_York")
    confirm = await get_page(client, ny.by_class("slot")[0].href)
    assert f"Tuesday, December 1, 2026 at 3:00{NNBSP}AM" in confirm.text
    form = confirm.post_form()
    assert form.fields["tz"] == "America/New_York"
    resp = await client.post(form.action, data=form.fields, allow_redirects=False)
    assert resp.status == 303
    assert URL(resp.headers["Location"]).query["tz"] == "America/New_York"
    booked = await get_page(client, resp.headers["Location"])
    assert "Your interview is booked." in booked.text
    assert f"Tuesday, December 1, 2026 at 3:00{NNBSP}AM" in booked.text
    assert "New York time (UTC-5)" in booked.text


async def test_a_taken_slot_is_a_readable_409(client, make_org) -> None:
    org, _, path = await seeded(make_org, locale="en")
    other = await org.make_candidate(locale="en")
    calendar = await get_page(client, path)
    slot = calendar.by_class("slot")[0]
    confirm = await get_page(client, slot.href)
    form = confirm.post_form()

    # Someone else takes the only evaluator's 09:00 between our two steps.
    resp = await client.post(
        f"/c/{token_of(other['link'])}/booking", json={"start": "2026-12-01T08:00:00Z"}
    )
    assert resp.status == 201

    again = await get_page(client, slot.href, status=409)
    assert "This time is no longer available" in again.text
    resp = await client.post(form.action, data=form.fields, allow_redirects=False)
    body = await resp.text()
    assert resp.status == 409 and resp.content_type == "text/html"
    taken = Page(body)
    assert "This time is no longer available" in taken.text
    assert "Your interview is not booked" in taken.text
    back = taken.link_named("Back to the calendar")
    assert URL(back.href).query["week"] == "2026-12-01"
    fresh = await get_page(client, back.href)
    assert f"Choose Tuesday, December 1, 2026 at 9:00{NNBSP}AM" not in [
        s.name for s in fresh.by_class("slot")
    ]
    assert f"Choose Tuesday, December 1, 2026 at 9:40{NNBSP}AM" in [
        s.name for s in fresh.by_class("slot")
    ]


async def test_a_second_booking_is_refused_and_confirm_goes_to_the_booking(
    client, make_org
) -> None:
    _, _, path = await seeded(make_org, evaluators=2, locale="fr")
    slots = (await get_page(client, path)).by_class("slot")
    first = (await get_page(client, slots[0].href)).post_form()
    second = (await get_page(client, slots[5].href)).post_form()
    assert (await client.post(first.action, data=first.fields, allow_redirects=False)).status == 303

    resp = await client.post(second.action, data=second.fields, allow_redirects=False)
    page = Page(await resp.text())
    assert resp.status == 409
    assert "Vous avez déjà un entretien réservé" in page.text
    assert URL(page.link_named("Voir votre entretien").href).path == path

    resp = await client.get(slots[5].href, allow_redirects=False)
    assert resp.status == 303 and URL(resp.headers["Location"]).path == path


async def test_malformed_input_is_a_readable_400(client, make_org) -> None:
    _, _, path = await seeded(make_org, locale="en")
    page = await get_page(client, f"{path}/confirm?start=tomorrow", status=400)
    assert "This request could not be understood" in page.text
    assert URL(page.link_named("Back to the calendar").href).path == path
    for data in ({"start": "2026-12-01T09:00:00"}, {}, {"start": "x" * 500}):
        resp = await client.post(f"{path}/book", data=data, allow_redirects=False)
        assert resp.status == 400 and resp.content_type == "text/html"
        assert "This request could not be understood" in Page(await resp.text()).text
    resp = await client.post(f"{path}/book", json={"start": "2026-12-01T08:00:00Z"})
    assert resp.status == 400 and resp.content_type == "text/html"
    # A form target opened as a page sends the reader to their calendar.
    resp = await client.get(f"{path}/book", allow_redirects=False)
    assert resp.status == 303 and URL(resp.headers["Location"]).path == path


# --- what people see when they cannot book -----------------------------------------------------


async def test_unknown_or_revoked_link_is_a_plain_404(client, make_org) -> None:
    _, cand, path = await seeded(make_org, locale="en")
    garbage = await get_page(
        client, "/c/not-a-real-token", status=404, headers={"Accept-Language": "fr-FR,fr;q=0.9"}
    )
    assert garbage.html_lang == "fr"
    assert "Ce lien n’est pas valide" in garbage.text
    english = await get_page(
        client, "/c/not-a-real-token", status=404, headers={"Accept-Language": "en-GB"}
    )
    assert "This link is not valid" in english.text

    async with client.app[keys.DB].write() as session:
        row = await session.get(Candidate, uuid.UUID(cand["id"]))
        assert row is not None
        row.link_nonce = "rotated"
    headers = {"Accept-Language": "en"}
    revoked = await get_page(client, path, status=404, headers=headers)
    # Revoked and never-valid links are indistinguishable, and name nobody.
    assert revoked.text.replace(path, "") == english.text.replace("/c/not-a-real-token", "")
    for secret in ("Camille", "CCI", "cci.example", "token", "candidate", "Traceback"):
        assert secret not in revoked.text
    await get_page(client, f"{path}/confirm?start=2026-12-01T08:00:00Z", status=404)
    resp = await client.post(
        f"{path}/book", data={"start": "2026-12-01T08:00:00Z"}, headers=headers
    )
    assert resp.status == 404 and "This link is not valid" in Page(await resp.text()).text
    await get_page(client, f"{path}/no-such-page", status=404)


async def test_past_the_deadline_the_page_says_so_with_the_contact(client, make_org) -> None:
    _, _, path = await seeded(make_org, locale="en", book_by="2026-11-30")
    page = await get_page(client, path)
    assert "The booking period has ended" in page.text
    assert "had to be over by the end of Monday, November 30, 2026" in page.text
    assert "CCI Formation" in page.text
    assert page.link_named("contact@cci.example").href == "mailto:contact@cci.example"
    assert not page.by_class("slot")
    resp = await client.post(f"{path}/book", data={"start": "2026-12-01T08:00:00Z"})
    assert resp.status == 409
    assert "The booking period has ended" in Page(await resp.text()).text


async def test_without_any_slot_the_page_shows_the_contact(client, make_org) -> None:
    _, _, path = await seeded(make_org, evaluators=0, locale="fr")
    page = await get_page(client, path)
    assert "Aucun créneau n’est disponible pour le moment" in page.text
    assert "Contactez votre organisme de formation" in page.text
    assert page.link_named("contact@cci.example").href == "mailto:contact@cci.example"
    assert page.link_named("+33 1 23 45 67 89").href == "tel:+33123456789"
    assert not page.day_titles


# --- time zones and navigation -------------------------------------------------------------


async def test_tz_parameter_changes_the_displayed_times(client, make_org) -> None:
    _, _, path = await seeded(make_org, locale="en")
    paris = await get_page(client, path)
    ny = await get_page(client, path + "?tz=America/New_York")
    assert paris.by_class("slot")[0].name == f"Choose Tuesday, December 1, 2026 at 9:00{NNBSP}AM"
    assert ny.by_class("slot")[0].name == f"Choose Tuesday, December 1, 2026 at 3:00{NNBSP}AM"
    # The city people know and the offset of the week shown, not CLDR's "France Time".
    assert "Times shown in Paris time (UTC+1)." in paris.text
    assert "Times shown in New York time (UTC-5)." in ny.text
    zone_form = next(f for f in ny.forms if "tz" in f.selects)
    assert dict(zone_form.selects["tz"])["America/New_York"] is True
    assert "New York time (UTC-5)</option>" in ny.source
    assert "Paris time (UTC+1)</option>" in ny.source
    assert all("tz=America/New_York" in s.href for s in ny.by_class("slot"))
    # The same instants, only shown differently.
    assert [URL(s.href).query["start"] for s in ny.by_class("slot")] == [
        URL(s.href).query["start"] for s in paris.by_class("slot")
    ]


async def test_unknown_tz_is_ignored_with_a_notice(client, make_org) -> None:
    _, _, path = await seeded(make_org, locale="en")
    page = await get_page(client, path + "?tz=Mars/Olympus")
    assert "The time zone “Mars/Olympus” is not recognised" in page.text
    assert page.by_class("slot")[0].name == f"Choose Tuesday, December 1, 2026 at 9:00{NNBSP}AM"
    assert not any("Mars" in s.href for s in page.by_class("slot"))


async def test_zone_menu_works_without_javascript(client, make_org) -> None:
    _, _, path = await seeded(make_org, locale="en", timezone="Asia/Kathmandu")
    page = await get_page(client, path + "?week=2026-12-06")
    (form,) = [f for f in page.forms if "tz" in f.selects]
    assert form.method == "get" and form.action == path
    options = dict(form.selects["tz"])
    assert options["Asia/Kathmandu"] is True  # the current zone, though not a common one
    assert "Europe/Paris" in options and "America/New_York" in options
    assert form.fields["week"] == "2026-12-06"
    query = {**form.fields, "tz": "America/New_York"}
    moved = await get_page(client, str(URL(form.action).with_query(query)))
    assert moved.day_titles[0] == "Sunday, December 6, 2026"
    assert moved.by_class("slot")[0].name == f"Choose Monday, December 7, 2026 at 3:00{NNBSP}AM"
    # JavaScript only offers the browser's zone when the URL chose none.
    assert "data-tz-offer" in page.source and "data-tz-offer" not in moved.source


async def test_previous_and_next_week(client, make_org) -> None:
    _, _, path = await seeded(make_org, locale="en")
    page = await get_page(client, path)
    assert "Previous week" not in page.text  # nothing before today's week
    nxt = await get_page(client, page.link_named("Next week").href)
    assert nxt.day_titles[0] == "Sunday, December 6, 2026"
    assert nxt.by_class("slot")[0].name == f"Choose Monday, December 7, 2026 at 9:00{NNBSP}AM"
    back = await get_page(client, nxt.link_named("Previous week").href)
    assert back.day_titles == page.day_titles
    # The horizon is 60 days: nothing starts at or after Jan 29, 2027 08:00 UTC.
    last = await get_page(client, path + "?week=2027-01-27")
    assert last.day_titles[0] == "Sunday, January 24, 2027"
    assert "Next week" not in last.text and "Previous week" in last.text
    beyond = await get_page(client, path + "?week=2027-03-01")
    assert not beyond.by_class("slot")
    nearest = beyond.link_named("See the nearest available time")
    assert f"Thursday, January 28, 2027 at 11:40{NNBSP}AM" in nearest.name
    # A malformed week falls back to today's.
    assert (await get_page(client, path + "?week=soon")).day_titles == page.day_titles


# --- page hygiene ------------------------------------------------------------------------------


async def test_pages_are_private_and_need_no_inline_script(client, make_org) -> None:
    _, _, path = await seeded(make_org, locale="fr")
    resp = await client.get(path)
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    page = Page(await resp.text())
    assert page.scripts and all(s.get("src") for s in page.scripts)
    assert " style=" not in page.source and "<style" not in page.source
    assert 'name="viewport"' in page.source
    assert page.link_named("Aller au contenu principal").href == "#main"
    for asset, kind in (("viva.css", "text/css"), ("viva.js", "javascript")):
        match = re.search(rf'"(/static/{asset}[^"]*)"', page.source)
        assert match, asset
        static = await client.get(html.unescape(match.group(1)))
        assert static.status == 200 and kind in static.content_type


async def test_json_endpoints_beside_the_pages_keep_problem_json(client) -> None:
    resp = await client.get("/c/not-a-real-token/slots")
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"


async def test_api_reference_lists_operations_and_schemas(client) -> None:
    page = await get_page(client, "/api/v1/docs")
    assert page.html_lang == "en"
    assert "Viva organisation API" in page.text
    assert "POST /api/v1/candidates" in page.text
    assert "Invite a candidate (returns their personal link)" in page.text
    assert page.link_named("CandidateIn").href == "#schema-CandidateIn"
    section = page.source.split('id="schema-CandidateIn"', 1)[1].split("</section>", 1)[0]
    rows = {
        name: (kind, required)
        for name, kind, required in re.findall(
            r'<th scope="row"><code>(\w+)</code></th>\s*<td>(.*?)</td>\s*<td>(yes|no)</td>',
            section,
            re.S,
        )
    }
    assert {n for n, (_, req) in rows.items() if req == "yes"} == {"name", "email", "language"}
    assert "<code>string</code>" in rows["email"][0] and "(email)" in rows["email"][0]
    assert "<code>fr</code>" in rows["locale"][0]  # an enum lists its values
    assert "<code>null</code>" in rows["book_by"][0]  # anyOf shows every branch
    assert "Europe/Paris" in section  # a default value
    slots_op = page.source.split('id="op-org_slots"', 1)[1].split("</section>", 1)[0]
    assert "<code>from</code>" in slots_op and "(date)" in slots_op
