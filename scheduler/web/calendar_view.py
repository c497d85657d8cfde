"""The candidate's calendar as data: what the pages show, built without HTTP.

The week of slots, the month around it, the time-zone menu, the reader's choices and the
deadline as people say it: pure functions of the slots, the clock's `now`, the reader and a
`link` function that makes a URL (the handlers in scheduler/web/pages.py give one bound to
the request). Tested directly in tests/scheduler/test_calendar_view.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from babel.dates import format_date, format_interval, get_day_names

from mailer.compose import Translator
from scheduler.bookings import SlotView
from scheduler.i18n import LOCALES, first_weekday, long_datetime, upfirst, zone_label
from scheduler.models import Booking

# The candidate's pages, by route name (scheduler/web/pages.py registers them).
PAGE = "candidate.page"
CONFIRM = "candidate.confirm"
BOOK = "candidate.book"
RESCHEDULE = "candidate.reschedule"
CANCEL = "candidate.cancel"

# A URL on the candidate's link: (route name, reader, **query) -> URL keeping the reader's
# explicit choices.
LinkTo = Callable[..., str]

_ZONES = frozenset(available_timezones()) | {"UTC"}
# Offered in the time-zone menu besides the reader's current zone: where CLOE candidates
# usually are (France and its overseas departments, francophone Africa, Europe, the Americas).
COMMON_ZONES = (
    "Europe/Paris",
    "Europe/London",
    "Europe/Brussels",
    "Europe/Zurich",
    "Europe/Berlin",
    "Europe/Madrid",
    "Europe/Lisbon",
    "Africa/Casablanca",
    "Africa/Algiers",
    "Africa/Tunis",
    "Africa/Dakar",
    "Africa/Abidjan",
    "Indian/Reunion",
    "Indian/Mayotte",
    "America/Guadeloupe",
    "America/Martinique",
    "America/Cayenne",
    "America/Toronto",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Pacific/Noumea",
    "Pacific/Tahiti",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Sydney",
    "UTC",
)
# Autonyms: a language is offered in its own name, whatever the page's language.
LANGUAGE_NAMES = {"fr": "Français", "en": "English"}

_MAX_PARAM = 64


@dataclass(frozen=True)
class Reader:
    """Who reads the page and how: language, time zone, and what the URL chose.

    Only explicit choices travel in the links the pages generate, so the candidate's own
    settings stay the default and the browser-zone offer still appears when nothing was chosen.
    """

    locale: str
    tz: str
    carry: dict[str, str] = field(default_factory=dict)
    rejected_tz: str | None = None


def read_choices(params: Mapping[str, Any], default_locale: str, default_tz: str) -> Reader:
    carry: dict[str, str] = {}
    locale = default_locale if default_locale in LOCALES else LOCALES[0]
    lang = _text(params.get("lang")).lower()
    if lang in LOCALES:
        locale = lang
        carry["lang"] = lang
    tz = default_tz if default_tz in _ZONES else "UTC"
    wanted = _text(params.get("tz"))
    rejected = None
    if wanted in _ZONES:
        tz = wanted
        carry["tz"] = wanted
    elif wanted:
        rejected = wanted[:_MAX_PARAM]
    return Reader(locale, tz, carry, rejected)


def _text(value: object) -> str:
    """A form or query value as text; file uploads and absurd lengths count as absent."""
    if not isinstance(value, str) or len(value) > 4 * _MAX_PARAM:
        return ""
    return value.strip()


def parse_start(value: object) -> datetime | None:
    """An ISO instant with an offset, as UTC; None when absent or malformed."""
    text = _text(value)
    if not text:
        return None
    # A "+01:00" offset typed into a URL by hand arrives as " 01:00".
    text = text.replace(" ", "+")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(UTC)


def parse_day(value: object) -> date | None:
    try:
        return date.fromisoformat(_text(value))
    except ValueError:
        return None


def iso_utc(moment: datetime) -> str:
    """The slot's start as it travels in links: UTC with "Z", so no "+" needs escaping."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Deadline:
    text: str
    end_of_day: bool


def deadline(book_by: datetime | None, tz: str, locale: str) -> Deadline | None:
    """The book-by instant as people say it: a date given by the organisation is stored as
    the following local midnight, which reads better as "the end of" the day it names."""
    if book_by is None:
        return None
    local = book_by.astimezone(ZoneInfo(tz))
    if local.time() == time(0):
        day = local.date() - timedelta(days=1)
        return Deadline(format_date(day, format="full", locale=locale), True)
    return Deadline(long_datetime(book_by, tz, locale), False)


def week_start(day: date, first: int) -> date:
    """The first day (0 = Monday) of the week holding `day`, in the locale's convention."""
    return day - timedelta(days=(day.weekday() - first) % 7)


def _utc_offset(tz: str, at: datetime) -> timedelta:
    return at.astimezone(ZoneInfo(tz)).utcoffset() or timedelta(0)


@dataclass(frozen=True)
class ZoneOption:
    value: str
    label: str
    selected: bool


def zone_options(
    current: str, locale: str, at: datetime, translations: Translator
) -> list[ZoneOption]:
    """The menu's zones, west to east, each named by its city with its offset at `at`."""
    zones = set(COMMON_ZONES) | {current}
    ordered = sorted(zones, key=lambda tz: (_utc_offset(tz, at), tz))
    return [
        ZoneOption(tz, upfirst(zone_label(tz, locale, at, translations)), tz == current)
        for tz in ordered
    ]


# --- view data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SlotLink:
    start: datetime
    end: datetime
    url: str | None  # None for the booking being changed: shown in place, not offered
    current: bool = False


@dataclass(frozen=True)
class DayView:
    day: date
    label: str
    slots: list[SlotLink]
    today: bool


@dataclass(frozen=True)
class MonthCell:
    day: date
    label: str
    count: int
    url: str | None
    today: bool
    in_week: bool


@dataclass(frozen=True)
class MonthView:
    title: str
    weekdays: list[tuple[str, str]]  # (abbreviated, full) names, in the locale's week order
    rows: list[list[MonthCell | None]]
    prev_url: str | None
    next_url: str | None


def month_view(
    link: LinkTo,
    reader: Reader,
    anchor: date,
    shown_week: date,
    counts: Mapping[date, int],
    today: date,
    last_day: date,
) -> MonthView:
    """The month around `anchor` as a grid; only days holding slots link to their week, so a
    tap never lands on an empty week, and months outside today..horizon are not offered."""
    first = first_weekday(reader.locale)
    month_first = anchor.replace(day=1)
    next_month = (month_first + timedelta(days=32)).replace(day=1)
    prev_month = (month_first - timedelta(days=1)).replace(day=1)
    rows: list[list[MonthCell | None]] = []
    cursor = week_start(month_first, first)
    while cursor < next_month:
        row: list[MonthCell | None] = []
        for offset in range(7):
            day = cursor + timedelta(days=offset)
            if day.month != month_first.month:
                row.append(None)
                continue
            count = counts.get(day, 0)
            row.append(
                MonthCell(
                    day,
                    format_date(day, format="full", locale=reader.locale),
                    count,
                    link(PAGE, reader, week=day.isoformat()) if count else None,
                    day == today,
                    shown_week <= day < shown_week + timedelta(days=7),
                )
            )
        rows.append(row)
        cursor += timedelta(days=7)
    short = get_day_names("abbreviated", locale=reader.locale)
    full = get_day_names("wide", locale=reader.locale)
    order = [(first + i) % 7 for i in range(7)]
    return MonthView(
        title=format_date(month_first, "LLLL y", locale=reader.locale),
        weekdays=[(short[i], full[i]) for i in order],
        rows=rows,
        prev_url=link(PAGE, reader, week=prev_month.isoformat()) if month_first > today else None,
        next_url=link(PAGE, reader, week=next_month.isoformat())
        if next_month <= last_day
        else None,
    )


def calendar_context(
    link: LinkTo,
    reader: Reader,
    slots: list[SlotView],
    now: datetime,
    *,
    horizon: timedelta,
    week: object,
    offer_zone: bool,
    translations: Translator,
    current: Booking | None = None,
) -> dict[str, Any]:
    """The week around `week` (the `?week=` parameter; today without one) and its month,
    from one list of slots, with every link built by `link`.

    When changing a booking, `current` is that booking: its time appears in its day, marked as
    the current one, among the slots it could move to (which never include it). `offer_zone`:
    the reader chose no zone, so the page may offer the browser's.
    """
    zone = ZoneInfo(reader.tz)
    today = now.astimezone(zone).date()
    last_day = (now + horizon).astimezone(zone).date()
    chosen = parse_day(week)
    anchor = chosen or today
    start = week_start(anchor, first_weekday(reader.locale))
    end = start + timedelta(days=7)
    zone_at = max(now, datetime.combine(start, time(12), zone))

    by_day: dict[date, list[SlotLink]] = defaultdict(list)
    for slot in slots:
        by_day[slot.start.astimezone(zone).date()].append(
            SlotLink(slot.start, slot.end, link(CONFIRM, reader, start=iso_utc(slot.start)))
        )
    counts = {day: len(links) for day, links in by_day.items()}
    if current is not None:
        current_day = by_day[current.start_at.astimezone(zone).date()]
        current_day.append(SlotLink(current.start_at, current.end_at, None, current=True))
        current_day.sort(key=lambda link: link.start)
    days = [
        DayView(
            day,
            format_date(day, format="full", locale=reader.locale),
            by_day.get(day, []),
            day == today,
        )
        for day in (start + timedelta(days=i) for i in range(7))
        # Days already past hold no slot: listing them as empty pushed the first green slot
        # below the fold on a phone, so this week's view starts at today.
        if day >= today or day in by_day
    ]
    week_slots = sum(1 for d in days for s in d.slots if not s.current)
    # When the week shown is empty, point at the nearest week that is not.
    nearest = None
    if not week_slots and slots:
        later = [s for s in slots if s.start.astimezone(zone).date() >= end]
        pick = later[0] if later else slots[-1]
        nearest = {
            "start": pick.start,
            "url": link(PAGE, reader, week=pick.start.astimezone(zone).date().isoformat()),
        }
    return {
        "week_label": format_interval(
            days[0].day if days else start, end - timedelta(days=1), "yMMMd", locale=reader.locale
        ),
        "days": days,
        "week_slots": week_slots,
        "nearest": nearest,
        "prev_week_url": link(PAGE, reader, week=(start - timedelta(days=7)).isoformat())
        if start > today
        else None,
        "next_week_url": link(PAGE, reader, week=end.isoformat()) if end <= last_day else None,
        # A chosen day shows its own month; the default week shows the month most of it is in.
        "month": month_view(
            link, reader, chosen or start + timedelta(days=3), start, counts, today, last_day
        ),
        "zone_options": zone_options(reader.tz, reader.locale, zone_at, translations),
        # Offsets as they are on the first day shown, not today: the week may be after a
        # change of daylight saving time.
        "zone_at": zone_at,
        "week_param": chosen.isoformat() if chosen else None,
        "page_url": link(PAGE, Reader(reader.locale, reader.tz)),
        "offer_zone": offer_zone,
    }
