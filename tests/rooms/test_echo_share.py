"""The connection test's cap is a share per organisation (issue 9 §7): one organisation's
busy day never answers `busy` to another organisation's candidates."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from rooms.signaling import CloseCode
from scheduler import keys
from tests.rooms.room_support import Tab, book_interview
from tests.support.polling import eventually


async def start_test(client: TestClient, token: str) -> Tab:
    return Tab(await client.ws_connect(f"/r/{token}/echo"))


async def test_only_the_organisation_over_its_share_is_told_busy(
    client: TestClient, make_org: Any
) -> None:
    first = await make_org("First Org", "first@org.example")
    second = await make_org("Second Org", "second@org.example")
    busy_day = [await book_interview(first), await book_interview(first)]
    other = await book_interview(second)
    client.app[keys.ROOMS].echoes.max_per_organisation = 1

    running = await start_test(client, busy_day[0].candidate_token)
    assert (await running.next())["mode"] == "echo"
    await running.expect("offer")

    refused = await start_test(client, busy_day[1].candidate_token)
    error, code = await refused.refused()
    assert (error["code"], code) == ("busy", CloseCode.TRY_AGAIN_LATER)

    # The other organisation's share is untouched.
    theirs = await start_test(client, other.candidate_token)
    hello = await theirs.next()
    assert (hello["type"], hello["mode"]) == ("hello", "echo")
    await theirs.expect("offer")

    # Once the first organisation's test ends (the server lets it go right after the close
    # frame, so poll, bounded), its next one runs.
    await running.send(type="leave")
    assert await running.closed() == CloseCode.NORMAL

    async def admitted() -> tuple[Tab, dict[str, Any]] | None:
        tab = await start_test(client, busy_day[1].evaluator_token)
        hello = await tab.next()
        if hello["type"] == "hello":
            return tab, hello
        assert hello["code"] == "busy"
        await tab.closed()
        return None

    again, hello = await eventually(admitted, "the first organisation's next test to run")
    assert hello["mode"] == "echo"
    for tab in (again, theirs):
        await tab.send(type="leave")
        assert await tab.closed() == CloseCode.NORMAL
