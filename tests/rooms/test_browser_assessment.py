"""The evaluator's assessment form in Chromium: filled, saved as typed, submitted after the
confirmation, then read-only; and gone, with the reason, after a no-show. Same set-up as
test_browser.py (whose fixtures these are), same skip rules.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from scheduler import keys
from scheduler.room_wiring import interview_ended
from tests.rooms import test_browser
from tests.rooms.test_browser import INSIDE, Make, Served, book, room_path

browser = test_browser.browser
browser_settings = test_browser.browser_settings
served = test_browser.served
tabs = test_browser.tabs

pytestmark = pytest.mark.browser

LEVELS = {
    "range": "B2",
    "accuracy": "B1",
    "fluency": "B2",
    "interaction": "C1",
    "coherence": "B2",
}


async def _assessment(served: Served, booking: dict[str, Any]) -> Any:
    return await served.org.ok("GET", f"/bookings/{booking['id']}/assessment")


async def test_the_evaluator_fills_and_submits_the_assessment(served: Served, tabs: Make) -> None:
    booking = await book(served)
    served.clock.set(INSIDE)
    evaluator = await tabs("evaluator", served.url(room_path(booking["rooms"]["evaluator"])))
    page = evaluator.page
    await page.click("#join")
    await evaluator.until(
        "() => document.getElementById('assessment').dataset.state === 'edit'", "the form"
    )
    # One select per criterion of the scheme, labelled in the page's language.
    assert await page.locator("select[data-criterion]").count() == len(LEVELS)
    assert "Accuracy" in await page.inner_text("#assessment-criteria")

    for criterion, level in list(LEVELS.items())[:2]:
        await page.select_option(f"select[data-criterion='{criterion}']", level)
    await page.fill("#assessment-comment", "Précise ; quelques hésitations.")
    await evaluator.until(
        "() => document.getElementById('assessment-status').textContent.includes('Saved')",
        "saved as typed",
    )
    saved = await _assessment(served, booking)
    assert saved["state"] == "draft"
    assert saved["assessment"]["levels"] == {"range": "B2", "accuracy": "B1"}

    # Incomplete: the page says what is missing and submits nothing.
    await page.click("#assessment-submit")
    await evaluator.until(
        "() => !document.getElementById('assessment-error').hidden", "what is missing"
    )
    assert "Fluency" in await page.inner_text("#assessment-error")
    assert not await page.locator("#assessment-dialog").evaluate("d => d.open")

    for criterion, level in list(LEVELS.items())[2:]:
        await page.select_option(f"select[data-criterion='{criterion}']", level)
    await page.select_option("#assessment-overall", "B2")
    await page.click("#assessment-submit")
    await page.click("#assessment-confirm")
    await evaluator.until(
        "() => document.getElementById('assessment').dataset.state === 'submitted'", "submitted"
    )
    assert "Submitted at" in await page.inner_text("#assessment-submitted")
    assert await page.locator("select[data-criterion='range']").is_disabled()
    assert await page.locator("#assessment-submit").is_hidden()
    done = await _assessment(served, booking)
    assert done["state"] == "submitted"
    assert done["assessment"]["levels"] == LEVELS
    assert done["assessment"]["overall_level"] == "B2"
    assert done["assessment"]["comment"] == "Précise ; quelques hésitations."

    # A reload (which rejoins by itself) shows it read-only, as submitted.
    await page.reload()
    await evaluator.until(
        "() => document.getElementById('assessment').dataset.state === 'submitted'",
        "still submitted after a reload",
    )
    assert await page.locator("#assessment-overall").input_value() == "B2"


async def test_a_reload_answering_late_keeps_the_level_chosen_meanwhile(
    served: Served, tabs: Make
) -> None:
    """The form reloads when the panel shows the interview's outcome; its answer, read by the
    server before the evaluator's next choice was saved, used to redraw the form without it."""
    booking = await book(served)
    served.clock.set(INSIDE)
    evaluator = await tabs("evaluator", served.url(room_path(booking["rooms"]["evaluator"])))
    page = evaluator.page
    await page.click("#join")
    await evaluator.until(
        "() => document.getElementById('assessment').dataset.state === 'edit'", "the form"
    )

    held = asyncio.Event()
    release = asyncio.Event()

    async def hold_the_reload(route: Any) -> None:
        if route.request.method != "GET":
            await route.continue_()
            return
        answer = await route.fetch()  # what the server holds now: no level yet
        held.set()
        await release.wait()
        await route.fulfill(response=answer)

    await page.route("**/assessment", hold_the_reload)
    # The hook the form reloads on: the panel showing an outcome.
    await page.evaluate(
        "() => { const o = document.getElementById('panel-outcome');"
        " o.textContent = 'Ended'; o.hidden = false; }"
    )
    await asyncio.wait_for(held.wait(), 10)
    await page.select_option("select[data-criterion='range']", "B2")
    await evaluator.until(
        "() => document.getElementById('assessment-status').textContent.includes('Saved')",
        "the choice is saved",
    )
    async with page.expect_response(
        lambda r: r.request.method == "PUT" and r.url.endswith("/assessment"), timeout=10_000
    ) as saved:
        release.set()  # the stale answer arrives: the choice stays, and is saved again
    assert (await saved.value).status == 200
    assert await page.input_value("select[data-criterion='range']") == "B2"
    assert (await _assessment(served, booking))["assessment"]["levels"] == {"range": "B2"}


async def test_after_a_no_show_the_form_says_there_is_nothing_to_assess(
    served: Served, tabs: Make
) -> None:
    booking = await book(served)
    served.clock.set(INSIDE)
    async with served.app[keys.DB].write() as session:
        from uuid import UUID

        await interview_ended(session, UUID(booking["id"]), "no_show", served.clock.now())
    evaluator = await tabs(
        "evaluator", served.url(room_path(booking["rooms"]["evaluator"]) + "?lang=fr")
    )
    await evaluator.page.click("#join")
    await evaluator.until(
        "() => document.getElementById('assessment').dataset.state === 'none'", "no form"
    )
    assert "rien à évaluer" in await evaluator.page.inner_text("#assessment-none")
    assert await evaluator.page.locator("#assessment-form").is_hidden()
