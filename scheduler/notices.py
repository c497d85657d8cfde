"""The recording notice a participant consents to: the organisation's own text in the
reader's language, or Viva's (templates, translated), and its version, the SHA-256 of the
exact text shown.

A consent row names the version it was given to (rooms.models.RoomConsent). Only a consent
to one of the organisation's current versions (one per page language) counts, so a
participant who consented to an older text is asked again when the organisation changes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from scheduler.i18n import LOCALES, Catalogs

__all__ = ["NOTICE", "current_versions", "default_text", "notice_text", "version"]

# Viva's notice, as the room page shows it (templates/rooms/room.html), sentence by sentence.
NOTICE = (
    "This interview is recorded.",
    "The video and sound of both participants are recorded from the moment the candidate "
    "is let in.",
)


def default_text(catalogs: Catalogs, locale: str) -> str:
    catalog = catalogs.get(locale)
    return " ".join(catalog.gettext(sentence) for sentence in NOTICE)


def notice_text(own: Mapping[str, str] | None, catalogs: Catalogs, locale: str) -> tuple[str, bool]:
    """The text shown to a reader of `locale`, and whether it is the organisation's."""
    text = (own or {}).get(locale)
    return (text, True) if text else (default_text(catalogs, locale), False)


def version(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def current_versions(own: Mapping[str, str] | None, catalogs: Catalogs) -> frozenset[str]:
    """The versions a consent may name today: the text of each page language."""
    return frozenset(version(notice_text(own, catalogs, locale)[0]) for locale in LOCALES)
