"""Languages: Babel catalogs for French and English, and the jinja2 environment.

Templates are written in English; French comes from the `.po` files under
templates/locale/fr/LC_MESSAGES/ (one file per area: pages.po, mail.po, rooms.po), read and
merged at start-up, so there is no compile step to forget. Rendering passes the reader's
`gettext`/`ngettext` in the template context: one shared environment serves every language.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from babel import Locale, negotiate_locale
from babel.dates import format_date, format_datetime, format_time, get_timezone_location
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

from mailer.compose import Translator, format_when, gettext_callables
from mailer.compose import zone_label as city_time
from scheduler import resources

# Through importlib.resources (scheduler.resources): a wheel installed anywhere finds them.
TEMPLATES = resources.templates()
LOCALES = ("fr", "en")
DEFAULT_LOCALE = "fr"


class Catalogs:
    def __init__(self, by_locale: Mapping[str, NullTranslations]) -> None:
        self._by_locale = dict(by_locale)

    @classmethod
    def load(cls, locale_dir: Path = TEMPLATES / "locale") -> Catalogs:
        by_locale: dict[str, NullTranslations] = {"en": NullTranslations()}
        for lang in LOCALES:
            folder = locale_dir / lang / "LC_MESSAGES"
            merged: Translations | None = None
            for po in sorted(folder.glob("*.po")):
                with po.open("rb") as fh:
                    catalog = read_po(fh, locale=lang)
                buf = io.BytesIO()
                write_mo(buf, catalog)
                buf.seek(0)
                part = Translations(buf)
                if merged is None:
                    merged = part
                else:
                    merged.merge(part)
            if merged is not None:
                by_locale[lang] = merged
        return cls(by_locale)

    def get(self, locale: str) -> NullTranslations:
        return self._by_locale.get(locale) or self._by_locale["en"]

    def context(self, locale: str) -> dict[str, Any]:
        """What a template needs to speak `locale`."""
        return {**gettext_callables(self.get(locale)), "locale": locale}


# A language range of RFC 9110 §12.5.4 without the wildcard: "fr", "en-GB", "zh-Hant-TW".
_LANGUAGE_RANGE = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")


def accepted_languages(accept_language: str) -> list[str]:
    """The header's language tags, most wanted first (ties keep the header's order).

    Babel matches tags to locales but does not read the header, so this reads it: an item
    whose tag or quality does not parse is ignored rather than guessed at, and q=0 means
    "not this one" (RFC 9110 §12.4.2), so that tag is left out.
    """
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept_language.split(",")):
        tag, *params = (piece.strip() for piece in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = -1.0
        if _LANGUAGE_RANGE.fullmatch(tag) and 0 < quality <= 1:
            ranked.append((-quality, position, tag))
    return [tag for _, _, tag in sorted(ranked)]


def negotiate(accept_language: str | None, default: str = DEFAULT_LOCALE) -> str:
    """The supported language the reader wants most, by their Accept-Language header.

    Babel's negotiation matches each wanted tag in turn, then its language alone, so a
    regional variant ("fr-CA", "en-GB") reads the language Viva has.
    """
    found = negotiate_locale(accepted_languages(accept_language or ""), LOCALES, sep="-")
    return found.lower() if found else default


# --- dates in the reader's language and zone ---------------------------------------------


def local(dt: datetime, tz: str) -> datetime:
    return dt.astimezone(ZoneInfo(tz))


def long_datetime(dt: datetime, tz: str, locale: str) -> str:
    """ "mardi 3 décembre 2026 à 14:00" / "Thursday, December 3, 2026 at 2:00 PM": worded as
    in the e-mails, by the one function that writes a moment in a sentence."""
    return format_when(dt, tz, locale)


def long_date(dt: datetime, tz: str, locale: str) -> str:
    return format_date(local(dt, tz), format="full", locale=locale)


def short_time(dt: datetime, tz: str, locale: str) -> str:
    return format_time(local(dt, tz), format="short", locale=locale)


def zone_name(tz: str, locale: str) -> str:
    """A zone as people say it ("heure : France", "Paris time"), falling back to its id."""
    if tz in ("UTC", "Etc/UTC"):
        return "UTC"  # CLDR calls it an "unknown region"; people call it UTC
    try:
        return get_timezone_location(ZoneInfo(tz), locale=locale)
    except (LookupError, ValueError):
        return tz


def utc_offset(tz: str, at: datetime) -> str:
    """The zone's offset at `at`, as people write it: "UTC+1", "UTC-4", "UTC+5:30"."""
    offset = at.astimezone(ZoneInfo(tz)).utcoffset()
    minutes = int(offset.total_seconds()) // 60 if offset is not None else 0
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{mins:02d}" if mins else "")


def zone_label(tz: str, locale: str, at: datetime, translations: Translator) -> str:
    """ "heure de Paris (UTC+1)", "Toronto time (UTC-5)": the city CLDR names the zone after
    (as in the e-mails) and its offset at `at`, which moves with daylight saving time.

    Not CLDR's location format ("heure : France", "Canada (Toronto)"), which reads badly in
    a sentence, nor the IANA id, which people do not read.
    """
    name = city_time(tz, locale, translations)
    if tz in ("UTC", "Etc/UTC"):
        return name
    return f"{name} ({utc_offset(tz, at)})"


def upfirst(text: str) -> str:
    """The first letter in capitals, the rest untouched (jinja's `capitalize` lowers it)."""
    return text[:1].upper() + text[1:]


def pattern_datetime(dt: datetime, tz: str, locale: str, pattern: str) -> str:
    return format_datetime(local(dt, tz), pattern, locale=locale)


def first_weekday(locale: str) -> int:
    """0 = Monday. France starts weeks on Monday; the en locale (US) on Sunday."""
    return Locale.parse(locale if locale != "en" else "en_US").first_week_day


def create_env(templates: Path = TEMPLATES) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=jinja2.select_autoescape(["html", "xml"], default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
        enable_async=False,
        # The templates ship with the code and change only with a restart; reloading would
        # stat every template file (and its layout) on each render, a mail's hottest path.
        auto_reload=False,
    )
    env.policies["ext.i18n.trimmed"] = True
    env.newstyle_gettext = True  # type: ignore[attr-defined]
    env.filters.update(
        long_datetime=long_datetime,
        long_date=long_date,
        short_time=short_time,
        zone_name=zone_name,
        upfirst=upfirst,
        pattern_datetime=pattern_datetime,
    )
    return env
