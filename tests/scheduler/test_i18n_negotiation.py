"""The reader's language from Accept-Language, and a moment written in it (scheduler.i18n).

Both come from Babel: its negotiation picks the language, CLDR's patterns word the date.
The header itself is what browsers, proxies and crawlers send, so junk must fall back to
the default language rather than fail the page.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailer.compose import format_when
from scheduler.i18n import DEFAULT_LOCALE, accepted_languages, long_datetime, negotiate

THURSDAY_TWO_PM_PARIS = datetime(2026, 12, 3, 13, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "locale"),
    [
        ("en", "en"),
        ("fr", "fr"),
        ("EN", "en"),
        # Region variants read the language Viva has.
        ("en-GB", "en"),
        ("en-US,en;q=0.9", "en"),
        ("fr-CA", "fr"),
        ("fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7", "fr"),
        # Quality values rank the tags, whatever their order in the header.
        ("fr;q=0.4, en;q=0.8", "en"),
        ("en;q=0.5, fr", "fr"),
        ("de-DE, de;q=0.9, en;q=0.8, fr;q=0.7", "en"),
        ("de, fr-CA;q=0.3, en-GB;q=0.2", "fr"),
        # Equal qualities keep the header's order.
        ("en;q=0.7, fr;q=0.7", "en"),
        # q=0 refuses a language.
        ("en;q=0, fr;q=0.1", "fr"),
        ("fr;q=0, en", "en"),
    ],
)
def test_the_language_the_reader_wants_most_among_ours(header: str, locale: str) -> None:
    assert negotiate(header) == locale


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "*",
        "de, es;q=0.9",
        "en;q=0",
        "en;q=abc",
        "en;q=nan",
        "en;q=2",
        ";;;,,,",
        "en_US",  # not a language tag (an underscore)
        "🇬🇧",
        "en GB",
        "x" * 4000,
    ],
)
def test_no_language_of_ours_or_junk_gets_the_default(header: str | None) -> None:
    assert negotiate(header) == DEFAULT_LOCALE
    assert negotiate(header, default="en") == "en"


def test_junk_items_are_skipped_and_the_rest_still_counts() -> None:
    assert accepted_languages("en;q=abc, *;q=0.5, fr-CA;q=0.2, ,de") == ["de", "fr-CA"]
    assert negotiate("en;q=abc, *;q=0.5, fr;q=0.2") == "fr"
    assert negotiate("en;level=1;q=0.3, zz") == "en"  # other parameters are ignored


@pytest.mark.parametrize(
    ("tz", "locale", "text"),
    [
        ("Europe/Paris", "fr", "jeudi 3 décembre 2026 à 14:00"),
        ("Europe/Paris", "en", "Thursday, December 3, 2026 at 2:00\u202fPM"),
        ("Europe/London", "en_GB", "Thursday, 3 December 2026 at 13:00"),
        ("America/Toronto", "fr_CA", "jeudi 3 décembre 2026 à 08 h 00"),
        ("America/New_York", "en", "Thursday, December 3, 2026 at 8:00\u202fAM"),
    ],
)
def test_a_moment_in_a_sentence_joins_the_full_date_and_the_time_as_cldr_says(
    tz: str, locale: str, text: str
) -> None:
    assert long_datetime(THURSDAY_TWO_PM_PARIS, tz, locale) == text
    # The pages and the e-mails word a moment the same way.
    assert format_when(THURSDAY_TWO_PM_PARIS, tz, locale) == text


def test_a_locale_without_cldr_s_at_pattern_gets_its_standard_one() -> None:
    # Spanish has no "relative" date-time pattern in CLDR: the standard comma joins them.
    assert long_datetime(THURSDAY_TWO_PM_PARIS, "Europe/Madrid", "es") == (
        "jueves, 3 de diciembre de 2026, 14:00"
    )
