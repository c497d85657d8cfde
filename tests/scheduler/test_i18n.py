"""Every sentence a template speaks has a French translation, and the catalogs load as one.

Generic over the template areas (templates/pages, templates/mail, ...): the messages are
extracted the way `pybabel extract` would (jinja2's babel extractor, trimmed, i18n extension),
and an area must be fully translated as soon as it has its catalog
(templates/locale/fr/LC_MESSAGES/<area>.po). An area still without one is listed, not failed,
so a new area can land its templates before its translations.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from scheduler.i18n import TEMPLATES, Catalogs

FR = TEMPLATES / "locale" / "fr" / "LC_MESSAGES"
_OPTIONS = {"trimmed": "true", "extensions": "jinja2.ext.i18n"}
METHOD_MAP = [("**.html", "jinja2.ext.babel_extract"), ("**.txt", "jinja2.ext.babel_extract")]
OPTIONS_MAP = {"**.html": _OPTIONS, "**.txt": _OPTIONS}
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")

MsgId = str | tuple[str, ...]


def extract(folder: Path) -> dict[MsgId, list[str]]:
    """msgid (a tuple for plurals) -> the files using it."""
    found: dict[MsgId, list[str]] = {}
    for filename, _line, message, _comments, _context in extract_from_dir(
        str(folder), method_map=METHOD_MAP, options_map=OPTIONS_MAP
    ):
        found.setdefault(message, []).append(filename)
    return found


def template_areas() -> list[str]:
    """Folders under templates/ whose templates use gettext."""
    return sorted(
        p.name
        for p in TEMPLATES.iterdir()
        if p.is_dir() and p.name not in ("locale", "static") and extract(p)
    )


def translated_areas() -> list[str]:
    return [area for area in template_areas() if (FR / f"{area}.po").exists()]


def merged_french() -> Catalog:
    """Every fr .po in one catalog, as Catalogs.load() merges them at start-up."""
    merged = Catalog(locale="fr")
    for po in sorted(FR.glob("*.po")):
        with po.open("rb") as fh:
            for message in read_po(fh, locale="fr"):
                if message.id:
                    merged[message.id] = message
    return merged


def declared_plurals(po: Path) -> int:
    """The plural count a catalog declares in its own header, which gettext obeys at run time.

    Not Babel's locale data: CLDR's count for French changed in Babel 2.19 (one/many/other),
    and a test must not turn red on a data release while the catalogs are unchanged.
    """
    found = re.search(r"nplurals=(\d+);", po.read_text(encoding="utf-8"))
    assert found, f"{po.name} declares no Plural-Forms"
    return int(found.group(1))


def _strings(value: str | tuple[str, ...] | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _lookup_key(msgid: MsgId) -> str:
    return msgid if isinstance(msgid, str) else msgid[0]


def test_the_candidate_pages_are_an_area_with_a_catalog() -> None:
    assert "pages" in template_areas()
    assert "pages" in translated_areas()
    # Not vacuous: the pages speak dozens of sentences, singular and plural.
    found = extract(TEMPLATES / "pages")
    assert len(found) > 50
    assert any(isinstance(msgid, tuple) for msgid in found)


def _area_messages() -> Iterator[tuple[str, MsgId]]:
    for area in translated_areas():
        for msgid in extract(TEMPLATES / area):
            yield area, msgid


@pytest.mark.parametrize("area", translated_areas())
def test_every_message_has_a_french_translation(area: str) -> None:
    catalog = merged_french()
    plurals = {declared_plurals(po) for po in FR.glob("*.po")}
    assert len(plurals) == 1, f"the French catalogs disagree on the plural count: {plurals}"
    (nplurals,) = plurals
    missing: list[str] = []
    fuzzy: list[str] = []
    for msgid, files in extract(TEMPLATES / area).items():
        message = catalog.get(_lookup_key(msgid))
        strings = _strings(message.string) if message is not None else []
        if not strings or not all(s.strip() for s in strings):
            missing.append(f"{_lookup_key(msgid)!r} ({', '.join(sorted(set(files)))})")
        elif message is not None and message.fuzzy:
            fuzzy.append(repr(_lookup_key(msgid)))  # dropped when the catalog is compiled
        if isinstance(msgid, tuple) and message is not None:
            assert message.pluralizable, f"{msgid[0]!r} is plural in the templates only"
            assert len(strings) == nplurals, msgid
    assert missing == [], f"untranslated in templates/{area}"
    assert fuzzy == []


@pytest.mark.parametrize("area", translated_areas())
def test_translations_keep_the_placeholders(area: str) -> None:
    """A renamed or dropped %(name)s would fail at render time, only in French."""
    catalog = merged_french()
    for msgid in extract(TEMPLATES / area):
        message = catalog.get(_lookup_key(msgid))
        if message is None:
            continue
        wanted = {p for source in _strings(msgid) for p in PLACEHOLDER.findall(source)}
        for translation in _strings(message.string):
            assert set(PLACEHOLDER.findall(translation)) <= wanted, (msgid, translation)
            # Singular French may drop the count ("une minute"); any other name must stay.
            assert wanted - {"count", "num"} <= set(PLACEHOLDER.findall(translation)), (
                msgid,
                translation,
            )


def test_pages_catalog_holds_only_what_the_pages_use() -> None:
    """pages.py keeps no sentences, so a msgid no template uses is a leftover."""
    with (FR / "pages.po").open("rb") as fh:
        ids = {
            message.id if isinstance(message.id, str) else message.id[0] for message in read_po(fh)
        }
    used = {_lookup_key(msgid) for msgid in extract(TEMPLATES / "pages")}
    assert ids - {""} == used


@pytest.mark.parametrize("po", sorted(FR.glob("*.po")), ids=lambda p: p.name)
def test_each_catalog_has_a_french_utf8_header(po: Path) -> None:
    text = po.read_text(encoding="utf-8")
    assert '"Language: fr\\n"' in text
    assert re.search(r'"Content-Type: text/plain; charset=utf-8\\n"', text, re.I)
    assert '"Plural-Forms: nplurals=2; plural=(n > 1);\\n"' in text
    with po.open("rb") as fh:
        catalog = read_po(fh)
    assert str(catalog.locale) == "fr" and not catalog.fuzzy


def test_the_app_loads_every_catalog_merged() -> None:
    """What the pages render with: each catalog's translations, through Catalogs.load()."""
    french = Catalogs.load().get("fr")
    catalog = merged_french()
    checked = 0
    for area, msgid in _area_messages():
        message = catalog.get(_lookup_key(msgid))
        assert message is not None, (area, msgid)
        if isinstance(msgid, tuple):
            assert french.ngettext(msgid[0], msgid[1], 1) == message.string[0]
            assert french.ngettext(msgid[0], msgid[1], 5) == message.string[1]
        else:
            assert french.gettext(msgid) == message.string
        checked += 1
    assert checked > 50
    assert french.gettext("Book your oral interview") == "Réservez votre entretien oral"
