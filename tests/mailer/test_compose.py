"""The booking e-mails in French and English, in the reader's zone, with their invitations."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import jinja2
import pytest
import vobject
from babel.messages.extract import extract
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from jinja2.ext import babel_extract

from mailer.compose import (
    BookingMail,
    Organisation,
    Reader,
    booking_cancelled,
    booking_confirmed,
    booking_updated,
    format_when,
    zone_label,
)
from mailer.message import MailContent
from tests.mailer.mailer_support import MAIL_PO, ROOT

EN = NullTranslations()
NOW = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
BOOKING = uuid.UUID("6c4f1e0a-8d0b-4f43-a2a8-0d6b9d1f5e21")
START = datetime(2026, 12, 3, 13, 0, tzinfo=UTC)  # 14:00 in Paris, 08:00 in New York
ORG = Organisation("CCI Paris", "contact@cci.example.test", "+33 1 23 45 67 89")


def candidate_mail(**changes: Any) -> BookingMail:
    mail = BookingMail(
        booking_id=BOOKING,
        sequence=0,
        start=START,
        end=START + timedelta(minutes=20),
        exam_language="en",
        candidate_name="Zoë Martin",
        organisation=ORG,
        reader=Reader("Zoë Martin", "zoe@example.test", "Europe/Paris"),
        role="candidate",
        room_url="https://viva.example.test/r/cand-token",
        manage_url="https://viva.example.test/b/manage-token",
        manage_until=START - timedelta(hours=24),
    )
    return dataclasses.replace(mail, **changes)


def evaluator_mail(**changes: Any) -> BookingMail:
    mail = candidate_mail(
        reader=Reader("Evan Brooks", "evan@example.test", "America/New_York"),
        role="evaluator",
        room_url="https://viva.example.test/r/eval-token",
        manage_url=None,
        manage_until=None,
    )
    return dataclasses.replace(mail, **changes)


def flat(text: str) -> str:
    """Babel and the French catalog use no-break spaces ("2:00\u202fPM", "Annulé\u00a0:")."""
    return text.replace("\u202f", " ").replace("\u00a0", " ")


def event_of(content: MailContent) -> icalendar.Event:
    assert content.calendar is not None
    (event,) = icalendar.Calendar.from_ical(content.calendar).walk("VEVENT")
    return event


def test_candidate_confirmation_in_french(mail_env: jinja2.Environment, fr: Translations) -> None:
    content = booking_confirmed(mail_env, fr, "fr", candidate_mail(), now=NOW)

    assert content.kind == "booking_confirmed"
    assert flat(content.subject) == (
        "Votre entretien oral du jeudi 3 décembre 2026 à 14:00 est confirmé"
    )
    for body in (flat(content.text), flat(content.html)):
        assert "Bonjour Zoë Martin," in body
        assert "jeudi 3 décembre 2026 à 14:00 (heure de Paris)" in body
        assert "20 minutes" in body
        assert "anglais" in body
        assert "https://viva.example.test/r/cand-token" in body
        assert "https://viva.example.test/b/manage-token" in body
        # The lock: 24 hours before, in the candidate's zone.
        assert "jusqu’au mercredi 2 décembre 2026 à 14:00" in body
        assert "pièce d’identité" in body
        assert "webcam" in body
        assert "micro" in body
        assert "endroit calme" in body
        assert "test du matériel" in body
        assert "un jour ou deux avant, puis de nouveau quelques minutes avant le début" in body
        assert "contact@cci.example.test" in body
        assert "+33 1 23 45 67 89" in body
    assert '<html lang="fr" dir="ltr">' in flat(content.html)
    assert content.method == "REQUEST"
    assert content.to_address == "zoe@example.test"
    assert content.reply_to == "contact@cci.example.test"
    assert content.from_name == "CCI Paris"


def test_candidate_confirmation_in_english(mail_env: jinja2.Environment) -> None:
    content = booking_confirmed(mail_env, EN, "en", candidate_mail(), now=NOW)

    assert flat(content.subject) == (
        "Your oral interview on Thursday, December 3, 2026 at 2:00 PM is confirmed"
    )
    for body in (flat(content.text), flat(content.html)):
        assert "Thursday, December 3, 2026 at 2:00 PM (Paris time)" in body
        assert "until Wednesday, December 2, 2026 at 2:00 PM" in body
        assert "Exam language:" in body and "English" in body
        assert "identity document" in body
        assert "device check" in body
        # The one advice, as the room page gives it (tests/rooms/test_room_page.py).
        assert "a day or two before, and again a few minutes before the start" in body
    assert '<html lang="en" dir="ltr">' in flat(content.html)


def test_the_candidate_is_told_when_the_organisation_records(
    mail_env: jinja2.Environment, fr: Translations
) -> None:
    recorded = dataclasses.replace(ORG, records=True)
    for translations, locale, sentence in (
        (EN, "en", "CCI Paris records its interviews"),
        (fr, "fr", "CCI Paris enregistre ses entretiens"),
    ):
        quiet = booking_confirmed(mail_env, translations, locale, candidate_mail(), now=NOW)
        told = booking_confirmed(
            mail_env, translations, locale, candidate_mail(organisation=recorded), now=NOW
        )
        for body in (flat(quiet.text), flat(quiet.html)):
            assert sentence not in body
        for body in (flat(told.text), flat(told.html)):
            assert sentence in body, locale


def test_evaluator_confirmation_uses_their_zone_language_and_link(
    mail_env: jinja2.Environment, fr: Translations
) -> None:
    content = booking_confirmed(mail_env, fr, "fr", evaluator_mail(), now=NOW)

    assert flat(content.subject) == "Entretien avec Zoë Martin le jeudi 3 décembre 2026 à 08:00"
    for body in (flat(content.text), flat(content.html)):
        assert "Zoë Martin" in body
        assert "anglais" in body
        assert "jeudi 3 décembre 2026 à 08:00 (heure de New York)" in body
        assert "https://viva.example.test/r/eval-token" in body
        assert "cand-token" not in body
        assert "manage-token" not in body
    event = event_of(content)
    assert str(event["ATTENDEE"]) == "mailto:evan@example.test"
    assert event["DTSTART"].params["TZID"] == "America/New_York"
    assert event["LOCATION"] == "https://viva.example.test/r/eval-token"
    assert event["SUMMARY"] == "Entretien oral : Zoë Martin (anglais)"


def test_confirmation_invitation_matches_the_mail(mail_env: jinja2.Environment) -> None:
    content = booking_confirmed(mail_env, EN, "en", candidate_mail(), now=NOW)
    assert content.calendar is not None

    event = event_of(content)
    assert icalendar.Calendar.from_ical(content.calendar)["METHOD"] == "REQUEST"
    assert event["UID"] == str(BOOKING)
    assert event["SEQUENCE"] == 0
    assert event.decoded("DTSTAMP") == NOW
    assert event.decoded("DTSTART").astimezone(UTC) == START
    assert str(event["ORGANIZER"]) == "mailto:contact@cci.example.test"
    assert event["SUMMARY"] == "Oral interview (English) – CCI Paris"
    description = flat(str(event["DESCRIPTION"]))
    assert "Thursday, December 3, 2026 at 2:00 PM (Paris time)" in description
    assert "https://viva.example.test/r/cand-token" in description
    assert "https://viva.example.test/b/manage-token" in description
    vevent = vobject.readOne(content.calendar.decode("utf-8")).vevent
    assert vevent.uid.value == str(BOOKING)
    assert vevent.attendee.value == "mailto:zoe@example.test"


def test_user_data_is_escaped_in_html_only(mail_env: jinja2.Environment) -> None:
    mail = candidate_mail(
        candidate_name="<script>alert(1)</script>",
        reader=Reader("<b>Zoë</b> & co", "zoe@example.test", "Europe/Paris"),
        organisation=Organisation("A&B <Org>", "contact@cci.example.test"),
        room_url='https://viva.example.test/r/x?a=1&b="2"',
    )
    content = booking_confirmed(mail_env, EN, "en", mail, now=NOW)

    assert "<b>Zoë</b>" not in flat(content.html)
    assert "Hello &lt;b&gt;Zoë&lt;/b&gt; &amp; co," in flat(content.html)
    assert "A&amp;B &lt;Org&gt;" in flat(content.html)
    assert 'href="https://viva.example.test/r/x?a=1&amp;b=&#34;2&#34;"' in flat(content.html)
    assert "<script>" not in flat(content.html)
    # Plain text is not HTML: it shows the name as typed.
    assert "Hello <b>Zoë</b> & co," in flat(content.text)


def test_names_cannot_break_lines_in_bodies(mail_env: jinja2.Environment) -> None:
    mail = candidate_mail(
        reader=Reader("Zoë\n\nClick https://evil.test", "zoe@example.test", "UTC")
    )
    content = booking_confirmed(mail_env, EN, "en", mail, now=NOW)
    assert "Hello Zoë Click https://evil.test," in flat(content.text)
    assert "(UTC)" in flat(content.text)


@pytest.mark.parametrize(
    ("day", "utc_hour"),
    [(23, 7), (26, 8)],  # Paris is UTC+2 before 25 October 2026, UTC+1 after
)
def test_daylight_saving_change_keeps_the_local_time(
    mail_env: jinja2.Environment, fr: Translations, day: int, utc_hour: int
) -> None:
    start = datetime(2026, 10, day, 9, 0, tzinfo=ZoneInfo("Europe/Paris")).astimezone(UTC)
    assert start.hour == utc_hour
    mail = candidate_mail(
        start=start, end=start + timedelta(minutes=20), manage_until=start - timedelta(hours=24)
    )
    content = booking_confirmed(mail_env, fr, "fr", mail, now=NOW)

    assert f"{day} octobre 2026 à 09:00 (heure de Paris)" in flat(content.text)
    event = event_of(content)
    assert event.decoded("DTSTART").replace(tzinfo=None) == datetime(2026, 10, day, 9, 0)
    assert event.decoded("DTSTART").astimezone(UTC) == datetime(
        2026, 10, day, utc_hour, 0, tzinfo=UTC
    )


def test_update_says_where_it_moved_with_the_reason(
    mail_env: jinja2.Environment, fr: Translations
) -> None:
    moved_to = START + timedelta(days=1)
    mail = candidate_mail(
        sequence=3,
        start=moved_to,
        end=moved_to + timedelta(minutes=20),
        manage_until=moved_to - timedelta(hours=24),
    )
    content = booking_updated(
        mail_env, fr, "fr", mail, now=NOW, previous_start=START, reason="Évaluateur <malade>."
    )

    assert content.kind == "booking_updated"
    assert flat(content.subject) == (
        "Déplacé : votre entretien oral a maintenant lieu le vendredi 4 décembre 2026 à 14:00"
    )
    assert "est déplacé au vendredi 4 décembre 2026 à 14:00 (heure de Paris)" in flat(content.text)
    assert "Il était prévu le jeudi 3 décembre 2026 à 14:00." in flat(content.text)
    assert "Évaluateur <malade>." in flat(content.text)
    assert "Évaluateur &lt;malade&gt;." in flat(content.html)
    assert content.method == "REQUEST"
    event = event_of(content)
    assert event["SEQUENCE"] == 3
    assert event["UID"] == str(BOOKING)
    assert event.decoded("DTSTART").astimezone(UTC) == moved_to


def test_update_in_english_for_the_evaluator(mail_env: jinja2.Environment) -> None:
    content = booking_updated(
        mail_env, EN, "en", evaluator_mail(sequence=1), now=NOW, previous_start=START
    )
    assert flat(content.subject) == (
        "Moved: interview with Zoë Martin is now on Thursday, December 3, 2026 at 8:00 AM"
    )
    assert "has moved to Thursday, December 3, 2026 at 8:00 AM (New York time)" in flat(
        content.text
    )
    assert "Reason given" not in flat(content.text)


def test_cancellation_sends_a_cancel(mail_env: jinja2.Environment, fr: Translations) -> None:
    content = booking_cancelled(
        mail_env, fr, "fr", candidate_mail(sequence=2), now=NOW, reason="Force majeure"
    )

    assert content.kind == "booking_cancelled"
    assert flat(content.subject) == "Annulé : votre entretien oral du jeudi 3 décembre 2026 à 14:00"
    assert "Votre entretien oral du jeudi 3 décembre 2026 à 14:00 (heure de Paris) est annulé." in (
        flat(content.text)
    )
    assert "Force majeure" in flat(content.text)
    assert "https://viva.example.test/b/manage-token" in flat(content.text)  # to book another slot
    assert content.method == "CANCEL"
    assert content.calendar is not None
    calendar = icalendar.Calendar.from_ical(content.calendar)
    assert calendar["METHOD"] == "CANCEL"
    event = event_of(content)
    assert event["STATUS"] == "CANCELLED"
    assert event["SEQUENCE"] == 2
    assert event["UID"] == str(BOOKING)


def test_format_when_and_zone_label() -> None:
    instant = datetime(2026, 12, 3, 13, 0, tzinfo=UTC)
    assert (
        flat(format_when(instant, "Europe/Paris", "en")) == "Thursday, December 3, 2026 at 2:00 PM"
    )
    assert flat(format_when(instant, "Europe/London", "en_GB")) == (
        "Thursday, 3 December 2026 at 13:00"
    )
    assert zone_label("America/Argentina/Buenos_Aires", "en", EN) == "Buenos Aires time"
    assert zone_label("Etc/UTC", "en", EN) == "UTC"


@pytest.mark.parametrize(
    ("mail", "message"),
    [
        (evaluator_mail(manage_url="https://x.test/m"), "evaluator"),
        (candidate_mail(manage_until=None), "go together"),
        (candidate_mail(manage_url=None), "manage_until without manage_url"),
        (candidate_mail(room_url="javascript:alert(1)"), "http"),
        (candidate_mail(start=datetime(2026, 12, 3, 13, 0)), "timezone-aware"),
        (candidate_mail(reader=Reader("Zoë", "zoe@example.test", "Mars/Olympus")), "time zone"),
        (candidate_mail(reader=Reader("Zoë", "zoe@x.test>, eve@evil.test", "UTC")), "address"),
    ],
)
def test_inconsistent_inputs_are_refused(
    mail_env: jinja2.Environment, mail: BookingMail, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        booking_confirmed(mail_env, EN, "en", mail, now=NOW)


def test_cancellation_needs_no_deadline(mail_env: jinja2.Environment) -> None:
    content = booking_cancelled(mail_env, EN, "en", candidate_mail(manage_until=None), now=NOW)
    assert "https://viva.example.test/b/manage-token" in content.text
    assert "until" not in content.text


def test_an_environment_without_newstyle_gettext_is_refused(
    mail_env: jinja2.Environment,
) -> None:
    mail_env.newstyle_gettext = False  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="newstyle"):
        booking_confirmed(mail_env, EN, "en", candidate_mail(), now=NOW)


def _extracted_msgids() -> set[str | tuple[str, str]]:
    ids: set[str | tuple[str, str]] = set()
    for path in sorted((ROOT / "templates" / "mail").glob("*.*")):
        with path.open("rb") as fh:
            for _line, message, _comments, _context in extract(babel_extract, fh):
                ids.add(message if isinstance(message, str) else (message[0], message[1]))
    with (ROOT / "mailer" / "compose.py").open("rb") as fh:
        for _line, message, _comments, _context in extract("python", fh):
            ids.add(message if isinstance(message, str) else (message[0], message[1]))
    return ids


def test_every_mail_string_has_a_french_translation() -> None:
    with Path(MAIL_PO).open("rb") as fh:
        catalog = read_po(fh, locale="fr")
    assert catalog.plural_forms == "nplurals=2; plural=(n > 1);"
    extracted = _extracted_msgids()
    translated: set[str | tuple[str, str]] = set()
    for message in catalog:
        if not message.id:
            continue
        assert not message.fuzzy, message.id
        assert message.string and all(message.string), message.id
        assert not list(message.check(catalog)), message.id  # placeholders match
        translated.add(message.id if isinstance(message.id, str) else tuple(message.id))
    assert extracted - translated == set()
    assert translated - extracted == set()  # no stale entries either
