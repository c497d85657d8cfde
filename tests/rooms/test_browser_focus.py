"""Where the keyboard's focus lands on the room page, in Chromium (issue 12 §4).

A keyboard or screen-reader user who loses focus is sent back to the top of the page and has
to find their place again. These tests drive the page by keyboard only (focus, Enter, Space)
and read `document.activeElement` after each step that used to drop it: starting the device
check, the connection test, letting the candidate in, and confirming the end. They also
check the toggle buttons' `aria-pressed` and that the connection test's result is announced
once, whole. Same set-up as test_browser.py (whose fixtures these are), same skip rules.
"""

from __future__ import annotations

import pytest

from tests.rooms import test_browser
from tests.rooms.test_browser import INSIDE, MEDIA_TIMEOUT_MS, Make, Served, Tab, book, room_path

# test_browser.py's fixtures, by name: Chromium, the app on a real port, the tabs.
browser = test_browser.browser
browser_settings = test_browser.browser_settings
served = test_browser.served
tabs = test_browser.tabs

pytestmark = pytest.mark.browser

FOCUSED = "() => document.activeElement && document.activeElement.id"


async def press(tab: Tab, selector: str, key: str = "Enter") -> None:
    """Focus an element and press a key on it, as a keyboard user would."""
    await tab.page.focus(selector)
    await tab.page.keyboard.press(key)


async def focused(tab: Tab) -> str:
    value: str = await tab.page.evaluate(FOCUSED)
    return value


async def test_the_device_checks_buttons_keep_the_focus_and_the_result_is_announced_once(
    served: Served, tabs: Make
) -> None:
    booking = await book(served)
    tab = await tabs("candidate", served.url(room_path(booking["rooms"]["candidate"])))
    page = tab.page
    # Before the test the results list is not a live region: the result is said once, whole.
    assert await page.get_attribute("#conn-results", "aria-live") is None

    await press(tab, "#devcheck-start")
    await tab.until(
        "() => document.getElementById('check-camera').dataset.result === 'ok'", "camera ok"
    )
    # Both devices run: the button has nothing left to do, but it keeps the focus until the
    # keyboard leaves it (aria-disabled, not disabled or hidden under the user's feet).
    assert await focused(tab) == "devcheck-start"
    assert await page.get_attribute("#devcheck-start", "aria-disabled") == "true"
    assert await page.is_visible("#devcheck-start")
    await page.keyboard.press("Enter")  # a click on an aria-disabled button does nothing
    assert await focused(tab) == "devcheck-start"
    await page.keyboard.press("Tab")
    await tab.until("() => document.getElementById('devcheck-start').hidden", "then it goes")

    await press(tab, "#conn-test")
    assert await page.get_attribute("#conn-test", "aria-disabled") == "true"
    assert await focused(tab) == "conn-test"
    await tab.until(
        "() => ['ok', 'warn', 'failed'].includes("
        "document.getElementById('check-connection').dataset.result)",
        "the connection test ends",
        MEDIA_TIMEOUT_MS,
    )
    assert await focused(tab) == "conn-test"
    assert await page.get_attribute("#conn-test", "aria-disabled") is None
    # One announcement through the atomic live region: the verdict and each line of it.
    announcer = page.locator("#announcer")
    assert await announcer.get_attribute("aria-atomic") == "true"
    await tab.until(
        "() => document.getElementById('announcer').textContent.startsWith('Connection: ')",
        "the result announced",
    )
    said = await announcer.inner_text()
    assert "working: your picture and sound reach the server and come back." in said
    assert "Your picture and sound reach the server: yes." in said
    assert "Picture and sound come back from the server: yes." in said


async def test_focus_follows_admission_and_the_end_and_toggles_say_they_are_pressed(
    served: Served, tabs: Make
) -> None:
    booking = await book(served)
    served.clock.set(INSIDE)
    evaluator = await tabs("evaluator", served.url(room_path(booking["rooms"]["evaluator"])))
    candidate = await tabs("candidate", served.url(room_path(booking["rooms"]["candidate"])))
    for tab in (evaluator, candidate):
        await press(tab, "#join")
        await tab.until("() => document.getElementById('call').dataset.phase === 'lobby'", "in")
        assert await tab.page.get_attribute("#call", "data-call") == "greeted"

    # Let in, by keyboard: the focus goes on to the ID check, the next thing to do.
    await evaluator.until("() => !document.getElementById('admit').disabled", "admit enabled")
    await press(evaluator, "#admit")
    await evaluator.until(f"() => ({FOCUSED})() === 'id-checked'", "focus on the ID check")
    await evaluator.page.keyboard.press("Space")
    await evaluator.until(
        "() => document.getElementById('id-checked-at').textContent !== ''", "ID checked"
    )

    # Mute and camera are toggle buttons that say whether they are pressed.
    for button in ("#mic-toggle", "#cam-toggle"):
        assert await candidate.page.get_attribute(button, "aria-pressed") == "false"
        await press(candidate, button)
        assert await candidate.page.get_attribute(button, "aria-pressed") == "true"
        await press(candidate, button)
        assert await candidate.page.get_attribute(button, "aria-pressed") == "false"
    assert await candidate.page.inner_text("#mic-toggle") == "Mute microphone"

    # End, by keyboard: the dialog opens on "Go back"; once confirmed, the focus goes to the
    # outcome, where the end button was.
    await press(evaluator, "#end")
    assert await focused(evaluator) == "end-cancel"
    await press(evaluator, "#end-confirm")
    await evaluator.until(f"() => ({FOCUSED})() === 'panel-outcome'", "focus on the outcome")
    assert await evaluator.page.inner_text("#panel-outcome") == "Outcome: Completed."
    assert not await evaluator.page.is_visible("#end")
    await candidate.until(
        "() => document.getElementById('call').dataset.phase === 'over'", "the candidate is out"
    )
    assert await candidate.page.get_attribute("#call", "data-call") == "over"
    # The call's state machine refused nothing on the way (it logs refusals as warnings).
    for tab in (evaluator, candidate):
        assert not [line for line in tab.log if "refused" in line], tab.log
