"""Time zones named the way people say them, with the offset of the date shown."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scheduler.i18n import Catalogs, upfirst, zone_label

WINTER = datetime(2026, 12, 1, 12, tzinfo=UTC)
SUMMER = datetime(2026, 7, 1, 12, tzinfo=UTC)
CATALOGS = Catalogs.load()


@pytest.mark.parametrize(
    ("tz", "locale", "at", "label"),
    [
        ("Europe/Paris", "fr", WINTER, "heure de Paris (UTC+1)"),
        ("Europe/Paris", "fr", SUMMER, "heure de Paris (UTC+2)"),
        ("Europe/Paris", "en", WINTER, "Paris time (UTC+1)"),
        ("Europe/Paris", "en", SUMMER, "Paris time (UTC+2)"),
        ("America/Toronto", "fr", WINTER, "heure de Toronto (UTC-5)"),
        ("America/Toronto", "en", SUMMER, "Toronto time (UTC-4)"),
        ("Europe/London", "fr", WINTER, "heure de Londres (UTC+0)"),
        ("Asia/Kolkata", "en", WINTER, "Kolkata time (UTC+5:30)"),
        ("UTC", "fr", WINTER, "UTC"),
    ],
)
def test_zone_label(tz: str, locale: str, at: datetime, label: str) -> None:
    assert zone_label(tz, locale, at, CATALOGS.get(locale)) == label


def test_upfirst_keeps_the_rest() -> None:
    assert upfirst("heure de Paris (UTC+1)") == "Heure de Paris (UTC+1)"
    assert upfirst("") == ""
