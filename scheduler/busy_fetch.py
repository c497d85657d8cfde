"""Reading busy times from an evaluator's own calendar: a CalDAV collection or an ICS URL.

Only the fetch and the reading of what came back live here; keeping the result and its
schedule is scheduler.external_calendars. Everything is bounded: one total timeout per
fetch, a cap on the bytes read, no redirects followed, and (unless allowed) no connection
to loopback, link-local or private addresses, so an API caller cannot make Viva probe its
own network.

CalDAV: a time-range `calendar-query` REPORT first, its events expanded here: that is the
only way to read all-day events as whole days in the *evaluator's* zone and floating times
as theirs (a server's `free-busy-query` places them in its own idea of the zone, UTC for
some). Where the server refuses it (a calendar shared as free-busy only answers 403), the
`free-busy-query` REPORT. Recurrences are expanded with recurring-ical-events (RRULE,
RDATE, EXDATE and moved occurrences); transparent and cancelled events are not busy.
"""

from __future__ import annotations

import ipaddress
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import aiohttp
import recurring_ical_events
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from icalendar import Calendar
from yarl import URL

from scheduler.addresses import is_public

__all__ = ["FetchError", "Limits", "Source", "busy_from_ics", "client", "fetch_busy"]

Interval = tuple[datetime, datetime]
_DAV = "DAV:"
_CALDAV = "urn:ietf:params:xml:ns:caldav"
_STAMP = "%Y%m%dT%H%M%SZ"
# Answers that mean "this server (or this share) does not do calendar-query": try free-busy.
_NOT_SUPPORTED = {400, 403, 405, 415, 422, 501}


class FetchError(Exception):
    """A fetch that gave no usable answer; the message is shown to the organisation."""


@dataclass(frozen=True)
class Source:
    kind: Literal["caldav", "ics"]
    url: str
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class Limits:
    timeout: float = 10.0
    max_bytes: int = 5_000_000
    allow_private: bool = False


class _PublicOnly(AbstractResolver):
    """A resolver that refuses names resolving to loopback, link-local or private addresses.

    Checked on the addresses actually connected to, not on a separate look-up before the
    request, so a name that changes its answer in between gains nothing.
    """

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        for entry in found:
            if not is_public(entry["host"]):
                raise FetchError(f"{host} resolves to a private address, which is not allowed")
        return found

    async def close(self) -> None:
        await self._inner.close()


def _literal_host_allowed(url: str, limits: Limits) -> None:
    """aiohttp does not resolve an address literal: check it here."""
    host = URL(url).host or ""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    if not limits.allow_private and not is_public(host.strip("[]")):
        raise FetchError(f"{host} is a private address, which is not allowed")


async def _read(response: aiohttp.ClientResponse, limit: int) -> bytes:
    declared = response.content_length
    if declared is not None and declared > limit:
        raise FetchError(f"the answer is larger than {limit} bytes")
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise FetchError(f"the answer is larger than {limit} bytes")
    return bytes(body)


def client(source: Source, limits: Limits) -> aiohttp.ClientSession:
    """An HTTP client for one calendar: its credentials, the bounds, the address check."""
    _literal_host_allowed(source.url, limits)
    headers = (
        {"Authorization": aiohttp.encode_basic_auth(source.username, source.password or "")}
        if source.username
        else {}
    )
    connector = aiohttp.TCPConnector(
        resolver=None if limits.allow_private else _PublicOnly(), limit=2
    )
    timeout = aiohttp.ClientTimeout(total=limits.timeout)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers)


async def fetch_busy(
    source: Source,
    start: datetime,
    end: datetime,
    tz: ZoneInfo,
    limits: Limits,
    *,
    method: Literal["auto", "calendar-query", "free-busy-query"] = "auto",
    ignore: frozenset[str] = frozenset(),
) -> list[Interval]:
    """Busy intervals (UTC, sorted, merged) of `source` overlapping [start, end), clipped.

    `tz` is the evaluator's zone: all-day events and floating times are read in it.
    `method` forces one CalDAV REPORT (tests of each path); "auto" is the rule above.
    `ignore`: UIDs whose events are not busy times (Viva's own interviews, which an
    evaluator's calendar may hold from the invitations; a free-busy answer names none).
    """
    try:
        async with client(source, limits) as http:
            if source.kind == "ics":
                body = await _get(http, source.url, limits)
                return _clip(busy_from_ics([body], start, end, tz, ignore), start, end)
            if method != "free-busy-query":
                status, body = await _report(http, source.url, _calendar_query(start, end), limits)
                if status in (200, 207):
                    found = busy_from_ics(_calendar_data(body), start, end, tz, ignore)
                    return _clip(found, start, end)
                if method == "calendar-query" or status not in _NOT_SUPPORTED:
                    raise FetchError(status_error("calendar-query", status))
            status, body = await _report(http, source.url, _free_busy_query(start, end), limits)
            if status != 200:
                raise FetchError(status_error("free-busy-query", status))
            return _clip(_busy_from_freebusy(body), start, end)
    except FetchError:
        raise
    except TimeoutError as exc:
        raise FetchError(f"no answer within {limits.timeout:g} s") from exc
    except aiohttp.ClientError as exc:
        raise FetchError(f"could not reach the server: {exc}") from exc
    except (ValueError, ET.ParseError) as exc:
        raise FetchError(f"could not read the calendar: {exc}") from exc


def status_error(what: str, status: int) -> str:
    if status in (401, 403):
        return f"the server refused the credentials ({what}: HTTP {status})"
    if 300 <= status < 400:
        return f"the server redirects ({what}: HTTP {status}); give the final URL"
    return f"the server answered HTTP {status} to {what}"


async def _get(http: aiohttp.ClientSession, url: str, limits: Limits) -> bytes:
    async with http.get(url, allow_redirects=False, headers={"Accept": "text/calendar"}) as resp:
        if resp.status != 200:
            raise FetchError(status_error("GET", resp.status))
        return await _read(resp, limits.max_bytes)


async def _report(
    http: aiohttp.ClientSession, url: str, body: bytes, limits: Limits
) -> tuple[int, bytes]:
    headers = {"Depth": "1", "Content-Type": "application/xml; charset=utf-8"}
    async with http.request(
        "REPORT", url, data=body, headers=headers, allow_redirects=False
    ) as resp:
        if resp.status not in (200, 207):
            return resp.status, b""
        return resp.status, await _read(resp, limits.max_bytes)


def _range(start: datetime, end: datetime) -> dict[str, str]:
    return {
        "start": start.astimezone(UTC).strftime(_STAMP),
        "end": end.astimezone(UTC).strftime(_STAMP),
    }


def _calendar_query(start: datetime, end: datetime) -> bytes:
    ET.register_namespace("D", _DAV)
    ET.register_namespace("C", _CALDAV)
    query = ET.Element(f"{{{_CALDAV}}}calendar-query")
    prop = ET.SubElement(query, f"{{{_DAV}}}prop")
    ET.SubElement(prop, f"{{{_CALDAV}}}calendar-data")
    calendar = ET.SubElement(
        ET.SubElement(query, f"{{{_CALDAV}}}filter"), f"{{{_CALDAV}}}comp-filter", name="VCALENDAR"
    )
    event = ET.SubElement(calendar, f"{{{_CALDAV}}}comp-filter", name="VEVENT")
    ET.SubElement(event, f"{{{_CALDAV}}}time-range", _range(start, end))
    text: bytes = ET.tostring(query, xml_declaration=True, encoding="utf-8")
    return text


def _free_busy_query(start: datetime, end: datetime) -> bytes:
    query = ET.Element(f"{{{_CALDAV}}}free-busy-query")
    ET.SubElement(query, f"{{{_CALDAV}}}time-range", _range(start, end))
    text: bytes = ET.tostring(query, xml_declaration=True, encoding="utf-8")
    return text


def _calendar_data(body: bytes) -> list[bytes]:
    """The calendar objects of a calendar-query's multistatus answer."""
    root = ET.fromstring(body)
    return [
        (element.text or "").encode()
        for element in root.iter(f"{{{_CALDAV}}}calendar-data")
        if element.text and element.text.strip()
    ]


def _busy_from_freebusy(body: bytes) -> list[Interval]:
    found: list[Interval] = []
    for component in Calendar.from_ical(body).walk("VFREEBUSY"):
        values = component.get("FREEBUSY", [])
        for value in values if isinstance(values, list) else [values]:
            if str(value.params.get("FBTYPE", "BUSY")).upper() == "FREE":
                continue
            begin, until = value.dt
            finish = begin + until if isinstance(until, timedelta) else until
            found.append((_utc(begin, UTC), _utc(finish, UTC)))
    return found


def _utc(value: datetime, tz: ZoneInfo | Any) -> datetime:
    """An instant in UTC; a floating time (no zone) is read in `tz`."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(UTC)


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tz).astimezone(UTC)


def busy_from_ics(
    calendars: Iterable[bytes],
    start: datetime,
    end: datetime,
    tz: ZoneInfo,
    ignore: frozenset[str] = frozenset(),
) -> list[Interval]:
    """The busy occurrences of the events of some iCalendar texts over [start, end).

    An all-day event covers its days from midnight to midnight in `tz`; transparent
    (TRANSP:TRANSPARENT) and cancelled events are free time.
    """
    # Widened by a day each side: all-day events are asked for in local dates.
    low = start.astimezone(tz) - timedelta(days=1)
    high = end.astimezone(tz) + timedelta(days=1)
    found: list[Interval] = []
    for text in calendars:
        calendar = Calendar.from_ical(text)
        for event in recurring_ical_events.of(calendar, components=["VEVENT"]).between(low, high):
            if str(event.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
                continue
            if str(event.get("STATUS", "")).upper() == "CANCELLED":
                continue
            if str(event.get("UID", "")) in ignore:
                continue
            begin = event.decoded("DTSTART")
            if "DTEND" in event:
                finish = event.decoded("DTEND")
            elif "DURATION" in event:
                finish = begin + event.decoded("DURATION")
            else:  # RFC 5545: a day for a date, nothing for a date-time
                finish = begin + timedelta(days=1) if not isinstance(begin, datetime) else begin
            if not isinstance(begin, datetime):
                interval = (_midnight(begin, tz), _midnight(finish, tz))
            else:
                interval = (_utc(begin, tz), _utc(finish, tz))
            if interval[1] > interval[0]:
                found.append(interval)
    return found


def _clip(intervals: Iterable[Interval], start: datetime, end: datetime) -> list[Interval]:
    """Sorted, overlapping ones merged, cut to [start, end): what is stored."""
    merged: list[Interval] = []
    for begin, finish in sorted(intervals):
        begin, finish = max(begin, start), min(finish, end)
        if finish <= begin:
            continue
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], finish))
        else:
            merged.append((begin, finish))
    return merged
