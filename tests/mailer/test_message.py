"""MIME structure and header hygiene of built messages, read back with the stdlib parser."""

from __future__ import annotations

import random
import re
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import SMTP, default
from typing import Any

import pytest

from mailer.message import (
    MailContent,
    build_message,
    clean_line,
    clean_text,
    message_id_for,
    render_message,
    validate_address,
)

CALENDAR = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nMETHOD:REQUEST\r\n"
    b"BEGIN:VEVENT\r\nUID:x\r\nSUMMARY:Entretien \xc3\xa0 14h\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)
NOW = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


ARGUMENTS: dict[str, Any] = {
    "from_name": "CCI Paris",
    "from_address": "viva@viva.example.test",
    "to_name": "Zoë Martin",
    "to_address": "zoe@example.test",
    "subject": "Votre entretien oral du jeudi 3 décembre 2026 est confirmé",
    "text": "Bonjour Zoë,\nVotre entretien est confirmé.\n",
    "html": "<p>Bonjour Zoë,</p>",
    "calendar": CALENDAR,
    "method": "REQUEST",
    "message_id": "<3f2c@viva.example.test>",
    "date": NOW,
    "reply_to": "contact@cci.example.test",
}


def build(**changes: Any) -> EmailMessage:
    return build_message(**{**ARGUMENTS, **changes})


def reparse(message: EmailMessage) -> EmailMessage:
    parsed = BytesParser(policy=default).parsebytes(message.as_bytes())
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_invitation_message_has_the_imip_structure() -> None:
    message = reparse(build())

    assert message.get_content_type() == "multipart/mixed"
    alternative, attachment = message.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    plain, html, calendar = alternative.iter_parts()
    assert plain.get_content_type() == "text/plain"
    # On the wire every line ends with CRLF, as SMTP requires.
    assert plain.get_content() == "Bonjour Zoë,\r\nVotre entretien est confirmé.\r\n"
    assert html.get_content_type() == "text/html"
    assert "<p>Bonjour Zoë,</p>" in html.get_content()
    assert calendar.get_content_type() == "text/calendar"
    assert calendar.get_param("method") == "REQUEST"
    assert calendar.get_content_charset() == "utf-8"
    assert calendar.get_payload(decode=True) == CALENDAR
    assert attachment.get_content_type() == "application/ics"
    assert attachment.get_filename() == "invite.ics"
    assert attachment.get_param("name") == "invite.ics"
    assert attachment.get_content_disposition() == "attachment"
    assert attachment.get_payload(decode=True) == CALENDAR


def test_headers_are_complete_and_encoded() -> None:
    raw = build().as_bytes()
    message = BytesParser(policy=default).parsebytes(raw)

    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert header_block.isascii()  # non-ASCII names and subjects are RFC 2047 encoded
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # SMTP line ends
    assert message["From"].addresses[0].display_name == "CCI Paris"
    assert message["From"].addresses[0].addr_spec == "viva@viva.example.test"
    assert message["To"].addresses[0].display_name == "Zoë Martin"
    assert message["Reply-To"].addresses[0].addr_spec == "contact@cci.example.test"
    assert message["Subject"] == "Votre entretien oral du jeudi 3 décembre 2026 est confirmé"
    assert message["Message-ID"] == "<3f2c@viva.example.test>"
    assert message["Date"].datetime == NOW
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["MIME-Version"] == "1.0"


def test_without_calendar_it_is_a_plain_alternative() -> None:
    message = reparse(build(calendar=None, method=None))

    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]


@pytest.mark.parametrize(
    "to_name",
    [
        "Eve\r\nBcc: x@evil.test",
        "Eve\nBcc: x@evil.test",
        "Eve\rBcc: x@evil.test",
        "Eve\u2028Bcc: x@evil.test",
        "Eve\x85Bcc: x@evil.test",
    ],
)
def test_line_breaks_in_names_cannot_add_headers(to_name: str) -> None:
    raw = build(to_name=to_name, from_name=to_name, subject=f"Hi {to_name}").as_bytes()
    message = BytesParser(policy=default).parsebytes(raw)

    assert message.get_all("Bcc") is None
    assert len(message.get_all("To")) == 1
    assert len(message.get_all("From")) == 1
    assert len(message.get_all("Subject")) == 1
    assert message["To"].addresses[0].addr_spec == "zoe@example.test"
    assert message["To"].addresses[0].display_name == "Eve Bcc: x@evil.test"
    assert message["Subject"] == "Hi Eve Bcc: x@evil.test"
    assert not any(line.startswith(b"Bcc") for line in raw.split(b"\r\n"))


def test_invisible_and_control_characters_are_removed_from_headers() -> None:
    tricky = "Ad\u202emin\u200b \ufeffteam\x00\x1b[31m\u2066"
    message = reparse(build(to_name=tricky, subject=f"Update {tricky}"))

    assert message["To"].addresses[0].display_name == "Admin team[31m"
    assert message["Subject"] == "Update Admin team[31m"


def test_names_with_specials_are_quoted_not_split() -> None:
    message = reparse(build(to_name='Martin, Zoë "Z" <boss@evil.test>; x'))

    addresses = message["To"].addresses
    assert len(addresses) == 1
    assert addresses[0].addr_spec == "zoe@example.test"
    assert addresses[0].display_name == 'Martin, Zoë "Z" <boss@evil.test>; x'


@pytest.mark.parametrize(
    "address",
    [
        "",
        "zoe",
        "zoe@",
        "@example.test",
        "zoe@@example.test",
        "Zoë <zoe@example.test>",
        "<zoe@example.test>",
        "zoe@example.test, eve@evil.test",
        "zoe@example.test\r\nBcc: eve@evil.test",
        "zo e@example.test",
        "zoé@example.test",
        '"zoe"@example.test',
        "zoe..m@example.test",
        "zoe@exa_mple.test",
        "zoe@-example.test",
        "zoe@example.test.",
        "zoe@[127.0.0.1]",
    ],
)
def test_invalid_addresses_are_refused(address: str) -> None:
    with pytest.raises(ValueError, match="invalid e-mail address"):
        validate_address(address)
    with pytest.raises(ValueError):
        build(to_address=address)


def test_valid_addresses_are_normalised() -> None:
    assert validate_address("Zoe.Martin+viva@Example.TEST") == "Zoe.Martin+viva@example.test"
    assert validate_address("viva@localhost") == "viva@localhost"
    assert validate_address("zoe@exämple.fr") == "zoe@xn--exmple-cua.fr"


def test_message_id_is_deterministic_per_row() -> None:
    row = uuid.UUID("5b0d8a4e-0d55-4a57-9d8c-2d3c8f4c1a77")
    assert message_id_for(row, "viva.example.test") == (
        "<5b0d8a4e-0d55-4a57-9d8c-2d3c8f4c1a77@viva.example.test>"
    )
    assert message_id_for(row, "viva.example.test") == message_id_for(str(row), "viva.example.test")
    assert message_id_for(uuid.uuid4(), "x.test") != message_id_for(uuid.uuid4(), "x.test")
    with pytest.raises(ValueError):
        message_id_for("a b", "x.test")
    with pytest.raises(ValueError):
        message_id_for(row, "bad domain")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"date": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"method": None}, "go together"),
        ({"calendar": None}, "go together"),
        ({"method": "REQUEST\r\nX: y"}, "method"),
        ({"message_id": "no-brackets@x.test"}, "Message-ID"),
        ({"message_id": "<a@b>\r\nBcc: x@evil.test"}, "Message-ID"),
    ],
)
def test_malformed_arguments_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(**changes)
    with pytest.raises(ValueError, match=message):
        render_message(**{**ARGUMENTS, **changes})


def test_mail_content_builds_the_final_message() -> None:
    content = MailContent(
        kind="booking_confirmed",
        to_name="Zoë Martin",
        to_address="zoe@example.test",
        subject="Confirmed",
        text="Hello\n",
        html="<p>Hello</p>",
        calendar=CALENDAR,
        method="REQUEST",
        date=NOW,
        from_name="CCI Paris",
        reply_to="contact@cci.example.test",
    )
    message = reparse(
        content.to_email(message_id="<r1@viva.example.test>", from_address="viva@x.test")
    )
    assert message["Message-ID"] == "<r1@viva.example.test>"
    assert str(message["From"]) == "CCI Paris <viva@x.test>"
    assert str(message["Reply-To"]) == "contact@cci.example.test"
    assert message.get_content_type() == "multipart/mixed"


def test_clean_line_and_clean_text() -> None:
    assert clean_line("  a\r\n\tb \u00a0 c  ") == "a b c"
    assert clean_line("x" * 300, max_length=10) == "x" * 9 + "…"
    assert clean_line("e\u0301") == "é"  # NFC, so the same name compares equal
    assert clean_text("Line 1\r\nLine\u202e 2\r\n\r\n\r\n\r\nLine 3\x00") == (
        "Line 1\nLine 2\n\nLine 3"
    )


BOUNDARY = re.compile(rb'boundary="(={15}\d{19}==)"')


def test_boundaries_have_the_generators_form_and_differ() -> None:
    """Boundaries are chosen when the message is built, in the form the stdlib generator
    uses (the folding of Content-Type depends on its length), one of its own per multipart."""
    first, second = build().as_bytes(policy=SMTP), build().as_bytes(policy=SMTP)
    boundaries = BOUNDARY.findall(first) + BOUNDARY.findall(second)
    assert len(boundaries) == 4
    assert len(set(boundaries)) == 4
    for raw, found in ((first, boundaries[:2]), (second, boundaries[2:])):
        for boundary in found:
            # Opening lines of each part plus the closing line, and nowhere else.
            assert raw.count(b"\r\n--" + boundary) == raw.count(b"--" + boundary)
            assert raw.count(b"\r\n--" + boundary + b"--\r\n") == 1


def test_messages_built_in_turn_do_not_share_their_people() -> None:
    """The MIME headers common to every message are parsed once and shared; nothing that
    belongs to one message (names, subject, bodies) may leak into the next one."""
    zoe = build()
    zoe_before = zoe.as_bytes(policy=SMTP)
    other = build(
        to_name="Evan Brooks",
        to_address="evan@example.test",
        subject="Interview with Zoë Martin",
        text="Hello Evan\n",
        html="<p>Hello Evan</p>",
        message_id="<other@viva.example.test>",
    )
    assert zoe.as_bytes(policy=SMTP) == zoe_before
    parsed = BytesParser(policy=default).parsebytes(other.as_bytes(policy=SMTP))
    assert str(parsed["To"]) == "Evan Brooks <evan@example.test>"
    assert parsed["Subject"] == "Interview with Zoë Martin"
    plain = next(part for part in parsed.walk() if part.get_content_type() == "text/plain")
    assert plain.get_content() == "Hello Evan\r\n"
    assert b"Zo=C3=AB" not in other.as_bytes(policy=SMTP).split(b"\r\n\r\n", 1)[1]


def _random_arguments(rng: random.Random) -> dict[str, Any]:
    """Hostile names, subjects and bodies: non-ASCII, specials, encoded-word look-alikes,
    line breaks, lines long enough to fold; with or without a calendar."""
    alphabet = "abcdefgh  éçœßł^\\\"',;:.()<>@=?-–日本\n\r\t"

    def text(k: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(k)))

    calendar = None
    method = None
    if rng.random() < 0.8:
        calendar = bytes(rng.randrange(256) for _ in range(rng.randrange(3000)))
        method = rng.choice(["REQUEST", "CANCEL", "X-A-METHOD-LONG-ENOUGH-TO-FOLD"])
    return {
        "from_name": text(80),
        "from_address": "viva@localhost",
        "to_name": text(80),
        "to_address": rng.choice(["j@x.example", "a.long.local.part+tag@sub.domain.example"]),
        "subject": text(300),
        "text": text(3000) + "x" * rng.randrange(200),
        "html": text(3000),
        "calendar": calendar,
        "method": method,
        "message_id": f"<{uuid.UUID(int=rng.getrandbits(128))}@viva.example.test>",
        "date": NOW + timedelta(seconds=rng.randrange(10**8)),
        "reply_to": rng.choice([None, "contact@cci.example.test"]),
    }


def test_rendered_messages_are_the_built_ones_byte_for_byte() -> None:
    """The outbox stores `render_message`'s bytes (a fraction of the CPU); they must be
    exactly what the email package writes for `build_message`, with the same boundaries."""
    rng = random.Random(20261203)
    for n in range(120):
        arguments = ARGUMENTS if n == 0 else _random_arguments(rng)
        message = build_message(**arguments)
        boundaries = tuple(p.get_boundary() or "" for p in message.walk() if p.is_multipart())
        rendered = render_message(**arguments, boundaries=boundaries)
        assert rendered.raw == message.as_bytes(policy=SMTP), arguments
        assert rendered.subject == str(message["Subject"])
        assert rendered.recipient == message["To"].addresses[0].addr_spec
        assert rendered.message_id == message["Message-ID"]


def test_rendered_messages_choose_their_own_boundaries() -> None:
    """Without `boundaries` each multipart gets a fresh one of the generator's form."""
    first = render_message(**ARGUMENTS).raw
    second = render_message(**ARGUMENTS).raw
    boundaries = BOUNDARY.findall(first) + BOUNDARY.findall(second)
    assert len(boundaries) == 4
    assert len(set(boundaries)) == 4
    built = build().as_bytes(policy=SMTP)
    outer, inner = BOUNDARY.findall(built)
    for raw, found in ((first, boundaries[:2]), (second, boundaries[2:])):
        assert raw == built.replace(outer, found[0]).replace(inner, found[1])


def _clean_line_char_by_char(value: str) -> str:
    """clean_line's rule written out plainly, one character at a time, for comparison."""
    kept = []
    for char in unicodedata.normalize("NFC", value):
        if char in "\r\n\t\v\f\x85\u2028\u2029" or (
            unicodedata.category(char) not in {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}
            and char.isspace()
        ):
            kept.append(" ")
        elif unicodedata.category(char) not in {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}:
            kept.append(char)
    line = " ".join("".join(kept).split())
    return line if len(line) <= 200 else line[:199].rstrip() + "…"


def test_clean_line_is_the_character_rule_on_every_kind_of_text() -> None:
    """clean_line skips its per-character loop for printable text: on printable and
    unprintable text alike (accents composed or not, other scripts, controls, bidi and
    zero-width characters, odd spaces), the result must be the rule's."""
    rng = random.Random(5322)
    pools = [
        "Zoé Lefèvre-Ngô ",
        "e\u0301o\u0308 Ab",  # decomposed accents: NFC composes them
        "日本語 Ελληνικά العربية",
        "a b\tc\r\nd\x00\x1b",
        "x\u202e\u200b\ufeff\u00a0\u2003\u2028y",
        "x" * 30 + " ",
    ]
    for _ in range(3000):
        pool = rng.choice(pools) + rng.choice(pools)
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 260)))
        assert clean_line(text) == _clean_line_char_by_char(text), repr(text)
