"""Building RFC 5322 / MIME messages, without sending them.

Every display name and subject here ultimately comes from people typing into forms, so it is
treated as hostile: reduced to one line of printable text before it reaches a header, and
encoded by `email.headerregistry` rather than by string concatenation. Addresses are checked
against a deliberately narrow grammar (ASCII dot-atom local part, host name domain) because
an address that needs quoting or SMTPUTF8 is far likelier to be a typo or an attack than a
real candidate, and a refusal at enqueue time is easier to act on than a bounce.
"""

from __future__ import annotations

import binascii
import random
import re
import sys
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime
from email import quoprimime
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import SMTP
from functools import lru_cache
from typing import Any

__all__ = [
    "MailContent",
    "build_message",
    "clean_line",
    "clean_text",
    "message_id_for",
    "render_message",
    "validate_address",
    "validate_domain",
]

# RFC 5322 atext, ASCII only; dots between atoms (dot-atom-text).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_PART = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
# An LDH host name label (RFC 1123); IDNs are accepted after conversion to A-labels.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")

# Unicode categories that have no business in a one-line header: controls, format characters
# (bidi overrides, zero-width joiners and spaces, BOM), line/paragraph separators,
# surrogates, private use, unassigned.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_MAX_LINE = 200


def clean_line(value: str, *, max_length: int = _MAX_LINE) -> str:
    """One line of visible text, safe for a header or a calendar parameter.

    Line breaks and tabs become spaces (a name typed over two lines is still one name);
    invisible and control characters are removed, because they can reorder what a reader
    sees (bidi overrides) or smuggle a header (CR/LF); runs of white space collapse. The
    length cap keeps a pasted essay from producing an unreadable subject.
    """
    normalized = value if value.isascii() else unicodedata.normalize("NFC", value)
    if normalized.isprintable():
        # No character of the categories "Other" or "Separator" but the ASCII space (str's
        # own definition): nothing to drop or turn into a space, only runs to collapse.
        # Most names and subjects, without the per-character loop below.
        line = " ".join(normalized.split())
    else:
        kept: list[str] = []
        for char in normalized:
            if char in "\r\n\t\v\f\x85\u2028\u2029":
                kept.append(" ")
            elif unicodedata.category(char) in _DROPPED_CATEGORIES:
                continue
            elif char.isspace():
                kept.append(" ")
            else:
                kept.append(char)
        line = " ".join("".join(kept).split())
    if len(line) > max_length:
        line = line[: max_length - 1].rstrip() + "…"
    return line


def clean_text(value: str, *, max_length: int = 2000) -> str:
    """Free text (several lines) without the characters that hide or reorder content.

    Line breaks are kept, normalised to LF; every other control or invisible format
    character is removed, as in `clean_line`. Used for texts people write to each other,
    such as the reason given for moving an interview.
    """
    normalized = unicodedata.normalize("NFC", value.replace("\r\n", "\n").replace("\r", "\n"))
    lines = (clean_line(line, max_length=max_length) for line in normalized.split("\n"))
    text = "\n".join(lines).strip("\n")
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    if len(text) > max_length:
        text = text[: max_length - 1].rstrip() + "…"
    return text


def validate_domain(domain: str) -> str:
    """The domain in ASCII (A-labels), or ValueError: it must be a plain host name."""
    if not domain or domain != domain.strip() or domain.endswith("."):
        raise ValueError(f"invalid domain: {domain!r}")
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"invalid domain: {domain!r}") from exc
    labels = ascii_domain.split(".")
    if len(ascii_domain) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"invalid domain: {domain!r}")
    return ascii_domain.lower()


def validate_address(address: str) -> str:
    """The address normalised (ASCII, lower-case domain), or ValueError.

    Only a bare addr-spec is accepted: no display name, no angle brackets, no comments, no
    second address, no white space. "localhost" and reserved test domains are allowed on
    purpose, since development and tests use them.
    """
    if not isinstance(address, str) or address.count("@") != 1:
        raise ValueError(f"invalid e-mail address: {address!r}")
    local, _, domain = address.partition("@")
    if not _LOCAL_PART.fullmatch(local) or len(local) > 64:
        raise ValueError(f"invalid e-mail address: {address!r}")
    try:
        ascii_domain = validate_domain(domain)
    except ValueError as exc:
        raise ValueError(f"invalid e-mail address: {address!r}") from exc
    normalized = f"{local}@{ascii_domain}"
    if len(normalized) > 254:
        raise ValueError(f"invalid e-mail address: {address!r}")
    return normalized


def message_id_for(row_id: uuid.UUID | str, domain: str) -> str:
    """`<row_id@domain>`: the same outbox row always yields the same Message-ID.

    Determinism is what makes a retried delivery recognisable as a duplicate by receiving
    servers and clients, and lets a log line be matched to its row.
    """
    left = str(row_id)
    if not _LOCAL_PART.fullmatch(left):  # id-left is dot-atom-text too
        raise ValueError(f"invalid Message-ID left part: {left!r}")
    return f"<{left}@{validate_domain(domain)}>"


class _HeaderFactory(HeaderRegistry):
    """The standard header registry, without the repeated work of building a message.

    `HeaderRegistry.__getitem__` calls `type()` to mix the header's class with the base
    class on every lookup, about 55 times per message; and 22 of a message's ~30 header
    assignments are the same few MIME values every time ("MIME-Version: 1.0",
    'text/plain; charset="utf-8"', ...), each parsed anew. The mixed class depends on the
    lower-cased name alone and holds no state, so one per name serves every message; and a
    parsed header is immutable (a str whose parse tree nothing modifies: the message
    replaces a header, it never edits one), so one instance per constant value does too.
    Only the MIME structure's constant headers are kept, never a person's address or subject.
    """

    _SHARED = frozenset(
        {"content-type", "content-transfer-encoding", "content-disposition", "mime-version"}
    )
    _MAX_SHARED = 256  # a handful are ever used; the bound only guards against a surprise

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}
        self._shared: dict[tuple[str, str], BaseHeader] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls

    def __call__(self, name: str, value: Any) -> BaseHeader:
        # Values may be objects (an Address, a datetime): only text is shared. A multipart's
        # boundary is random: such a value is never seen twice.
        if not isinstance(value, str) or name.lower() not in self._SHARED or "boundary=" in value:
            return self[name](name, value)
        key = (name, value)
        header = self._shared.get(key)
        if header is None:
            header = self[name](name, value)
            if len(self._shared) < self._MAX_SHARED:
                self._shared[key] = header
        return header


# Behaves as `email.policy.SMTP` in every respect but the cost of its header lookups.
_POLICY = SMTP.clone(header_factory=_HeaderFactory())


def _mailbox(name: str, address: str) -> Address:
    address = validate_address(address)
    username, _, domain = address.partition("@")
    return Address(display_name=clean_line(name), username=username, domain=domain)


def _drop_part_mime_version(message: EmailMessage) -> None:
    """Sub-parts inherit a MIME-Version header from `add_alternative`; only the top needs it."""
    for part in message.walk():
        if part is not message and "MIME-Version" in part:
            del part["MIME-Version"]


# The generator's own boundary form: 15 "=", the random number in 19 digits (on 64-bit), "==".
_BOUNDARY_DIGITS = len(repr(sys.maxsize - 1))


def _choose_boundaries(message: EmailMessage) -> None:
    """Give every multipart its boundary now, in the form the generator would choose.

    Left to the generator, each boundary costs a regular expression compiled for that one
    random string (so never found in `re`'s cache) and run over the whole flattened text:
    about 40 % of serialising a message. A boundary only has to be absent from what it
    separates; the parts' bodies here are quoted-printable (which never writes "==") or
    base64 (which has no "-"), and a plain substring test below still makes sure of it.
    """
    bodies = [str(part.get_payload()) for part in message.walk() if not part.is_multipart()]
    chosen: set[str] = set()
    for part in message.walk():
        if not part.is_multipart():
            continue
        while True:
            token = random.randrange(sys.maxsize)
            boundary = f"{'=' * 15}{token:0{_BOUNDARY_DIGITS}d}=="
            if boundary not in chosen and not any(boundary in body for body in bodies):
                break
        chosen.add(boundary)
        part.set_boundary(boundary)


def build_message(
    *,
    from_name: str,
    from_address: str,
    to_name: str,
    to_address: str,
    subject: str,
    text: str,
    html: str,
    calendar: bytes | None,
    method: str | None,
    message_id: str,
    date: datetime,
    reply_to: str | None = None,
) -> EmailMessage:
    """One message to one person: text and HTML, plus the iMIP invitation when there is one.

    With a calendar the structure is what calendar-aware clients expect (RFC 6047):
    multipart/mixed[ multipart/alternative[ text/plain, text/html,
    text/calendar; method=... ], application/ics "invite.ics" ]. The inline text/calendar
    part lets Outlook and Gmail show accept/decline buttons; the attachment serves every
    other client. Without a calendar it is just multipart/alternative[text, html].
    `date` is a parameter (not "now") so that building stays a pure function.
    """
    if date.tzinfo is None or date.utcoffset() is None:
        raise ValueError("date must be timezone-aware")
    if (calendar is None) != (method is None):
        raise ValueError("calendar and method go together")
    if method is not None and not re.fullmatch(r"[A-Z-]{1,32}", method):
        raise ValueError(f"invalid iTIP method: {method!r}")
    if not re.fullmatch(r"<[^<>\s@]+@[^<>\s@]+>", message_id):
        raise ValueError(f"invalid Message-ID: {message_id!r}")

    message = EmailMessage(policy=_POLICY)
    message["From"] = _mailbox(from_name, from_address)
    message["To"] = _mailbox(to_name, to_address)
    if reply_to is not None:
        message["Reply-To"] = _mailbox("", reply_to)
    message["Subject"] = clean_line(subject, max_length=250)
    message["Date"] = date
    message["Message-ID"] = message_id
    # RFC 3834: tells vacation responders and ticket systems not to answer a robot.
    message["Auto-Submitted"] = "auto-generated"

    # Quoted-printable keeps non-ASCII bodies 7-bit clean, so no server needs 8BITMIME.
    message.set_content(text, subtype="plain", cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    if calendar is not None and method is not None:
        # base64 carries the ICS byte for byte (CRLF line ends, folding) through any relay.
        message.add_alternative(
            calendar,
            maintype="text",
            subtype="calendar",
            cte="base64",
            params={"method": method, "charset": "UTF-8"},
        )
        message.add_attachment(
            calendar,
            maintype="application",
            subtype="ics",
            filename="invite.ics",
            params={"name": "invite.ics"},
        )
    _drop_part_mime_version(message)
    _choose_boundaries(message)
    return message


# --- the same message, written directly ---------------------------------------------------
#
# `build_message` then `as_bytes(policy=SMTP)` was most of a booking confirmation's CPU: the
# email package parses every header it is given, re-parses a multipart's Content-Type to set
# its boundary, and its generator folds every header again while writing. The structure of
# our messages never varies, so `render_message` writes the same bytes directly: the header
# objects of the variable headers are made, and folded, exactly as the generator would
# (`_POLICY`'s factory, folded with SMTP), the constant MIME headers are folded once per
# value, and the bodies are encoded with the functions set_content uses.
# tests/mailer/test_message.py compares the two byte for byte over many messages.

_NL = "\r\n"
_CRACK = re.compile(r"\r\n|\r|\n")  # what the generator splits a payload's lines on
_MAX_LINE_LENGTH = 78  # the policy's: set_content encodes bodies for it
if _POLICY.max_line_length != _MAX_LINE_LENGTH:
    raise RuntimeError("the SMTP policy's line length changed: render_message must follow it")
_BASE64_CHUNK = _MAX_LINE_LENGTH // 4 * 3  # bytes per base64 line (email.contentmanager)


def _folded(name: str, value: Any) -> tuple[BaseHeader, str]:
    """The header as the message stores it, and as the generator writes it (SMTP)."""
    header = _POLICY.header_factory(name, value)
    return header, header.fold(policy=SMTP)


_CONSTANT_HEADERS: dict[tuple[str, str], str] = {}


def _constant(name: str, value: str) -> str:
    """`_folded` for the MIME headers whose value never depends on the message."""
    key = (name, value)
    folded = _CONSTANT_HEADERS.get(key)
    if folded is None:
        folded = _CONSTANT_HEADERS[key] = _folded(name, value)[1]
    return folded


@lru_cache(maxsize=256)
def _sender_header(name: str, display_name: str, address: str) -> str:
    """From and Reply-To: the organisation's, the same on every message it sends. Folded
    headers are immutable text, so a cached one is the one the factory would make again."""
    return _folded(name, _mailbox(display_name, address))[1]


@lru_cache(maxsize=16)
def _date_header(date: datetime) -> str:
    """A booking's messages share their Date (the instant of the change)."""
    return _folded("Date", date)[1]


# Boundaries all have one form (`_BOUNDARY_DIGITS`): the same length and kinds of
# characters, so a multipart's Content-Type folds at the same place whatever the digits.
_SAMPLE_BOUNDARY = f"{'=' * 15}{0:0{_BOUNDARY_DIGITS}d}=="


def _multipart_type(subtype: str, boundary: str) -> str:
    """The folded Content-Type of a multipart: a sample boundary's, with this one put in."""
    if len(boundary) != len(_SAMPLE_BOUNDARY) or not re.fullmatch(r"=+[0-9]+==", boundary):
        return _folded("Content-Type", f'multipart/{subtype}; boundary="{boundary}"')[1]
    folded = _constant("Content-Type", f'multipart/{subtype}; boundary="{_SAMPLE_BOUNDARY}"')
    return folded.replace(_SAMPLE_BOUNDARY, boundary)


def _qp_body(text: str) -> str:
    """What set_content(text, cte="quoted-printable") stores as the payload."""
    lines = text.encode("utf-8").splitlines()
    body = b"\n".join(lines) + b"\n"
    return quoprimime.body_encode(body.decode("latin-1"), _MAX_LINE_LENGTH)


def _base64_body(data: bytes) -> str:
    """What set_content(bytes, cte="base64") stores as the payload."""
    return "".join(
        binascii.b2a_base64(data[i : i + _BASE64_CHUNK]).decode("ascii")
        for i in range(0, len(data), _BASE64_CHUNK)
    )


def _payload(body: str) -> str:
    """A payload as the generator writes it: every line break as CRLF."""
    return _NL.join(_CRACK.split(body))


def _boundary(chosen: set[str], bodies: list[str]) -> str:
    """A fresh boundary, as `_choose_boundaries` picks them."""
    while True:
        token = random.randrange(sys.maxsize)
        boundary = f"{'=' * 15}{token:0{_BOUNDARY_DIGITS}d}=="
        if boundary not in chosen and not any(boundary in body for body in bodies):
            chosen.add(boundary)
            return boundary


def _multipart(headers: str, boundary: str, parts: list[str]) -> str:
    """A multipart entity as the generator writes it (no preamble, no epilogue)."""
    delimiter = f"{_NL}--{boundary}{_NL}"
    return f"{headers}{_NL}--{boundary}{_NL}{delimiter.join(parts)}{_NL}--{boundary}--{_NL}"


@dataclass(frozen=True)
class RenderedMessage:
    """A message's bytes as `as_bytes(policy=SMTP)` writes them, with what the outbox
    reads from its headers."""

    raw: bytes
    message_id: str
    subject: str  # the Subject header's value, as `str(message["Subject"])` reads it
    recipient: str  # the one To address (addr-spec)


def render_message(
    *,
    from_name: str,
    from_address: str,
    to_name: str,
    to_address: str,
    subject: str,
    text: str,
    html: str,
    calendar: bytes | None,
    method: str | None,
    message_id: str,
    date: datetime,
    reply_to: str | None = None,
    boundaries: tuple[str, ...] | None = None,
) -> RenderedMessage:
    """`build_message(...).as_bytes(policy=SMTP)`, byte for byte, at a fraction of the cost.

    Same checks, same structure, same encodings (see `build_message`). `boundaries` (outer
    first) replaces the random ones, for the comparison with `build_message` in the tests.
    """
    if date.tzinfo is None or date.utcoffset() is None:
        raise ValueError("date must be timezone-aware")
    if (calendar is None) != (method is None):
        raise ValueError("calendar and method go together")
    if method is not None and not re.fullmatch(r"[A-Z-]{1,32}", method):
        raise ValueError(f"invalid iTIP method: {method!r}")
    if not re.fullmatch(r"<[^<>\s@]+@[^<>\s@]+>", message_id):
        raise ValueError(f"invalid Message-ID: {message_id!r}")

    to_header, to_line = _folded("To", _mailbox(to_name, to_address))
    subject_header, subject_line = _folded("Subject", clean_line(subject, max_length=250))
    head = [_sender_header("From", from_name, from_address), to_line]
    if reply_to is not None:
        head.append(_sender_header("Reply-To", "", reply_to))
    head += [
        subject_line,
        _date_header(date),
        _folded("Message-ID", message_id)[1],
        _constant("Auto-Submitted", "auto-generated"),
        _constant("MIME-Version", "1.0"),
    ]

    text_body, html_body = _qp_body(text), _qp_body(html)
    bodies = [text_body, html_body]
    cte_qp = _constant("Content-Transfer-Encoding", "quoted-printable")
    alternatives = [
        _constant("Content-Type", f'text/{subtype}; charset="utf-8"') + cte_qp + _NL + _payload(b)
        for subtype, b in (("plain", text_body), ("html", html_body))
    ]
    chosen: set[str] = set()
    wanted = list(boundaries or ())
    if calendar is not None and method is not None:
        calendar_body = _payload(_base64_body(calendar))
        bodies.append(calendar_body)
        cte_base64 = _constant("Content-Transfer-Encoding", "base64")
        alternatives.append(
            cte_base64
            + _constant("Content-Type", f'text/calendar; method="{method}"; charset="UTF-8"')
            + _NL
            + calendar_body
        )
        attachment = (
            cte_base64
            + _constant("Content-Disposition", 'attachment; filename="invite.ics"')
            + _constant("Content-Type", 'application/ics; name="invite.ics"')
            + _NL
            + calendar_body
        )
        outer = wanted.pop(0) if wanted else _boundary(chosen, bodies)
        inner = wanted.pop(0) if wanted else _boundary(chosen, bodies)
        alternative = _multipart(_multipart_type("alternative", inner), inner, alternatives)
        head.append(_multipart_type("mixed", outer))
        body = _multipart("".join(head), outer, [alternative, attachment])
    else:
        only = wanted.pop(0) if wanted else _boundary(chosen, bodies)
        head.append(_multipart_type("alternative", only))
        body = _multipart("".join(head), only, alternatives)
    address = to_header.addresses  # type: ignore[attr-defined]
    return RenderedMessage(
        raw=body.encode("ascii", "surrogateescape"),
        message_id=message_id,
        subject=str(subject_header),
        recipient=address[0].addr_spec,
    )


@dataclass(frozen=True)
class MailContent:
    """A rendered e-mail for one person, not yet tied to an outbox row.

    The Message-ID depends on the outbox row id, which exists only at enqueue time, so the
    rendering (compose) and the final MIME building (here) are two steps; `to_email` is the
    second one and is what `mailer.outbox.enqueue_content` calls.
    """

    kind: str
    to_name: str
    to_address: str
    subject: str
    text: str
    html: str
    calendar: bytes | None
    method: str | None
    date: datetime
    from_name: str
    reply_to: str | None = None

    def _fields(self, message_id: str, from_address: str) -> dict[str, Any]:
        return {
            "from_name": self.from_name,
            "from_address": from_address,
            "to_name": self.to_name,
            "to_address": self.to_address,
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "calendar": self.calendar,
            "method": self.method,
            "message_id": message_id,
            "date": self.date,
            "reply_to": self.reply_to,
        }

    def to_email(self, *, message_id: str, from_address: str) -> EmailMessage:
        """The complete message, with the outbox row's Message-ID and the configured sender."""
        return build_message(**self._fields(message_id, from_address))

    def render(self, *, message_id: str, from_address: str) -> RenderedMessage:
        """`to_email(...)`'s bytes, written directly (`render_message`): what the outbox
        stores; the same fields, so the two cannot drift."""
        return render_message(**self._fields(message_id, from_address))
