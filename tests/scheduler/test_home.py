"""The site's root and its favicon: dev mode's launch pad, production's name and no secret."""

from __future__ import annotations

import re
from pathlib import Path

from scheduler.app import create_app
from scheduler.config import load_settings
from tests.conftest import app_environ, token_of


async def test_production_root_names_the_organisation_and_no_secret(client, make_org) -> None:
    org = await make_org(name="CCI Formation")
    await org.make_evaluator()
    cand = await org.make_candidate()
    resp = await client.get("/", headers={"Accept-Language": "fr"})
    assert resp.status == 200
    page = await resp.text()
    assert "Entretiens oraux de CCI Formation" in page
    # Nothing secret: no personal link, no token, no API key, no developer tool.
    token = token_of(cand["link"])
    assert token not in page and "/c/" not in page
    assert org.api_key not in page and "viva_" not in page
    assert "/dev/mail" not in page and "Mode développement" not in page
    assert resp.headers["Cache-Control"] == "no-store"


async def test_production_root_with_several_organisations_names_none(client, make_org) -> None:
    await make_org(name="CCI Formation")
    await make_org(name="Alliance Lyon")
    page = await (await client.get("/", headers={"Accept-Language": "en"})).text()
    assert "Oral certification interviews" in page
    assert "CCI Formation" not in page and "Alliance Lyon" not in page


async def test_dev_root_lists_the_demo_links_the_mailbox_and_the_api_reference(
    aiohttp_client, db_url: str, tmp_path: Path, clock
) -> None:
    from scheduler.demo import seed_demo

    settings = load_settings(environ=app_environ(db_url, tmp_path, VIVA_SERVER_DEV_MODE="true"))
    client = await aiohttp_client(create_app(settings, clock=clock))
    empty = await (await client.get("/", headers={"Accept-Language": "en"})).text()
    assert "No demo yet" in empty and 'href="/dev/mail"' in empty
    seeded = await seed_demo(settings)
    page = await (await client.get("/", headers={"Accept-Language": "en"})).text()
    for demo in seeded.candidates:
        assert f'href="{demo.url}"' in page
    assert "Léa Dubois</a> — exam in English, pages in French" in page
    assert 'href="/dev/mail"' in page and 'href="/api/v1/docs"' in page
    # And each link opens the candidate's page.
    first = re.search(r'href="http://viva\.test(/c/[^"]+)"', page)
    assert first is not None
    assert (await client.get(first.group(1))).status == 200


async def test_favicon_is_served_and_linked(client) -> None:
    resp = await client.get("/favicon.ico")
    assert resp.status == 200 and resp.content_type == "image/svg+xml"
    assert (await resp.text()).startswith("<svg")
    page = await (await client.get("/")).text()
    icon = re.search(r'<link rel="icon" href="([^"]+)"', page)
    assert icon is not None
    assert (await client.get(icon.group(1))).status == 200
