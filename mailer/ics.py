"""Calendar invitations (RFC 5545 objects, iTIP RFC 5546 methods, sent by iMIP RFC 6047).

Pure functions: the same `Invitation` always gives the same bytes, so an invitation can be
rebuilt, compared and tested without a clock or a database.

Each invitation has exactly one ATTENDEE, the recipient: candidate and evaluator each get
their own copy carrying their own room link, and neither learns the other's address from
the calendar data. The ORGANIZER is the organisation, never the attendee, because clients
treat "I am the organizer" events as their own and hide the accept/decline buttons.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import STATUS, TRANSP, Calendar, Event, Timezone, vCalAddress

from mailer.message import clean_line, validate_address

__all__ = [
    "PRODID",
    "Invitation",
    "build_cancel",
    "build_feed",
    "build_request",
    "build_update",
]

PRODID = "-//Viva//Viva oral interviews//EN"
_CALENDAR_END = b"END:VCALENDAR\r\n"


def _aware_utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class Invitation:
    """One interview as one recipient's calendar should show it.

    `uid` stays the same for the whole life of a booking and `sequence` grows with every
    change (RFC 5546 section 2.1.4): that pair is how a client knows that an update or a
    cancellation replaces the event it already has. `timezone` is the recipient's IANA zone;
    the times are written in it, with its VTIMEZONE, so the event reads naturally in the
    raw file and survives clients that mishandle UTC-only events.
    """

    uid: str
    sequence: int
    dtstamp: datetime
    start: datetime
    end: datetime
    timezone: str
    summary: str
    description: str
    room_url: str
    organizer_name: str
    organizer_email: str
    attendee_name: str
    attendee_email: str

    def __post_init__(self) -> None:
        """Reject what would produce a subtly wrong calendar rather than a visible error."""
        for name in ("dtstamp", "start", "end"):
            object.__setattr__(self, name, _aware_utc(getattr(self, name), name))
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if self.sequence < 0:
            raise ValueError("sequence must not be negative")
        if not self.uid or clean_line(self.uid) != self.uid or " " in self.uid:
            raise ValueError(f"invalid UID: {self.uid!r}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone: {self.timezone!r}") from exc
        organizer = validate_address(self.organizer_email)
        attendee = validate_address(self.attendee_email)
        if organizer.lower() == attendee.lower():
            raise ValueError("the organizer must not be the attendee")
        if not self.room_url.startswith(("https://", "http://")):
            raise ValueError(f"room_url must be an http(s) URL: {self.room_url!r}")


@lru_cache(maxsize=64)
def _vtimezone(tzid: str, first: date, last: date) -> bytes:
    """The VTIMEZONE for a zone over a few years, as its lines read inside a calendar.

    Generating it walks the zone's transitions, and parsing it back into a component for every
    message cost as much again; so it is serialised once and spliced in as bytes (see
    `_build`). It is cached after one parse round trip because that is the form earlier
    versions wrote into every calendar: the bytes stay exactly what they were.
    """
    generated = Timezone.from_tzinfo(ZoneInfo(tzid), tzid=tzid, first_date=first, last_date=last)
    lines: bytes = Timezone.from_ical(generated.to_ical()).to_ical()
    return lines


@lru_cache(maxsize=4)
def _calendar_head(method: str) -> bytes:
    """The VCALENDAR's opening lines for `method`, up to its first component.

    Set by hand rather than with Calendar.new(), which adds a random calendar UID and would
    make the output differ from one call to the next. A calendar serialises line by line,
    components after its own properties, so these bytes are the same whatever follows.
    """
    calendar = Calendar()
    calendar.add("PRODID", PRODID)
    calendar.add("VERSION", "2.0")
    calendar.add("CALSCALE", "GREGORIAN")
    calendar.add("METHOD", method)
    whole: bytes = calendar.to_ical()
    if not whole.endswith(_CALENDAR_END):
        raise RuntimeError("unexpected VCALENDAR serialisation")
    return whole[: -len(_CALENDAR_END)]


def _zones_of(event: Event) -> list[str]:
    """The TZIDs the event's properties use, sorted; UTC needs none ("Z" times).

    What `Calendar.get_missing_tzids` answers for a calendar holding only this event.
    """
    tzids: set[str] = set()
    for value in event.values():
        for item in value if isinstance(value, list) else (value,):
            params = getattr(item, "params", None)
            tzid = params.get("TZID") if params is not None else None
            if tzid:
                tzids.add(tzid)
    tzids.discard("UTC")
    return sorted(tzids)


def _address(email: str, name: str, *, attendee: bool, rsvp: bool = False) -> vCalAddress:
    """A mailto: address whose CN is one clean line.

    icalendar escapes parameter values (RFC 6868 carets for quotes and newlines), but many
    clients, vobject among them, do not decode RFC 6868 and would show "^'" to the reader.
    A name has no business containing a line break, so it becomes a space, and a double
    quote, which an RFC 5545 parameter value cannot hold, becomes an apostrophe.
    """
    cn = clean_line(name).replace('"', "'") or None
    if not attendee:
        return vCalAddress.new(validate_address(email), cn=cn)
    return vCalAddress.new(
        validate_address(email),
        cn=cn,
        cutype="INDIVIDUAL",
        role="REQ-PARTICIPANT",
        partstat="NEEDS-ACTION",
        rsvp=rsvp,
    )


def _event(inv: Invitation, method: Literal["REQUEST", "CANCEL"], *, feed: bool = False) -> Event:
    zone = ZoneInfo(inv.timezone)
    return Event.new(
        uid=inv.uid,
        sequence=inv.sequence,
        stamp=inv.dtstamp,
        start=inv.start.astimezone(zone),
        end=inv.end.astimezone(zone),
        summary=clean_line(inv.summary),
        description=inv.description,
        location=inv.room_url,
        url=inv.room_url,
        organizer=_address(inv.organizer_email, inv.organizer_name, attendee=False),
        attendees=[
            # A cancellation expects no answer, so only a REQUEST asks for one.
            _address(
                inv.attendee_email,
                inv.attendee_name,
                attendee=True,
                rsvp=method == "REQUEST" and not feed,
            )
        ],
        status=STATUS.CONFIRMED if method == "REQUEST" else STATUS.CANCELLED,
        transparency=TRANSP.OPAQUE,
    )


# RFC 5545 folds content lines longer than 75 octets; icalendar's folding walks every
# character of every line (encoding each one) to find where to cut, most of writing an event.
_FOLD_AT = 75
_PIECE = _FOLD_AT - 1  # the longest piece icalendar leaves on a line, in octets
_ESCAPES = "\\^"  # TEXT and RFC 6868 escapes, which icalendar never splits from their letter


def _fold(line: str) -> bytes:
    """icalendar's `Contentline.to_ical()` (its `_foldline`), byte for byte, a slice at a time.

    Each piece is the longest run of characters from where the last one ended that takes at
    most `_PIECE` octets in UTF-8 (a character is never split); a piece that would end on a
    backslash or a caret (an escape) gives that character to the next piece instead, unless it
    is the piece's only one. `tests/mailer/test_ics.py` checks it against icalendar's own.
    """
    pieces = []
    start, n = 0, len(line)
    while True:
        end = min(n, start + _PIECE)
        size = len(line[start:end].encode())
        if end == n and size <= _PIECE:
            break  # the rest fits on one line
        while size > _PIECE:  # multi-octet characters: give back until it fits
            end -= 1
            size -= len(line[end].encode())
        if end - start > 1 and line[end - 1] in _ESCAPES:
            end -= 1
        pieces.append(line[start:end])
        start = end
    pieces.append(line[start:])
    return "\r\n ".join(pieces).encode()


def _to_ical(component: Event) -> bytes:
    """`component.to_ical()`, byte for byte, with a faster fold (`_fold`).

    A line shorter than `_FOLD_AT` octets comes out as it went in; only the others are
    folded (the description and the links, typically).
    """
    lines = []
    for line in component.content_lines():
        if not line:
            continue  # the empty string that ends the list, as Contentlines.to_ical skips it
        raw = line.encode("utf-8")
        lines.append(raw if len(raw) < _FOLD_AT else _fold(line))
    return b"\r\n".join(lines) + b"\r\n"


def _build(inv: Invitation, method: Literal["REQUEST", "CANCEL"]) -> bytes:
    """The calendar as icalendar writes it whole, assembled from separately written parts.

    A calendar is written line by line, its own properties first, then each component; so
    the opening lines and each zone's VTIMEZONE, the same for every invitation, are written
    once and reused, and only the event is written per invitation.
    """
    event = _event(inv, method)
    # Zones that icalendar writes as UTC ("Z" times) need no VTIMEZONE; every other TZID the
    # event uses gets one, placed before the event as clients expect. The range runs from a
    # year before to two years after: every date a booking can move to, with its transitions.
    first = date(inv.start.year - 1, 1, 1)
    last = date(inv.end.year + 2, 1, 1)
    zones = b"".join(_vtimezone(tzid, first, last) for tzid in _zones_of(event))
    body = _to_ical(event)
    return _calendar_head(method) + zones + body + _CALENDAR_END


def build_request(inv: Invitation) -> bytes:
    """METHOD:REQUEST, STATUS:CONFIRMED: the first invitation for a booking."""
    return _build(inv, "REQUEST")


def build_update(inv: Invitation) -> bytes:
    """A REQUEST that replaces the event the recipient has; `inv.sequence` must be higher.

    iTIP has no separate "update" method: a REQUEST with the same UID and a greater
    SEQUENCE is the update. The caller owns the counter (it is stored with the booking).
    """
    return _build(inv, "REQUEST")


def build_cancel(inv: Invitation) -> bytes:
    """METHOD:CANCEL, STATUS:CANCELLED, same UID; pass a higher SEQUENCE than the last REQUEST.

    Clients ignore a CANCEL whose SEQUENCE is lower than the event they hold, so a
    cancellation is treated as one more revision of the booking.
    """
    return _build(inv, "CANCEL")


def build_feed(entries: Iterable[tuple[Invitation, bool]], name: str) -> bytes:
    """A calendar to subscribe to: each interview as its invitation describes it.

    Each entry is (invitation, cancelled). The events are those of the invitations, same
    UID and SEQUENCE, so a client holding both sees one event; a cancelled one stays, with
    STATUS:CANCELLED. No METHOD (RFC 5545 section 3.7.2: a published calendar is no iTIP
    message) and no reply asked.
    """
    events: list[bytes] = []
    spans: dict[str, tuple[date, date]] = {}
    for inv, cancelled in entries:
        event = _event(inv, "CANCEL" if cancelled else "REQUEST", feed=True)
        for tzid in _zones_of(event):
            first, last = spans.get(tzid, (date.max, date.min))
            spans[tzid] = (
                min(first, date(inv.start.year - 1, 1, 1)),
                max(last, date(inv.end.year + 2, 1, 1)),
            )
        events.append(event.to_ical())
    zones = b"".join(_vtimezone(tzid, *spans[tzid]) for tzid in sorted(spans))
    return _feed_head(clean_line(name)) + zones + b"".join(events) + _CALENDAR_END


def _feed_head(name: str) -> bytes:
    calendar = Calendar()
    calendar.add("PRODID", PRODID)
    calendar.add("VERSION", "2.0")
    calendar.add("CALSCALE", "GREGORIAN")
    calendar.add("X-WR-CALNAME", name)
    # How often subscribers should look again (RFC 7986 and the older Apple/Microsoft name).
    calendar.add("REFRESH-INTERVAL", timedelta(hours=1), parameters={"VALUE": "DURATION"})
    calendar.add("X-PUBLISHED-TTL", "PT1H")
    whole: bytes = calendar.to_ical()
    return whole[: -len(_CALENDAR_END)]
