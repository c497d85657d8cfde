"""A candidate's data on request: the export holds each kind of data Viva keeps about them,
and after erasure nothing in the database (every table, every column) or the data folder
names them, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import email
import email.policy
import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from rooms.models import (
    RoomState,
    record_join,
    recording_finished,
    recording_started,
    save_state,
)
from scheduler import assessments, keys
from scheduler.history import Actor
from scheduler.migrate import target_metadata
from scheduler.scheme import DEFAULT, Marks
from tests.conftest import Org, token_of
from tests.rooms.room_support import consent

NAME = "Zoltan Quixworth"
EMAIL = "zoltan.quixworth@example.org"


def _texts(value: Any) -> list[str]:
    """What a stored value says, as text: bytes both as stored and, for an e-mail, each of
    its parts decoded (base64 and quoted-printable hide a name from a plain byte search)."""
    if value is None:
        return []
    if isinstance(value, bytes):
        found = [value.decode("utf-8", "replace")]
        parsed = email.message_from_bytes(value, policy=email.policy.default)
        found += [str(v) for _, v in parsed.items()]
        for part in parsed.walk():
            if not part.is_multipart():
                content = part.get_content()
                found.append(
                    content.decode("utf-8", "replace")
                    if isinstance(content, bytes)
                    else str(content)
                )
        return found
    if isinstance(value, dict | list):
        return [json.dumps(value, ensure_ascii=False)]
    return [str(value)]


async def _database_hits(app: Any, needles: list[str]) -> set[tuple[str, str, str]]:
    """(table, column, needle) for every needle found in any column of any table."""
    hits = set()
    async with app[keys.DB].read() as session:
        for metadata in target_metadata():
            for table in metadata.sorted_tables:
                for row in (await session.execute(select(table))).mappings():
                    for column, value in row.items():
                        for text in _texts(value):
                            for needle in needles:
                                if needle.lower() in text.lower():
                                    hits.add((table.name, column, needle))
    return hits


def _folder_hits(folder: Path, needles: list[str]) -> set[tuple[str, str]]:
    hits = set()
    for path in folder.rglob("*"):
        if path.is_file():
            content = path.read_bytes().decode("utf-8", "replace").lower()
            hits |= {(str(path), n) for n in needles if n.lower() in content}
    return hits


async def _interviewed(
    org: Org, clock: Any, *, finished: bool = True, name: str = NAME, email: str = EMAIL
) -> dict[str, Any]:
    """A candidate with one of everything: a booking, its history and mails, attendance,
    their consent to recording, the evaluator's notes and a recording on disk (which
    names them, as a file's metadata may)."""
    app = org.client.app
    await org.make_evaluator()
    cand = await org.make_candidate(name=name, email=email)
    token = token_of(cand["link"])
    slots = await (await org.client.get(f"/c/{token}/slots")).json()
    booked = await org.client.post(
        f"/c/{token}/booking", json={"start": slots["slots"][0]["start"]}
    )
    assert booked.status == 201, await booked.text()
    booking_id = uuid.UUID((await booked.json())["id"])
    detail = await org.ok("GET", f"/bookings/{booking_id}")
    room_token = token_of(detail["rooms"]["candidate"])
    await consent(org.client, room_token)
    folder = app[keys.SETTINGS].recordings_path
    (folder / str(booking_id)).mkdir(parents=True)
    (folder / str(booking_id) / "take.mkv").write_bytes(f"title={name}".encode())
    async with app[keys.DB].write() as session:
        await record_join(session, booking_id, "candidate", clock.now())
        await save_state(
            session, RoomState(booking_id, notes=f"{name} spoke well"), now=clock.now()
        )
        recording = await recording_started(
            session, booking_id, f"{booking_id}/take.mkv", clock.now()
        )
        if finished:
            await recording_finished(session, recording, clock.now(), 20)
        # The evaluator's assessment, whose comment (and the history's copies) names them.
        levels = {code: "B2" for code in DEFAULT.criterion_codes}
        await assessments.submit(
            session,
            booking_id,
            Marks(levels, "B2", f"{NAME} argued well"),
            actor=Actor("evaluator", "Évelyne"),
            now=clock.now(),
        )
        await assessments.amend(
            session,
            booking_id,
            Marks(levels, "C1", f"{NAME} argued very well"),
            reason="Second marking.",
            actor=Actor("organisation", "jury"),
            now=clock.now(),
        )
    return {"id": cand["id"], "booking": str(booking_id), "tokens": [token, room_token]}


async def test_an_export_holds_each_kind_of_data(make_org, clock) -> None:
    org = await make_org()
    got = await _interviewed(org, clock)

    export = await org.ok("GET", f"/candidates/{got['id']}/export")

    assert export["profile"]["name"] == NAME and export["profile"]["email"] == EMAIL
    [booking] = export["bookings"]
    assert booking["id"] == got["booking"]
    first = booking["history"][0]
    assert (first["actor"], first["actor_name"], first["action"]) == ("candidate", NAME, "booked")
    assert booking["messages"], "the confirmation sent to the candidate"
    mail = booking["messages"][0]
    headers = dict(mail["headers"])
    assert EMAIL in headers["To"] and headers["Subject"]
    assert any(p["content_type"] == "text/plain" and p["text"].strip() for p in mail["parts"])
    assert booking["room"]["attendance"][0]["role"] == "candidate"
    [consented] = booking["room"]["consents"]
    assert (consented["role"], consented["name"]) == ("candidate", NAME)
    [recording] = booking["room"]["recordings"]
    assert (
        recording["download"] == f"/api/v1/bookings/{got['booking']}/recordings/{recording['id']}"
    )
    assert booking["evaluator_notes"] == f"{NAME} spoke well"
    assert booking["assessment"]["comment"] == f"{NAME} argued very well"
    assert booking["assessment"]["overall_level"] == "C1"
    assert booking["assessment"]["submitted_at"] is not None
    # The link works with the API key: the file itself is the recording.
    resp = await org.client.get(recording["download"], headers=org.headers)
    assert resp.status == 200 and await resp.read() == f"title={NAME}".encode()


async def test_after_erasure_nothing_names_the_candidate(make_org, clock) -> None:
    org = await make_org()
    app = org.client.app
    got = await _interviewed(org, clock)
    needles = [NAME, *NAME.split(), EMAIL, *got["tokens"]]
    data = app[keys.SETTINGS].data_path
    # The searches find what is there: before erasure, each kind of needle is found.
    before = {needle for _, _, needle in await _database_hits(app, needles)}
    assert {NAME, EMAIL, got["tokens"][0]} <= before, before
    assert _folder_hits(data, needles)

    # An interview ahead: erasure waits for its cancellation (whose mails are owed).
    status, problem = await org.call("DELETE", f"/candidates/{got['id']}", json={"mode": "erase"})
    assert status == 409 and problem["status"] == 409
    await org.ok(
        "POST",
        f"/bookings/{got['booking']}/force-majeure",
        json={"action": "cancel", "reason": f"{NAME} asked us to erase everything."},
    )
    status, problem = await org.call("DELETE", f"/candidates/{got['id']}", json={"mode": "gone"})
    assert status == 422

    erased = await org.ok("DELETE", f"/candidates/{got['id']}", json={"mode": "erase"})

    assert erased["bookings"] == 1 and erased["recordings"] == 1 and erased["messages"] >= 2
    assert await _database_hits(app, needles) == set()
    assert _folder_hits(data, needles) == set()
    # The booking stays, anonymous, with an erasure event that names no one.
    booking = await org.ok("GET", f"/bookings/{got['booking']}")
    assert booking["status"] == "cancelled" and booking["room"]["recordings"] == []
    events = (await org.ok("GET", f"/bookings/{got['booking']}/history"))["events"]
    assert events[-1]["action"] == "candidate_erased" and events[-1]["reason"] is None
    # The candidate is gone from the API, and their links are dead.
    status, problem = await org.call("GET", f"/candidates/{got['id']}")
    assert status == 404
    assert got["id"] not in {c["id"] for c in (await org.ok("GET", "/candidates"))["candidates"]}
    assert (await org.client.get(f"/c/{got['tokens'][0]}/slots")).status == 404
    # An erased message has nothing left to send again.
    message_id = booking["messages"][0]["id"]
    status, problem = await org.call(
        "POST", f"/bookings/{got['booking']}/messages/{message_id}/resend"
    )
    assert status == 409 and "erased" in problem["detail"]


async def test_erasure_is_refused_while_a_recording_is_being_written(make_org, clock) -> None:
    org = await make_org()
    got = await _interviewed(org, clock, finished=False)
    await org.ok(
        "POST",
        f"/bookings/{got['booking']}/force-majeure",
        json={"action": "cancel", "reason": "The evaluator is ill."},
    )
    # The booking's room may still open (its time has not come and gone) and the recording
    # has no end: another process may be writing it.
    status, problem = await org.call("DELETE", f"/candidates/{got['id']}", json={"mode": "erase"})
    assert status == 409 and "recording" in problem["detail"]
    end = datetime.fromisoformat((await org.ok("GET", f"/bookings/{got['booking']}"))["end"])
    clock.set(end + timedelta(days=1))
    await org.ok("DELETE", f"/candidates/{got['id']}", json={"mode": "erase"})


async def test_after_erasure_and_the_next_checkpoint_the_sqlite_files_hold_no_trace(
    make_org, clock
) -> None:
    """The tables forget at once; the bytes on disk too: SQLite zeroes what is deleted
    (secure_delete) and the checkpoint the retention run forces empties the write-ahead
    log, which still holds the pages from before the erasure."""
    org = await make_org()
    app = org.client.app
    db = app[keys.DB]
    if not db.sqlite:
        pytest.skip("SQLite's files; PostgreSQL's dead rows go with VACUUM")
    path = Path(app[keys.SETTINGS].database.url.split("///", 1)[1])

    def on_disk() -> set[str]:
        found = set()
        for file in (path, path.with_name(path.name + "-wal")):
            if file.exists():
                content = file.read_bytes()
                found |= {n for n in (NAME, EMAIL) if n.encode() in content}
        return found

    got = await _interviewed(org, clock)
    await org.ok(
        "POST",
        f"/bookings/{got['booking']}/force-majeure",
        json={"action": "cancel", "reason": "Asked to be forgotten."},
    )
    assert on_disk() == {NAME, EMAIL}, "the search finds what is there"
    await org.ok("DELETE", f"/candidates/{got['id']}", json={"mode": "erase"})

    assert await db.checkpoint(), "no reader holds the log here"
    assert on_disk() == set()
