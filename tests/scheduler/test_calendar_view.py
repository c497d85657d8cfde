"""The calendar's view model, tested as data: no app, no request, no template."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from scheduler.bookings import SlotView
from scheduler.i18n import Catalogs
from scheduler.web.calendar_view import (
    CONFIRM,
    PAGE,
    Reader,
    calendar_context,
    deadline,
    iso_utc,
    month_view,
    parse_day,
    parse_start,
    read_choices,
    week_start,
    zone_options,
)

# A Wednesday morning in Paris (UTC+1 in December).
NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
READER = Reader("en", "Europe/Paris")


def link(name: str, reader: Reader, **query: str | None) -> str:
    """A URL as the handlers build it, readable in assertions."""
    params = {**reader.carry, **{k: v for k, v in query.items() if v is not None}}
    return name + "?" + "&".join(f"{k}={v}" for k, v in sorted(params.items()))


def _slot(day: int, hour: int) -> SlotView:
    start = datetime(2026, 12, day, hour, 0, tzinfo=UTC)
    return SlotView(start, start + timedelta(minutes=30))


def _calendar(slots: list[SlotView], **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "horizon": timedelta(days=60),
        "week": None,
        "offer_zone": True,
        "translations": Catalogs.load().get("en"),
    }
    return calendar_context(link, READER, slots, NOW, **{**args, **kw})


def test_read_choices_keeps_only_explicit_valid_choices_in_links() -> None:
    reader = read_choices({"lang": "FR", "tz": "America/Cayenne"}, "en", "Europe/Paris")
    assert (reader.locale, reader.tz) == ("fr", "America/Cayenne")
    assert reader.carry == {"lang": "fr", "tz": "America/Cayenne"}
    assert reader.rejected_tz is None

    default = read_choices({"lang": "de", "tz": "Mars/Olympus"}, "en", "Europe/Paris")
    assert (default.locale, default.tz, default.carry) == ("en", "Europe/Paris", {})
    assert default.rejected_tz == "Mars/Olympus"  # said on the page, not silently dropped

    unknown = read_choices({}, "xx", "Nowhere/Nothing")
    assert (unknown.locale, unknown.tz) == ("fr", "UTC")


def test_parse_start_and_day_refuse_what_is_not_an_instant_or_a_date() -> None:
    assert parse_start("2026-12-03T09:00:00+01:00") == datetime(2026, 12, 3, 8, tzinfo=UTC)
    # A "+" typed into a URL by hand arrives as a space.
    assert parse_start("2026-12-03T09:00:00 01:00") == datetime(2026, 12, 3, 8, tzinfo=UTC)
    assert parse_start("2026-12-03T09:00:00") is None  # no offset: which 9:00?
    assert parse_start("tomorrow") is None
    assert parse_start(None) is None
    assert parse_start("x" * 1000) is None
    assert parse_day("2026-12-07") == date(2026, 12, 7)
    assert parse_day("07/12/2026") is None
    assert iso_utc(datetime(2026, 12, 3, 9, tzinfo=UTC)) == "2026-12-03T09:00:00Z"


def test_week_start_follows_the_locale_first_day() -> None:
    wednesday = date(2026, 12, 2)
    assert week_start(wednesday, 0) == date(2026, 11, 30)  # Monday
    assert week_start(wednesday, 6) == date(2026, 11, 29)  # Sunday


def test_a_date_deadline_reads_as_the_end_of_that_day() -> None:
    # The organisation gave 10 December: stored as the following local midnight.
    end_of_day = deadline(datetime(2026, 12, 10, 23, 0, tzinfo=UTC), "Europe/Paris", "en")
    assert end_of_day is not None and end_of_day.end_of_day
    assert "December 10" in end_of_day.text
    instant = deadline(datetime(2026, 12, 10, 11, 0, tzinfo=UTC), "Europe/Paris", "en")
    assert instant is not None and not instant.end_of_day
    assert deadline(None, "Europe/Paris", "en") is None


def test_zone_options_run_west_to_east_and_include_the_current_zone() -> None:
    options = zone_options("Asia/Kathmandu", "en", NOW, Catalogs.load().get("en"))
    values = [o.value for o in options]
    assert "Asia/Kathmandu" in values
    assert [o.value for o in options if o.selected] == ["Asia/Kathmandu"]
    assert values.index("America/Los_Angeles") < values.index("Europe/Paris")
    assert values.index("Europe/Paris") < values.index("Asia/Kathmandu")


def test_the_week_lists_its_slots_by_local_day_from_today() -> None:
    ctx = _calendar([_slot(2, 13), _slot(3, 8), _slot(3, 9)])
    days = {d.day: d for d in ctx["days"]}
    # Monday and Tuesday have passed and hold nothing: the week starts at today.
    assert min(days) == date(2026, 12, 2) and days[date(2026, 12, 2)].today
    assert [s.start.hour for s in days[date(2026, 12, 3)].slots] == [8, 9]
    assert ctx["week_slots"] == 3
    assert days[date(2026, 12, 3)].slots[0].url == f"{CONFIRM}?start=2026-12-03T08:00:00Z"
    assert ctx["prev_week_url"] is None  # nothing before today
    assert ctx["next_week_url"] == f"{PAGE}?week=2026-12-06"  # English weeks start on Sunday
    assert ctx["nearest"] is None
    assert ctx["offer_zone"] is True


def test_an_empty_week_points_at_the_nearest_week_with_slots() -> None:
    ctx = _calendar([_slot(16, 9)])
    assert ctx["week_slots"] == 0
    assert ctx["nearest"]["url"] == f"{PAGE}?week=2026-12-16"


def test_the_booking_being_changed_shows_in_its_day_and_is_not_offered() -> None:
    from scheduler.models import Booking

    current = Booking(
        start_at=datetime(2026, 12, 3, 10, tzinfo=UTC), end_at=datetime(2026, 12, 3, 10, 30)
    )
    ctx = _calendar([_slot(3, 8)], current=current)
    thursday = next(d for d in ctx["days"] if d.day == date(2026, 12, 3))
    assert [(s.start.hour, s.current, s.url is None) for s in thursday.slots] == [
        (8, False, False),
        (10, True, True),
    ]
    assert ctx["week_slots"] == 1  # the current booking is not a slot to move to


def test_the_month_links_only_days_with_slots_and_stays_within_the_horizon() -> None:
    counts = {date(2026, 12, 3): 2, date(2026, 12, 17): 1}
    month = month_view(
        link, READER, date(2026, 12, 2), date(2026, 11, 30), counts, NOW.date(), date(2027, 1, 31)
    )
    cells = {c.day: c for row in month.rows for c in row if c is not None}
    assert len(cells) == 31
    assert cells[date(2026, 12, 3)].url == f"{PAGE}?week=2026-12-03"
    assert cells[date(2026, 12, 4)].url is None
    assert cells[date(2026, 12, 2)].today and cells[date(2026, 12, 2)].in_week
    assert not cells[date(2026, 12, 7)].in_week
    assert month.prev_url is None  # the current month: nothing before
    assert month.next_url == f"{PAGE}?week=2027-01-01"
    assert month.title == "December 2026"
    assert len(month.weekdays) == 7
