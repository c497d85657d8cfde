"""Invitations read back by two independent parsers (icalendar and vobject)."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import icalendar
import pytest
import vobject

from mailer import ics
from mailer.ics import PRODID, Invitation, build_cancel, build_request, build_update

PARIS = ZoneInfo("Europe/Paris")


def make_invitation(**changes: object) -> Invitation:
    base = Invitation(
        uid="0b7e3f0e-5f1c-4a55-9d7e-4f4a3c1d2e10",
        sequence=0,
        dtstamp=datetime(2026, 11, 2, 8, 0, tzinfo=UTC),
        start=datetime(2026, 12, 3, 13, 0, tzinfo=UTC),
        end=datetime(2026, 12, 3, 13, 20, tzinfo=UTC),
        timezone="Europe/Paris",
        summary="Oral interview (English) – CCI Paris",
        description="When: Thursday\nRoom: https://viva.example.test/r/abc",
        room_url="https://viva.example.test/r/abc?t=1&u=2",
        organizer_name="CCI Paris",
        organizer_email="contact@cci.example.test",
        attendee_name="Zoë Martin",
        attendee_email="zoe@example.test",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def only_event(data: bytes) -> icalendar.Event:
    calendar = icalendar.Calendar.from_ical(data)
    events = calendar.walk("VEVENT")
    assert len(events) == 1
    return events[0]


def test_request_has_every_property_an_imip_client_needs() -> None:
    data = build_request(make_invitation())
    calendar = icalendar.Calendar.from_ical(data)

    assert calendar["VERSION"] == "2.0"
    assert calendar["PRODID"] == PRODID
    assert calendar["CALSCALE"] == "GREGORIAN"
    assert calendar["METHOD"] == "REQUEST"
    event = only_event(data)
    assert event["UID"] == "0b7e3f0e-5f1c-4a55-9d7e-4f4a3c1d2e10"
    assert event["SEQUENCE"] == 0
    assert event["STATUS"] == "CONFIRMED"
    assert event.decoded("DTSTAMP") == datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    # Written in the recipient's zone, with the VTIMEZONE that defines it.
    assert event["DTSTART"].params["TZID"] == "Europe/Paris"
    assert event["DTEND"].params["TZID"] == "Europe/Paris"
    assert event.decoded("DTSTART").replace(tzinfo=None) == datetime(2026, 12, 3, 14, 0)
    assert event.decoded("DTSTART").astimezone(UTC) == datetime(2026, 12, 3, 13, 0, tzinfo=UTC)
    assert event.decoded("DTEND").astimezone(UTC) == datetime(2026, 12, 3, 13, 20, tzinfo=UTC)
    assert [tz["TZID"] for tz in calendar.walk("VTIMEZONE")] == ["Europe/Paris"]
    organizer = event["ORGANIZER"]
    assert str(organizer) == "mailto:contact@cci.example.test"
    assert organizer.params["CN"] == "CCI Paris"
    attendees = event["ATTENDEE"]
    assert isinstance(attendees, icalendar.vCalAddress)  # exactly one, not a list
    assert str(attendees) == "mailto:zoe@example.test"
    assert attendees.params["CN"] == "Zoë Martin"
    assert attendees.params["ROLE"] == "REQ-PARTICIPANT"
    assert attendees.params["PARTSTAT"] == "NEEDS-ACTION"
    assert attendees.params["RSVP"] == "TRUE"
    assert event["LOCATION"] == "https://viva.example.test/r/abc?t=1&u=2"
    assert event["URL"] == "https://viva.example.test/r/abc?t=1&u=2"
    assert event["DESCRIPTION"] == "When: Thursday\nRoom: https://viva.example.test/r/abc"


def test_request_reads_the_same_in_vobject() -> None:
    parsed = vobject.readOne(build_request(make_invitation()).decode("utf-8"))

    assert parsed.method.value == "REQUEST"
    event = parsed.vevent
    assert event.uid.value == "0b7e3f0e-5f1c-4a55-9d7e-4f4a3c1d2e10"
    assert event.sequence.value == "0"
    assert event.dtstart.value.astimezone(UTC) == datetime(2026, 12, 3, 13, 0, tzinfo=UTC)
    assert event.dtstart.value.replace(tzinfo=None) == datetime(2026, 12, 3, 14, 0)
    assert event.dtend.value.astimezone(UTC) == datetime(2026, 12, 3, 13, 20, tzinfo=UTC)
    assert event.organizer.value == "mailto:contact@cci.example.test"
    assert event.organizer.params["CN"] == ["CCI Paris"]
    assert [a.value for a in event.attendee_list] == ["mailto:zoe@example.test"]
    assert event.attendee.params["CN"] == ["Zoë Martin"]
    assert event.attendee.params["RSVP"] == ["TRUE"]
    assert event.location.value == "https://viva.example.test/r/abc?t=1&u=2"


def test_update_keeps_the_uid_and_carries_the_higher_sequence() -> None:
    first = only_event(build_request(make_invitation()))
    moved = make_invitation(
        sequence=1,
        start=datetime(2026, 12, 4, 9, 0, tzinfo=UTC),
        end=datetime(2026, 12, 4, 9, 20, tzinfo=UTC),
    )
    data = build_update(moved)
    update = only_event(data)

    assert icalendar.Calendar.from_ical(data)["METHOD"] == "REQUEST"
    assert update["UID"] == first["UID"]
    assert update["SEQUENCE"] == 1 > first["SEQUENCE"]
    assert update["STATUS"] == "CONFIRMED"
    assert update.decoded("DTSTART").astimezone(UTC) == datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def test_cancel_uses_method_cancel_and_status_cancelled() -> None:
    data = build_cancel(make_invitation(sequence=2))
    calendar = icalendar.Calendar.from_ical(data)
    event = only_event(data)

    assert calendar["METHOD"] == "CANCEL"
    assert event["STATUS"] == "CANCELLED"
    assert event["UID"] == "0b7e3f0e-5f1c-4a55-9d7e-4f4a3c1d2e10"
    assert event["SEQUENCE"] == 2
    # A cancellation asks for no reply.
    assert event["ATTENDEE"].params["RSVP"] == "FALSE"
    parsed = vobject.readOne(data.decode("utf-8"))
    assert parsed.method.value == "CANCEL"
    assert parsed.vevent.status.value == "CANCELLED"


@pytest.mark.parametrize(
    ("local_start", "utc_start", "offset"),
    [
        # The Friday before the change to winter time (UTC+2) and the Monday after (UTC+1).
        (datetime(2026, 10, 23, 9, 0), datetime(2026, 10, 23, 7, 0, tzinfo=UTC), 2),
        (datetime(2026, 10, 26, 9, 0), datetime(2026, 10, 26, 8, 0, tzinfo=UTC), 1),
    ],
)
def test_daylight_saving_change_gives_the_right_utc_instant(
    local_start: datetime, utc_start: datetime, offset: int
) -> None:
    start = local_start.replace(tzinfo=PARIS).astimezone(UTC)
    assert start == utc_start
    data = build_request(make_invitation(start=start, end=start + timedelta(minutes=20)))

    event = only_event(data)
    assert event.decoded("DTSTART").replace(tzinfo=None) == local_start
    assert event.decoded("DTSTART").astimezone(UTC) == utc_start
    vevent = vobject.readOne(data.decode("utf-8")).vevent
    # vobject computes the offset from our VTIMEZONE alone, so this checks its rules.
    assert vevent.dtstart.value.utcoffset() == timedelta(hours=offset)
    assert vevent.dtstart.value.astimezone(UTC) == utc_start


def test_text_and_names_with_special_characters_are_escaped() -> None:
    name = 'Eve, "the" tester; of\nline two'
    summary = 'Interview, "quoted"; with\\backslash'
    description = 'Line one; a, b\nLine two: "quoted"\n\\end'
    data = build_request(
        make_invitation(
            attendee_name=name,
            organizer_name='Org; Inc, "Ltd"',
            summary=summary,
            description=description,
        )
    )
    raw_lines = data.decode("utf-8").replace("\r\n ", "").split("\r\n")
    assert sum(line.startswith("ATTENDEE") for line in raw_lines) == 1
    assert not any(line.startswith("line two") for line in raw_lines)

    event = only_event(data)
    # One line, and the double quote (not representable in a parameter) became an apostrophe.
    assert event["ATTENDEE"].params["CN"] == "Eve, 'the' tester; of line two"
    assert str(event["ATTENDEE"]) == "mailto:zoe@example.test"
    assert event["ORGANIZER"].params["CN"] == "Org; Inc, 'Ltd'"
    assert event["SUMMARY"] == summary
    assert event["DESCRIPTION"] == description

    vevent = vobject.readOne(data.decode("utf-8")).vevent
    assert vevent.attendee.params["CN"] == ["Eve, 'the' tester; of line two"]
    assert vevent.attendee.value == "mailto:zoe@example.test"
    assert vevent.summary.value == summary
    assert vevent.description.value == description


def test_same_invitation_gives_the_same_bytes() -> None:
    assert build_request(make_invitation()) == build_request(make_invitation())


def test_utc_recipient_gets_utc_times_without_vtimezone() -> None:
    data = build_request(make_invitation(timezone="Etc/UTC"))
    calendar = icalendar.Calendar.from_ical(data)
    assert calendar.walk("VTIMEZONE") == []
    assert b"DTSTART:20261203T130000Z" in data


def test_other_zones_get_their_own_vtimezone() -> None:
    data = build_request(make_invitation(timezone="America/New_York"))
    event = only_event(data)
    assert event["DTSTART"].params["TZID"] == "America/New_York"
    assert event.decoded("DTSTART").replace(tzinfo=None) == datetime(2026, 12, 3, 8, 0)
    names = [tz["TZID"] for tz in icalendar.Calendar.from_ical(data).walk("VTIMEZONE")]
    assert names == ["America/New_York"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"start": datetime(2026, 12, 3, 13, 0)}, "timezone-aware"),
        ({"end": datetime(2026, 12, 3, 13, 0, tzinfo=UTC)}, "end must be after start"),
        ({"timezone": "Europe/Atlantis"}, "unknown time zone"),
        ({"attendee_email": "Contact@cci.example.test"}, "organizer must not be the attendee"),
        ({"attendee_email": "zoe@example.test\r\nX: y"}, "invalid e-mail address"),
        ({"room_url": "javascript:alert(1)"}, "http"),
        ({"sequence": -1}, "sequence"),
        ({"uid": "two words"}, "UID"),
    ],
)
def test_invalid_invitations_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_invitation(**changes)


def test_times_given_in_another_zone_are_normalised_to_utc() -> None:
    local = datetime(2026, 12, 3, 14, 0, tzinfo=PARIS)
    invitation = make_invitation(start=local, end=local + timedelta(minutes=20))
    assert invitation.start == datetime(2026, 12, 3, 13, 0, tzinfo=UTC)
    assert invitation.start.tzinfo is UTC


Method = Literal["REQUEST", "CANCEL"]


def _whole_calendar(invitation: Invitation, method: Method) -> bytes:
    """The invitation written the plain way: one icalendar Calendar holding the VTIMEZONEs
    and the event, serialised in one go (what `mailer.ics` assembles from cached parts)."""
    calendar = icalendar.Calendar()
    calendar.add("PRODID", PRODID)
    calendar.add("VERSION", "2.0")
    calendar.add("CALSCALE", "GREGORIAN")
    calendar.add("METHOD", method)
    calendar.add_component(ics._event(invitation, method))
    first = date(invitation.start.year - 1, 1, 1)
    last = date(invitation.end.year + 2, 1, 1)
    for index, tzid in enumerate(sorted(calendar.get_missing_tzids())):
        zone = icalendar.Timezone.from_tzinfo(
            ZoneInfo(tzid), tzid=tzid, first_date=first, last_date=last
        )
        calendar.subcomponents.insert(index, icalendar.Timezone.from_ical(zone.to_ical()))
    whole: bytes = calendar.to_ical()
    return whole


@pytest.mark.parametrize(
    "zone",
    ["Europe/Paris", "America/New_York", "Asia/Kolkata", "Etc/UTC", "UTC", "Australia/Sydney"],
)
@pytest.mark.parametrize("method", ["REQUEST", "CANCEL"])
@pytest.mark.parametrize(
    "start",
    [
        datetime(2026, 12, 3, 13, 0, tzinfo=UTC),
        datetime(2027, 3, 28, 0, 40, tzinfo=UTC),  # the night Paris springs forward
        datetime(2029, 10, 28, 1, 0, tzinfo=UTC),  # the night Paris falls back, years later
    ],
)
def test_calendar_bytes_are_those_of_one_whole_icalendar_calendar(
    zone: str, method: Method, start: datetime
) -> None:
    """The opening lines and the VTIMEZONEs are cached and spliced around the event: the
    result must stay byte for byte what icalendar writes for the whole calendar."""
    invitation = make_invitation(
        timezone=zone, start=start, end=start + timedelta(minutes=20), summary="Entretien – é"
    )
    built = ics._build(invitation, method)
    assert built == _whole_calendar(invitation, method)
    assert built == ics._build(invitation, method)  # the second time from the caches


@pytest.mark.parametrize("length", [60, 66, 67, 68, 72, 75, 76, 150, 400])
@pytest.mark.parametrize("filler", ["a", "é", "日", "\\", "^"])
def test_only_long_lines_are_folded_and_exactly_as_icalendar_folds_them(
    length: int, filler: str
) -> None:
    """The event is written without icalendar's per-character fold for lines short enough
    to need none: around the 75-octet limit, multi-byte characters and escapes included,
    the bytes must be icalendar's own."""
    invitation = make_invitation(
        summary=filler * length,
        description=("x" + filler) * (length // 2),
        attendee_name=filler * (length // 3),
        room_url="https://viva.example.test/r/" + "a" * length,
    )
    for method in ("REQUEST", "CANCEL"):
        event = ics._event(invitation, method)
        assert ics._to_ical(event) == event.to_ical()


def test_the_fast_fold_cuts_every_line_where_icalendar_does() -> None:
    """`ics._fold` replaces icalendar's character-by-character fold: for lines of every
    length around the limits, with multi-octet characters (2, 3 and 4 octets) and the escapes
    icalendar keeps with their letter (backslash, caret) at every position, its bytes must be
    icalendar's own."""
    from icalendar.parser.string import _foldline

    rng = random.Random(5545)
    pools = ["abcdefghij", "ab c\\^;,é€😀ñ", "\\^a", "é€😀a\\", "a" * 40 + "\\", "ü" * 9 + "^"]
    lines = ["", "x" * 74, "x" * 75, "x" * 148, "x" * 73 + "é", "x" * 73 + "\\n" + "y" * 80]
    for _ in range(5000):
        pool = rng.choice(pools)
        lines.append("".join(rng.choice(pool) for _ in range(rng.randint(60, 400))))
    for line in lines:
        assert ics._fold(line) == _foldline(line).encode(), line
