"""The outbox against a real SMTP server (aiosmtpd) and a real database file.

Time is moved with the injected clock, never slept: backoff and leases are checked by
advancing it past the due instants.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import aiosmtplib
import icalendar
import jinja2
import pytest
import vobject
from babel.support import Translations
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from mailer.compose import BookingMail, Organisation, Reader, booking_confirmed
from mailer.heartbeat import Claimed
from mailer.message import build_message
from mailer.models import outbox_messages
from mailer.outbox import (
    Outbox,
    enqueue,
    enqueue_content,
    get_message,
    list_messages,
)
from mailer.settings import SmtpSettings
from tests.mailer.mailer_support import MovableClock, SmtpServer, create_schema
from tests.support.polling import eventually

ORG_ID = uuid.UUID("0f1e2d3c-4b5a-4697-8a1b-2c3d4e5f6071")
OTHER_ORG_ID = uuid.UUID("9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d")
BOOKING_ID = uuid.UUID("6c4f1e0a-8d0b-4f43-a2a8-0d6b9d1f5e21")


def simple_builder(
    to_address: str, *, to_name: str = "Zoë Martin", subject: str = "Hello"
) -> Callable[[str], EmailMessage]:
    def build(message_id: str) -> EmailMessage:
        return build_message(
            from_name="CCI Paris",
            from_address="viva@viva.example.test",
            to_name=to_name,
            to_address=to_address,
            subject=subject,
            text=f"Hello {to_address}\n",
            html=f"<p>Hello {to_address}</p>",
            calendar=None,
            method=None,
            message_id=message_id,
            date=datetime(2026, 11, 2, 8, 0, tzinfo=UTC),
        )

    return build


async def enqueue_simple(
    sessions: async_sessionmaker[AsyncSession],
    clock: MovableClock,
    recipients: list[str],
    *,
    organisation_id: uuid.UUID = ORG_ID,
) -> list[uuid.UUID]:
    """Enqueue one message per recipient and commit, as a booking transaction would."""
    ids = []
    async with sessions() as session, session.begin():
        for recipient in recipients:
            ids.append(
                await enqueue(
                    session,
                    build=simple_builder(recipient),
                    domain="viva.example.test",
                    organisation_id=organisation_id,
                    booking_id=BOOKING_ID,
                    kind="booking_confirmed",
                    now=clock.now(),
                )
            )
    return ids


async def rows(sessions: async_sessionmaker[AsyncSession]) -> dict[uuid.UUID, dict[str, object]]:
    async with sessions() as session:
        result = await session.execute(select(outbox_messages))
        return {row["id"]: dict(row) for row in result.mappings()}


def received_ids(server: SmtpServer) -> list[str]:
    return [str(item.message["Message-ID"]) for item in server.received]


# --- the happy path, end to end -----------------------------------------------------------


async def test_confirmation_reaches_the_server_as_a_complete_invitation(
    mail_sessions: async_sessionmaker[AsyncSession],
    smtp_settings: SmtpSettings,
    smtp_server: SmtpServer,
    clock: MovableClock,
    mail_env: jinja2.Environment,
    fr: Translations,
) -> None:
    start = datetime(2026, 12, 3, 13, 0, tzinfo=UTC)
    mail = BookingMail(
        booking_id=BOOKING_ID,
        sequence=0,
        start=start,
        end=start + timedelta(minutes=20),
        exam_language="en",
        candidate_name="Zoë Martin",
        organisation=Organisation("CCI Paris", "contact@cci.example.test"),
        reader=Reader("Zoë Martin", "zoe@example.test", "Europe/Paris"),
        role="candidate",
        room_url="https://viva.example.test/r/cand-token",
        manage_url="https://viva.example.test/b/manage-token",
        manage_until=start - timedelta(hours=24),
    )
    content = booking_confirmed(mail_env, fr, "fr", mail, now=clock.now())
    async with mail_sessions() as session, session.begin():
        row_id = await enqueue_content(
            session,
            content=content,
            settings=smtp_settings,
            organisation_id=ORG_ID,
            booking_id=BOOKING_ID,
            now=clock.now(),
        )

    delivered = await Outbox(mail_sessions, smtp_settings, clock).deliver_due()

    assert delivered == 1
    (received,) = smtp_server.received
    assert received.mail_from == "viva@viva.example.test"
    assert received.rcpt_tos == ["zoe@example.test"]
    message = received.message
    assert message["Message-ID"] == f"<{row_id}@viva.example.test>"
    assert str(message["From"]) == "CCI Paris <viva@viva.example.test>"
    assert str(message["To"]) == "Zoë Martin <zoe@example.test>"
    assert str(message["Reply-To"]) == "contact@cci.example.test"
    assert (
        message["Subject"] == "Votre entretien oral du jeudi 3 décembre 2026 à 14:00 est confirmé"
    )

    assert message.get_content_type() == "multipart/mixed"
    alternative, attachment = message.iter_parts()
    assert [p.get_content_type() for p in alternative.iter_parts()] == [
        "text/plain",
        "text/html",
        "text/calendar",
    ]
    plain, html, inline_calendar = alternative.iter_parts()
    assert "jeudi 3 décembre 2026 à 14:00 (heure de Paris)" in plain.get_content().replace(
        "\u00a0", " "
    )
    assert "https://viva.example.test/r/cand-token" in html.get_content()
    assert inline_calendar.get_param("method") == "REQUEST"
    assert inline_calendar.get_content_charset() == "utf-8"
    assert attachment.get_filename() == "invite.ics"
    ics = inline_calendar.get_payload(decode=True)
    assert attachment.get_payload(decode=True) == ics

    calendar = icalendar.Calendar.from_ical(ics)
    assert calendar["METHOD"] == "REQUEST"
    (event,) = calendar.walk("VEVENT")
    assert event["UID"] == str(BOOKING_ID)
    assert event["SEQUENCE"] == 0
    assert event.decoded("DTSTART").astimezone(UTC) == start
    assert event.decoded("DTSTART").replace(tzinfo=None) == datetime(2026, 12, 3, 14, 0)
    assert event["DTSTART"].params["TZID"] == "Europe/Paris"
    assert str(event["ORGANIZER"]) == "mailto:contact@cci.example.test"
    assert str(event["ATTENDEE"]) == "mailto:zoe@example.test"

    vevent = vobject.readOne(ics.decode("utf-8")).vevent
    assert vevent.uid.value == str(BOOKING_ID)
    assert vevent.sequence.value == "0"
    assert vevent.dtstart.value.astimezone(UTC) == start
    assert vevent.dtstart.value.astimezone(ZoneInfo("Europe/Paris")).hour == 14
    assert vevent.organizer.value == "mailto:contact@cci.example.test"
    assert [a.value for a in vevent.attendee_list] == ["mailto:zoe@example.test"]

    row = (await rows(mail_sessions))[row_id]
    assert row["status"] == "sent"
    assert row["attempts"] == 1
    assert row["sent_at"] == clock.now()
    assert row["last_error"] is None
    assert row["recipient"] == "zoe@example.test"
    assert row["kind"] == "booking_confirmed"


async def test_a_batch_shares_one_connection(
    mail_sessions: async_sessionmaker[AsyncSession],
    smtp_settings: SmtpSettings,
    smtp_server: SmtpServer,
    clock: MovableClock,
) -> None:
    await enqueue_simple(
        mail_sessions, clock, ["a@example.test", "b@example.test", "c@example.test"]
    )

    assert await Outbox(mail_sessions, smtp_settings, clock).deliver_due() == 3

    assert sorted(r.rcpt_tos[0] for r in smtp_server.received) == [
        "a@example.test",
        "b@example.test",
        "c@example.test",
    ]
    assert len({r.peer for r in smtp_server.received}) == 1
    assert len(smtp_server.handler.connections) == 1


async def test_sent_messages_are_logged_with_message_id_never_the_recipient(
    mail_sessions: async_sessionmaker[AsyncSession],
    smtp_settings: SmtpSettings,
    smtp_server: SmtpServer,
    clock: MovableClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (row_id,) = await enqueue_simple(mail_sessions, clock, ["zoe@example.test"])

    with caplog.at_level(logging.INFO, logger="viva.mailer"):
        await Outbox(mail_sessions, smtp_settings, clock).deliver_due()

    (record,) = [r for r in caplog.records if r.name == "viva.mailer"]
    assert record.levelno == logging.INFO
    assert f"<{row_id}@viva.example.test>" in record.getMessage()
    # The address stays in the outbox row, which an erasure anonymises; a log line would not.
    assert "zoe@example.test" not in record.getMessage()


# --- transactions -----------------------------------------------------------------------------


async def test_enqueue_belongs_to_the_callers_transaction(
    mail_sessions: async_sessionmaker[AsyncSession],
    smtp_settings: SmtpSettings,
    smtp_server: SmtpServer,
    clock: MovableClock,
) -> None:
    async with mail_sessions() as session:
        await enqueue(
            session,
            build=simple_builder("zoe@example.test"),
            domain="viva.example.test",
            organisation_id=ORG_ID,
            booking_id=BOOKING_ID,
            kind="booking_confirmed",
            now=clock.now(),
        )
        await session.rollback()  # the booking change failed: no message either

    assert await rows(mail_sessions) == {}
    assert await Outbox(mail_sessions, smtp_settings, clock).deliver_due() == 0
    assert smtp_server.received == []


async def test_enqueue_refuses_messages_with_several_or_hidden_recipients(
    mail_sessions: async_sessionmaker[AsyncSession], clock: MovableClock
) -> None:
    def with_bcc(message_id: str) -> EmailMessage:
        message = simple_builder("zoe@example.test")(message_id)
        message["Bcc"] = "eve@evil.test"
        return message

    def foreign_id(message_id: str) -> EmailMessage:
        return simple_builder("zoe@example.test")("<other@viva.example.test>")

    async with mail_sessions() as session:
        for build in (with_bcc, foreign_id):
            with pytest.raises(ValueError):
                await enqueue(
                    session,
                    build=build,
                    domain="viva.example.test",
                    organisation_id=ORG_ID,
                    booking_id=None,
                    kind="test",
                    now=clock.now(),
                )


# --- failures and retries ---------------------------------------------------------------------


async def test_outage_messages_wait_then_each_is_delivered_once(
    mail_sessions: async_sessionmaker[AsyncSession],
    smtp_settings: SmtpSettings,
    smtp_server: SmtpServer,
    clock: MovableClock,
) -> None:
    smtp_server.stop()
    ids = await enqueue_simple(mail_sessions, clock, ["a@example.test", "b@example.test"])
    outbox = Outbox(mail_sessions, smtp_settings, clock)

    assert await outbox.deliver_due() == 0
    state = await rows(mail_sessions)
    for row_id in ids:
        assert state[row_id]["status"] == "pending"
        assert state[row_id]["attempts"] == 1
        assert state[row_id]["next_attempt_at"] == clock.now() + timedelta(seconds=30)
        assert "cannot connect" in str(state[row_id]["last_error"])

    # Not due yet: nothing is attempted, nothing is counted.
    assert await outbox.deliver_due() == 0
    assert {r["attempts"] for r in (await rows(mail_sessions)).values()} == {1}

    clock.advance(timedelta(seconds=30))
    assert await outbox.deliver_due() == 0
    state = await rows(mail_sessions)
    assert {r["attempts"] for r in state.values()} == {2}
    assert {r["next_attempt_at"] for r in state.values()} == {clock.now() + timedelta(seconds=60)}

    smtp_server.start()
    clock.advance(timedelta(seconds=60))
    assert await outbox.deliver_due() == 2
    clock.advance(timedelta(hours=5))
    assert await outbox.deliver_due() == 0

    assert Counter(received_ids(smtp_server)) == Counter(
        f"<{row_id}@viva.example.test>" for row_id in ids
    )
    state = await rows(mail_sessions)
    assert {r["status"] for r in state.values()} == {"sent"}
    assert {r["attempts"] for r in state.values()} == {3}


async def test_temporary_reply_is_retried_after_backoff(
    mail_sessions: async_sessionmaker[AsyncSession],
    smtp_settings: SmtpSettings,
    smtp_server: SmtpServer,
    clock: MovableClock,
) -> None:
    (row_id,) = await enqueue_simple(mail_sessions, clock, ["zoe@example.test"])
    outbox = Outbox(mail_sessions, smtp_settings, clock)
    smtp_server.handler.data_reply = "451 4.3.0 Try again later"

    assert await outbox.deliver_due() == 0
    row = (await rows(mail_sessions))[row_id]
    assert row["status"] == "pending"
    assert row["attempts"] == 1
    assert row["last_error"] == "451 4.3.0 Try again later"
    assert row["next_attempt_at"] == clock.now() + timedelta(seconds=30)

    smtp_server.handler.data_reply = None
    clock.advance(timedelta(seconds=29))
    assert await outbox.deliver_due() == 0
    clock.advance(timedelta(seconds=1))
    assert await outbox.deliver_due() == 1
    assert received_ids(smtp_server) == [f"<{row_id}@viva.example.test>"]
    row = (await rows(mail_sessions))[row_id]
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)


async def test_connection_lost_mid_batch_retries_the_rest_once(
    mail_sessions: async_sessionmaker[AsyncSession],
    smtp_settings: SmtpSettings,
    smtp_server: SmtpServer,
    clock: MovableClock,
) -> None:
    first, second, third = await enqueue_simple(
        mail_sessions, clock, ["a@example.test", "b@example.test", "c@example.test"]
    )
    outbox = Outbox(mail_sessions, smtp_settings, clock)
    smtp_server.handler.drop_after = 1

    assert await outbox.deliver_due() == 1
    state = await rows(mail_sessions)
    assert sorted(str(row["status"]) for row in state.values()) == ["pending", "pending", "sent"]
    errors = sorted(str(row["last_error"]) for row in state.values() if row["last_error"])
    # The one in flight when the connection dropped, then the one never tried.
    assert errors[0].startswith("SMTPServerDisconnected")
    assert errors[1].startswith("connection lost during batch: SMTPServerDisconnected")
    assert len(smtp_server.received) == 1

    clock.advance(timedelta(seconds=30))
    assert await outbox.deliver_due() == 2
    assert Counter(received_ids(smtp_server)) == Counter(
        f"<{row_id}@viva.example.test>" for row_id in (first, second, third)
    )


@pytest.mark.parametrize(
    ("stage", "reply"),
    [
        ("rcpt", "550 5.1.1 No such user"),
        ("data", "554 5.7.1 Message rejected as spam"),
    ],
)
async def test_permanent_reply_fails_for_good_and_is_never_resent(
    mail_sessions: async_sessionmaker[AsyncSession],
    smtp_settings: SmtpSettings,
    smtp_server: SmtpServer,
    clock: MovableClock,
    stage: str,
    reply: str,
) -> None:
    (failing,) = await enqueue_simple(mail_sessions, clock, ["nobody@example.test"])
    outbox = Outbox(mail_sessions, smtp_settings, clock)
    setattr(smtp_server.handler, f"{stage}_reply", reply)

    assert await outbox.deliver_due() == 0
    row = (await rows(mail_sessions))[failing]
    assert row["status"] == "failed"
    assert row["last_error"] == reply
    assert row["attempts"] == 1

    # The server works again and later passes run: the failed row stays where it is.
    setattr(smtp_server.handler, f"{stage}_reply", None)
    (fine,) = await enqueue_simple(mail_sessions, clock, ["zoe@example.test"])
    for _ in range(3):
        await outbox.deliver_due()
        clock.advance(timedelta(hours=1))
    assert received_ids(smtp_server) == [f"<{fine}@viva.example.test>"]
    assert (await rows(mail_sessions))[failing]["status"] == "failed"
    assert (await rows(mail_sessions))[failing]["attempts"] == 1


async def test_gives_up_after_max_attempts(
    mail_sessions: async_sessionmaker[AsyncSession],
    smtp_settings: SmtpSettings,
    smtp_server: SmtpServer,
    clock: MovableClock,
) -> None:
    smtp_server.stop()
    (row_id,) = await enqueue_simple(mail_sessions, clock, ["zoe@example.test"])
    outbox = Outbox(mail_sessions, smtp_settings.model_copy(update={"max_attempts": 2}), clock)

    await outbox.deliver_due()
    clock.advance(timedelta(minutes=1))
    await outbox.deliver_due()

    row = (await rows(mail_sessions))[row_id]
    assert row["status"] == "failed"
    assert row["attempts"] == 2
    assert str(row["last_error"]).startswith("gave up after 2 attempts: cannot connect")


def test_backoff_doubles_up_to_the_ceiling(smtp_settings: SmtpSettings) -> None:
    assert [smtp_settings.backoff_seconds(n) for n in range(1, 8)] == [
        30,
        60,
        120,
        240,
        480,
        600,
        600,
    ]
    assert smtp_settings.backoff_seconds(10_000) == 600


# --- crashes, restarts, several workers ----------------------------------------------------------


async def test_outbox_survives_a_restart(
    mail_db_url: str, smtp_settings: SmtpSettings, smtp_server: SmtpServer, clock: MovableClock
) -> None:
    await create_schema(mail_db_url)
    engine = create_async_engine(mail_db_url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    (row_id,) = await enqueue_simple(sessions, clock, ["zoe@example.test"])
    Outbox(sessions, smtp_settings, clock)  # the process "stops" before delivering
    await engine.dispose()
    del engine, sessions

    engine = create_async_engine(mail_db_url)
    try:
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        outbox = Outbox(sessions, smtp_settings, clock)
        assert await outbox.deliver_due() == 1
        clock.advance(timedelta(hours=1))
        assert await outbox.deliver_due() == 0
    finally:
        await engine.dispose()
    assert received_ids(smtp_server) == [f"<{row_id}@viva.example.test>"]


async def test_a_crashed_workers_claim_is_taken_over_after_the_lease(
    mail_sessions: async_sessionmaker[AsyncSession],
    smtp_settings: SmtpSettings,
    smtp_server: SmtpServer,
    clock: MovableClock,
) -> None:
    (row_id,) = await enqueue_simple(mail_sessions, clock, ["zoe@example.test"])
    crashed = Outbox(mail_sessions, smtp_settings, clock)
    await crashed._claim()  # claimed, then the process died before sending
    survivor = Outbox(mail_sessions, smtp_settings, clock)

    assert (await rows(mail_sessions))[row_id]["status"] == "sending"
    clock.advance(timedelta(seconds=299))
    assert await survivor.deliver_due() == 0  # the lease still holds
    clock.advance(timedelta(seconds=1))
    assert await survivor.deliver_due() == 1

    assert received_ids(smtp_server) == [f"<{row_id}@viva.example.test>"]
    row = (await rows(mail_sessions))[row_id]
    assert (row["status"], row["attempts"]) == ("sent", 2)


async def test_two_workers_on_one_database_send_each_message_once(
    mail_db_url: str,
    mail_sessions: async_sessionmaker[AsyncSession],
    smtp_settings: SmtpSettings,
    smtp_server: SmtpServer,
    clock: MovableClock,
) -> None:
    ids = await enqueue_simple(mail_sessions, clock, [f"r{i}@example.test" for i in range(12)])
    small_batches = smtp_settings.model_copy(update={"batch_size": 3})
    other_engine = create_async_engine(mail_db_url)  # as if from another process
    try:
        workers = [
            Outbox(mail_sessions, small_batches, clock),
            Outbox(async_sessionmaker(other_engine, expire_on_commit=False), small_batches, clock),
        ]
        delivered = 0
        for _ in range(10):
            passes = await asyncio.gather(*(worker.deliver_due() for worker in workers))
            delivered += sum(passes)
            if sum(passes) == 0:
                break
    finally:
        await other_engine.dispose()

    assert delivered == 12
    assert Counter(received_ids(smtp_server)) == Counter(
        f"<{row_id}@viva.example.test>" for row_id in ids
    )
    assert max(Counter(received_ids(smtp_server)).values()) == 1


async def test_a_stale_worker_does_not_send_a_row_taken_over(
    mail_sessions: async_sessionmaker[AsyncSession],
    smtp_settings: SmtpSettings,
    smtp_server: SmtpServer,
    clock: MovableClock,
) -> None:
    (row_id,) = await enqueue_simple(mail_sessions, clock, ["zoe@example.test"])
    slow = Outbox(mail_sessions, smtp_settings, clock)
    (claimed,) = await slow._claim()
    clock.advance(timedelta(seconds=301))  # the slow worker overran its lease...
    assert await Outbox(mail_sessions, smtp_settings, clock).deliver_due() == 1  # ...taken over

    assert await slow._deliver_over_smtp([claimed]) == 0  # it finds the row is no longer its
    assert received_ids(smtp_server) == [f"<{row_id}@viva.example.test>"]


# --- a database that fails while a batch is recorded -------------------------------------------


async def enqueue_in_order(
    sessions: async_sessionmaker[AsyncSession], clock: MovableClock
) -> list[uuid.UUID]:
    """Three messages enqueued a second apart: one batch sends them in this order."""
    ids = []
    for recipient in ["a@example.test", "b@example.test", "c@example.test"]:
        ids += await enqueue_simple(sessions, clock, [recipient])
        clock.advance(timedelta(seconds=1))
    return ids


def sessions_of(outbox: Outbox) -> list[aiosmtplib.SMTP]:
    """The SMTP clients the outbox opens, kept to see that each was closed."""
    opened: list[aiosmtplib.SMTP] = []
    real = outbox._client

    def client() -> aiosmtplib.SMTP:
        opened.append(real())
        return opened[-1]

    outbox._client = client  # type: ignore[method-assign]
    return opened


async def test_a_sent_record_that_fails_once_stops_the_batch_and_is_made_again(
    mail_sessions: async_sessionmaker[AsyncSession],
    smtp_settings: SmtpSettings,
    smtp_server: SmtpServer,
    clock: MovableClock,
) -> None:
    a, b, c = await enqueue_in_order(mail_sessions, clock)
    outbox = Outbox(mail_sessions, smtp_settings, clock)
    real = outbox._mark_sent
    calls: list[uuid.UUID] = []

    async def mark_sent(row: Claimed, how: str) -> bool:
        calls.append(row.id)
        if len(calls) == 1:
            raise ConnectionError("the database went away")  # a blip: once
        return await real(row, how)

    outbox._mark_sent = mark_sent  # type: ignore[method-assign]
    opened = sessions_of(outbox)

    # a's record fails while b is on the wire: b is accepted and recorded, c is not sent,
    # and a's record is made again once the database answers.
    assert await outbox.deliver_due() == 2
    assert received_ids(smtp_server) == [f"<{a}@viva.example.test>", f"<{b}@viva.example.test>"]
    state = await rows(mail_sessions)
    assert (state[a]["status"], state[b]["status"]) == ("sent", "sent")
    # c was never tried: given back, due at once, its claim's attempt not counted.
    assert (state[c]["status"], state[c]["attempts"], state[c]["claimed_by"]) == (
        "pending",
        0,
        None,
    )
    assert len(opened) == 1 and not opened[0].is_connected  # the session was closed

    assert await outbox.deliver_due() == 1  # no wait: c goes with the next pass
    assert Counter(received_ids(smtp_server)) == Counter(
        f"<{row_id}@viva.example.test>" for row_id in (a, b, c)
    )
    assert not opened[1].is_connected


async def test_a_sent_record_that_keeps_failing_leaves_only_that_message_to_go_again(
    mail_sessions: async_sessionmaker[AsyncSession],
    smtp_settings: SmtpSettings,
    smtp_server: SmtpServer,
    clock: MovableClock,
) -> None:
    a, b, c = await enqueue_in_order(mail_sessions, clock)
    outbox = Outbox(mail_sessions, smtp_settings, clock)
    real = outbox._mark_sent
    down = {a}  # the database fails every time a's record is tried

    async def mark_sent(row: Claimed, how: str) -> bool:
        if row.id in down:
            raise ConnectionError("the database went away")
        return await real(row, how)

    outbox._mark_sent = mark_sent  # type: ignore[method-assign]
    opened = sessions_of(outbox)

    with pytest.raises(ConnectionError):
        await outbox.deliver_due()  # the pass fails: run() logs it and tries again later
    state = await rows(mail_sessions)
    assert [state[row_id]["status"] for row_id in (a, b, c)] == ["sending", "sent", "pending"]
    assert len(opened) == 1 and not opened[0].is_connected

    # a's lease ends: it goes again (its acceptance could never be recorded), c for the
    # first time; b, accepted and recorded, never again.
    down.clear()
    clock.advance(timedelta(seconds=smtp_settings.lease_seconds))
    assert await outbox.deliver_due() == 2
    assert Counter(received_ids(smtp_server)) == Counter(
        {
            f"<{a}@viva.example.test>": 2,
            f"<{b}@viva.example.test>": 1,
            f"<{c}@viva.example.test>": 1,
        }
    )
    assert {str(row["status"]) for row in (await rows(mail_sessions)).values()} == {"sent"}


async def test_a_first_renewal_that_fails_still_closes_the_session(
    mail_sessions: async_sessionmaker[AsyncSession],
    smtp_settings: SmtpSettings,
    smtp_server: SmtpServer,
    clock: MovableClock,
) -> None:
    (row_id,) = await enqueue_simple(mail_sessions, clock, ["zoe@example.test"])
    outbox = Outbox(mail_sessions, smtp_settings, clock)
    real = outbox._renew
    calls: list[int] = []

    async def renew(rows: Sequence[Claimed]) -> set[uuid.UUID]:
        calls.append(1)
        if len(calls) == 1:  # the check right after connecting
            raise ConnectionError("the database went away")
        return await real(rows)

    outbox._renew = renew  # type: ignore[method-assign]
    opened = sessions_of(outbox)

    with pytest.raises(ConnectionError):
        await outbox.deliver_due()
    assert len(opened) == 1 and not opened[0].is_connected
    assert smtp_server.received == []
    assert (await rows(mail_sessions))[row_id]["status"] == "sending"  # waits for its lease

    clock.advance(timedelta(seconds=smtp_settings.lease_seconds))
    assert await outbox.deliver_due() == 1
    assert received_ids(smtp_server) == [f"<{row_id}@viva.example.test>"]


# --- header injection through the whole pipeline ----------------------------------------------


async def test_injected_header_in_a_name_reaches_nobody_else(
    mail_sessions: async_sessionmaker[AsyncSession],
    smtp_settings: SmtpSettings,
    smtp_server: SmtpServer,
    clock: MovableClock,
) -> None:
    async with mail_sessions() as session, session.begin():
        await enqueue(
            session,
            build=simple_builder(
                "zoe@example.test",
                to_name="Eve\r\nBcc: x@evil.test",
                subject="Hi\r\nBcc: y@evil.test",
            ),
            domain="viva.example.test",
            organisation_id=ORG_ID,
            booking_id=BOOKING_ID,
            kind="booking_confirmed",
            now=clock.now(),
        )

    assert await Outbox(mail_sessions, smtp_settings, clock).deliver_due() == 1

    (received,) = smtp_server.received
    assert received.rcpt_tos == ["zoe@example.test"]
    message = received.message
    assert message.get_all("Bcc") is None
    assert len(message.get_all("To")) == 1
    assert [a.addr_spec for a in message["To"].addresses] == ["zoe@example.test"]
    assert message["Subject"] == "Hi Bcc: y@evil.test"


# --- the dev mailbox ------------------------------------------------------------------------------


async def test_without_smtp_host_messages_go_to_the_dev_mailbox(
    mail_sessions: async_sessionmaker[AsyncSession], clock: MovableClock
) -> None:
    first = await enqueue_simple(mail_sessions, clock, ["a@example.test"])
    clock.advance(timedelta(minutes=1))
    second = await enqueue_simple(
        mail_sessions, clock, ["b@example.test"], organisation_id=OTHER_ORG_ID
    )
    outbox = Outbox(mail_sessions, SmtpSettings(host=""), clock)

    assert await outbox.deliver_due() == 2

    async with mail_sessions() as session:
        everything = await list_messages(session)
        only_other = await list_messages(session, organisation_id=OTHER_ORG_ID)
        one = await get_message(session, first[0])
        missing = await get_message(session, uuid.uuid4())
    assert [m.id for m in everything] == [second[0], first[0]]  # newest first
    assert [m.id for m in only_other] == [second[0]]
    assert missing is None
    assert one is not None
    assert one.status == "sent"
    assert one.sent_at == clock.now()
    assert one.recipient == "a@example.test"
    assert one.subject == "Hello"
    assert one.message_id == f"<{first[0]}@viva.example.test>"
    assert b"Message-ID: <" + str(first[0]).encode() + b"@viva.example.test>" in one.raw
    assert one.created_at.tzinfo is UTC


async def test_the_dev_mailbox_records_only_the_rows_still_under_its_claim(
    mail_sessions: async_sessionmaker[AsyncSession], clock: MovableClock
) -> None:
    """Dev mode records a whole claim in one statement, fenced by the claim's token: a row
    another worker took over meanwhile (its lease ended) keeps that worker's claim."""
    ids = await enqueue_simple(mail_sessions, clock, ["a@example.test", "b@example.test"])
    ids += await enqueue_simple(mail_sessions, clock, ["c@example.test"])
    outbox = Outbox(mail_sessions, SmtpSettings(host=""), clock)
    claimed = await outbox._claim()
    assert {row.id for row in claimed} == set(ids)
    taken = claimed[0].id
    async with mail_sessions() as session, session.begin():
        await session.execute(
            update(outbox_messages)
            .where(outbox_messages.c.id == taken)
            .values(claimed_by="other-host:1 ffff")
        )

    assert await outbox._keep(claimed) == len(ids) - 1

    async with mail_sessions() as session:
        stored = {m.id: m for m in await list_messages(session)}
        other = await session.scalar(
            select(outbox_messages.c.claimed_by).where(outbox_messages.c.id == taken)
        )
    assert stored[taken].status == "sending" and other == "other-host:1 ffff"
    assert all(stored[i].status == "sent" for i in ids if i != taken)


# --- the run loop ---------------------------------------------------------------------------------


async def test_a_burst_woken_within_the_linger_leaves_in_one_claim_and_one_connection(
    mail_sessions: async_sessionmaker[AsyncSession],
    smtp_settings: SmtpSettings,
    smtp_server: SmtpServer,
    clock: MovableClock,
) -> None:
    """Woken by a commit, the loop waits `linger_seconds` before claiming, so the messages
    of bookings committed right after share the claim and the SMTP connection."""
    stop, wake = asyncio.Event(), asyncio.Event()
    settings = smtp_settings.model_copy(update={"linger_seconds": 1.0})
    outbox = Outbox(mail_sessions, settings, clock)
    task = asyncio.create_task(outbox.run(stop, wake))
    try:
        await eventually(lambda: wake._waiters, "the outbox asleep after its first pass")
        await enqueue_simple(mail_sessions, clock, ["first@example.test"])
        wake.set()
        # Lingering: woken (nobody waits on `wake` any more) and waiting on `stop` alone.
        await eventually(lambda: not wake._waiters and stop._waiters, "the worker lingering")
        await enqueue_simple(mail_sessions, clock, ["second@example.test"])
        wake.set()
        await eventually(lambda: len(smtp_server.received) == 2, "both messages delivered")
    finally:
        stop.set()
        await task
    first, second = smtp_server.received
    assert first.peer == second.peer  # the same client socket: one connection, one claim


async def test_run_delivers_when_woken_and_stops_when_told(
    mail_sessions: async_sessionmaker[AsyncSession],
    smtp_settings: SmtpSettings,
    smtp_server: SmtpServer,
    clock: MovableClock,
) -> None:
    stop, wake, arrived = asyncio.Event(), asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    smtp_server.handler.on_received = lambda: loop.call_soon_threadsafe(arrived.set)
    outbox = Outbox(mail_sessions, smtp_settings, clock)  # polls only every 60 s
    task = asyncio.create_task(outbox.run(stop, wake))
    try:
        # The first pass finds nothing and the loop goes to sleep on `wake` (and `stop`):
        # only then does enqueuing prove that waking, not that pass, delivers.
        await eventually(lambda: wake._waiters, "the outbox asleep after its first pass")
        (row_id,) = await enqueue_simple(mail_sessions, clock, ["zoe@example.test"])
        wake.set()
        async with asyncio.timeout(5):
            await arrived.wait()
        stop.set()
        async with asyncio.timeout(5):
            await task
    finally:
        task.cancel()
    assert received_ids(smtp_server) == [f"<{row_id}@viva.example.test>"]


# --- timestamps read back from the database -------------------------------------------------------


async def test_timestamps_come_back_as_aware_utc(
    mail_sessions: async_sessionmaker[AsyncSession], clock: MovableClock
) -> None:
    paris_now = datetime(2026, 7, 1, 10, 0, tzinfo=ZoneInfo("Europe/Paris"))
    async with mail_sessions() as session, session.begin():
        row_id = await enqueue(
            session,
            build=simple_builder("zoe@example.test"),
            domain="viva.example.test",
            organisation_id=ORG_ID,
            booking_id=None,
            kind="test",
            now=paris_now,
        )
    row = (await rows(mail_sessions))[row_id]
    created = row["created_at"]
    assert isinstance(created, datetime)
    assert created.tzinfo is UTC
    assert created == datetime(2026, 7, 1, 8, 0, tzinfo=UTC)

    async with mail_sessions() as session:
        with pytest.raises(ValueError, match="timezone-aware"):
            await enqueue(
                session,
                build=simple_builder("zoe@example.test"),
                domain="viva.example.test",
                organisation_id=ORG_ID,
                booking_id=None,
                kind="test",
                now=datetime(2026, 7, 1, 10, 0),
            )


async def test_a_body_sealed_under_another_key_fails_and_is_never_sent_empty(
    mail_db_url: str,
    mail_sessions: async_sessionmaker[AsyncSession],
    smtp_settings: SmtpSettings,
    smtp_server: SmtpServer,
    clock: MovableClock,
) -> None:
    """Bodies are sealed with a key derived from the server's secret: after the secret was
    changed an older body cannot be opened, and it fails for good rather than going out as
    an empty message."""
    from mailer.models import seal_messages
    from scheduler.credentials import MessageBox

    before = create_async_engine(mail_db_url)
    seal_messages(before, MessageBox(b"the secret key before the change"))
    try:
        (row_id,) = await enqueue_simple(
            async_sessionmaker(before, expire_on_commit=False), clock, ["zoe@example.test"]
        )
    finally:
        await before.dispose()
    engine = mail_sessions.kw["bind"]
    seal_messages(engine, MessageBox(b"the secret key after the change!"))
    failed: list[int] = []
    outbox = Outbox(mail_sessions, smtp_settings, clock, on_failed=lambda: failed.append(1))
    assert await outbox.deliver_due() == 0
    assert received_ids(smtp_server) == []
    async with mail_sessions() as session:
        row = (
            await session.execute(
                select(outbox_messages.c.status, outbox_messages.c.last_error).where(
                    outbox_messages.c.id == row_id
                )
            )
        ).one()
    assert row.status == "failed" and "cannot be read" in row.last_error
    assert failed == [1]
