"""An evaluator's interviews as the events of a calendar feed (scheduler.feeds serves it).

Each event is built exactly as the invitation mailed for it (mailer.compose): same UID (the
booking's id), same SEQUENCE, same summary, description and room link, in the reader's
language and zone. A client that holds the invitation and subscribes to the feed sees
one event, and a feed entry updates like an invitation would.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import jinja2

from mailer import ics
from mailer.compose import (
    BookingMail,
    Translator,
    _check_env,
    _common_context,
    _render,
    _summary,
    _tidy_text,
    _validate,
)

__all__ = ["build", "entry"]


def entry(
    env: jinja2.Environment,
    translations: Translator,
    locale: str,
    mail: BookingMail,
    *,
    cancelled: bool,
    stamp: datetime,
) -> tuple[ics.Invitation, bool]:
    """One interview as the feed shows it; `stamp` (its DTSTAMP) is its last change, so an
    unchanged interview gives unchanged bytes (and the feed an unchanged ETag)."""
    _validate(mail, deadline_shown=False)
    _check_env(env)
    context = _common_context(mail, translations, locale)
    context["kind"] = "booking_cancelled" if cancelled else "booking_confirmed"
    description = _tidy_text(_render(env, "mail/invitation_description.txt", context))
    invitation = ics.Invitation(
        uid=str(mail.booking_id),
        sequence=mail.sequence,
        dtstamp=stamp,
        start=mail.start,
        end=mail.end,
        timezone=mail.reader.timezone,
        summary=_summary(mail, context, translations),
        description=description.strip(),
        room_url=mail.room_url,
        organizer_name=mail.organisation.name,
        organizer_email=mail.organisation.organizer_for(mail.reader.email),
        attendee_name=mail.reader.name,
        attendee_email=mail.reader.email,
    )
    return invitation, cancelled


def build(entries: Iterable[tuple[ics.Invitation, bool]], name: str) -> bytes:
    return ics.build_feed(entries, name)
