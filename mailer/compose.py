"""The words of the booking e-mails, in the reader's language and time zone.

Templates live in templates/mail/, written in English with jinja2's i18n extension; French
comes from templates/locale/fr/LC_MESSAGES/mail.po. One jinja2 Environment (created by the
app: i18n extension, newstyle gettext, autoescape for .html) serves every language, because
the reader's translations travel in the render context instead of being installed globally.

Every function returns a `MailContent`: rendered but not yet a MIME message, since the
Message-ID is only known once the outbox has chosen the row id (see `mailer.outbox`).
Nothing here reads a clock, a database or the network.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from babel import Locale
from babel.dates import format_date, format_time, get_datetime_format, get_timezone_location
from markupsafe import Markup

from mailer import ics
from mailer.message import MailContent, clean_line, clean_text, validate_address

__all__ = [
    "BookingMail",
    "NewLinksMail",
    "Organisation",
    "Reader",
    "Translator",
    "booking_cancelled",
    "booking_confirmed",
    "booking_reminder",
    "booking_updated",
    "format_when",
    "links_reissued",
    "zone_label",
]

Role = Literal["candidate", "evaluator"]


class Translator(Protocol):
    """What is needed from a catalog: `gettext.NullTranslations` and Babel's both fit."""

    def gettext(self, message: str) -> str: ...

    def ngettext(self, singular: str, plural: str, n: int) -> str: ...


@dataclass(frozen=True)
class Organisation:
    """The training organisation: sender name, calendar ORGANIZER, and who to contact."""

    name: str
    contact_email: str
    contact_phone: str | None = None
    # Whether it records its interviews: the candidate is told in the confirmation too.
    records: bool = False
    # Viva's own sender address ([smtp] from_address): the calendar ORGANIZER when the
    # reader is the contact address itself (an evaluator of the organisation using it),
    # since an invitation whose ORGANIZER is its ATTENDEE is no invitation at all.
    sender_email: str | None = None

    def organizer_for(self, reader_email: str) -> str:
        """The ORGANIZER address of `reader_email`'s invitation: never the reader."""
        try:
            same = validate_address(self.contact_email).lower() == (
                validate_address(reader_email).lower()
            )
        except ValueError:
            same = False  # _validate names the bad address
        return self.sender_email if same and self.sender_email else self.contact_email


@dataclass(frozen=True)
class Reader:
    """The person one e-mail is for; times are shown in their zone."""

    name: str
    email: str
    timezone: str


@dataclass(frozen=True)
class BookingMail:
    """One booking as seen by one reader (the candidate or the evaluator).

    `start`/`end` are aware UTC instants. `sequence` is the booking's iTIP revision counter:
    0 for the first confirmation, incremented by the caller for every move or cancellation
    (and stored with the booking). `exam_language` is the language code of the language
    being examined ("en", "es", ...), shown by name in the reader's language.
    `room_url` is the reader's own room link. `manage_url` is the candidate's personal link
    to change or cancel, and `manage_until` the instant from which that is no longer
    possible (the lock); both are None for an evaluator.
    """

    booking_id: uuid.UUID
    sequence: int
    start: datetime
    end: datetime
    exam_language: str
    candidate_name: str
    organisation: Organisation
    reader: Reader
    role: Role
    room_url: str
    manage_url: str | None = None
    manage_until: datetime | None = None


# --- gettext callables for the render context ------------------------------------------


def gettext_callables(translations: Translator) -> dict[str, Callable[..., str]]:
    """Newstyle gettext functions (keyword formatting, autoescape-aware) for one catalog.

    With `newstyle_gettext`, `{% trans name=x %}` compiles to `gettext("...", name=x)`: the
    callable itself must interpolate, and escape the values when the template autoescapes.
    A bare `translations.gettext` accepts no keywords and escapes nothing, so it is wrapped
    here the way jinja2's own `install_gettext_callables(newstyle=True)` does.
    """

    @jinja2.pass_context
    def gettext(context: jinja2.runtime.Context, message: str, /, **variables: Any) -> str:
        translated: str = translations.gettext(message)
        if context.eval_ctx.autoescape:
            translated = Markup(translated)
        return translated % variables

    @jinja2.pass_context
    def ngettext(
        context: jinja2.runtime.Context,
        singular: str,
        plural: str,
        num: int,
        /,
        **variables: Any,
    ) -> str:
        variables.setdefault("num", num)
        translated: str = translations.ngettext(singular, plural, num)
        if context.eval_ctx.autoescape:
            translated = Markup(translated)
        return translated % variables

    return {"gettext": gettext, "ngettext": ngettext, "_": gettext}


def _check_env(env: jinja2.Environment) -> None:
    """Refuse an environment that would mistranslate or fail to escape user data."""
    if "jinja2.ext.InternationalizationExtension" not in env.extensions:
        raise RuntimeError("the mail templates need the jinja2.ext.i18n extension")
    if not getattr(env, "newstyle_gettext", False):
        raise RuntimeError("the mail templates need env.newstyle_gettext = True")
    autoescape = env.autoescape
    if not (autoescape("mail/x.html") if callable(autoescape) else autoescape):
        raise RuntimeError("the mail templates need autoescape on for .html")


# --- dates, zones and languages in the reader's locale ---------------------------------


def _babel_locale(locale: str) -> Locale:
    return Locale.parse(locale.replace("-", "_"))


def format_when(instant: datetime, timezone: str, locale: str) -> str:
    """A moment as people write it in a sentence: "jeudi 3 décembre 2026 à 14:00", "Thursday,
    December 3, 2026 at 2:00 PM", in the reader's zone.

    The date in full and the time short, joined by CLDR's pattern for a date followed by its
    time ("{1} 'at' {0}", `datetime_formats_relative` in Babel): the standard pattern joins
    them with a bare comma, which reads as a list in a sentence. A locale without that
    pattern gets the standard one.
    """
    local = instant.astimezone(ZoneInfo(timezone))
    babel_locale = _babel_locale(locale)
    # Babel types both lookups loosely (a pattern object or a str); CLDR gives strings here.
    pattern = str(
        babel_locale.datetime_formats_relative.get("full")
        or get_datetime_format("full", locale=babel_locale)
    )
    day = format_date(local, format="full", locale=babel_locale)
    hour = format_time(local, format="short", locale=babel_locale)
    # Quotes mark literal text in CLDR patterns; Babel's own format_datetime drops them so.
    return pattern.replace("'", "").replace("{0}", hour).replace("{1}", day)


_UTC_ZONES = frozenset(
    {
        "UTC",
        "UCT",
        "Universal",
        "Zulu",
        "GMT",
        "GMT0",
        "GMT+0",
        "GMT-0",
        "Greenwich",
        "Etc/UTC",
        "Etc/UCT",
        "Etc/Universal",
        "Etc/Zulu",
        "Etc/GMT",
        "Etc/GMT0",
        "Etc/GMT+0",
        "Etc/GMT-0",
        "Etc/Greenwich",
    }
)


def zone_label(timezone: str, locale: str, translations: Translator) -> str:
    """The zone named after its main city ("Paris time", "heure de Paris"), which everyone
    recognises, unlike "Central European Standard Time" or "heure : France".

    Babel falls back to the raw IANA path when CLDR has no exemplar city for a zone alias
    ("Argentina/Buenos Aires"); the last segment is then the city.
    """
    zone = ZoneInfo(timezone)
    if zone.key in _UTC_ZONES:
        return translations.gettext("UTC")
    city = get_timezone_location(zone, locale=_babel_locale(locale), return_city=True)
    city = city.rsplit("/", 1)[-1].replace("_", " ")
    return translations.gettext("%(city)s time") % {"city": city}


def _language_name(code: str, locale: str) -> str:
    languages = _babel_locale(locale).languages
    normalized = code.replace("-", "_")
    name = languages.get(normalized) or languages.get(normalized.split("_")[0].lower())
    return name or code


# --- rendering ---------------------------------------------------------------------------


def _tidy_text(text: str) -> str:
    """Plain text that looks the same whatever trim_blocks/lstrip_blocks the app chose."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    tidy = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    return tidy + "\n"


def _render(env: jinja2.Environment, name: str, context: Mapping[str, Any]) -> str:
    return env.get_template(name).render(dict(context))


def _common_context(mail: BookingMail, translations: Translator, locale: str) -> dict[str, Any]:
    """What every booking template receives, already localised and sanitised."""
    reader = mail.reader
    minutes = round((mail.end - mail.start).total_seconds() / 60)
    babel_locale = _babel_locale(locale)
    manage_until = None
    if mail.manage_until is not None:
        manage_until = format_when(mail.manage_until, reader.timezone, locale)
    return {
        **gettext_callables(translations),
        "html_lang": locale.replace("_", "-"),
        "text_direction": babel_locale.text_direction,
        "role": mail.role,
        "reader_name": clean_line(reader.name),
        "candidate_name": clean_line(mail.candidate_name),
        "exam_language": _language_name(mail.exam_language, locale),
        "when": format_when(mail.start, reader.timezone, locale),
        "zone": zone_label(reader.timezone, locale, translations),
        "minutes": minutes,
        "room_url": mail.room_url,
        "manage_url": mail.manage_url,
        "manage_until": manage_until,
        "org_name": clean_line(mail.organisation.name),
        "org_email": mail.organisation.contact_email,
        "org_phone": clean_line(mail.organisation.contact_phone or "") or None,
        "org_records": mail.organisation.records,
        "previous_when": None,
        "reason": None,
    }


def _validate(mail: BookingMail, *, deadline_shown: bool) -> None:
    """Catch inconsistent inputs here, where the message says which field is wrong."""
    if mail.role not in ("candidate", "evaluator"):
        raise ValueError(f"unknown role: {mail.role!r}")
    if mail.role == "evaluator" and mail.manage_url is not None:
        raise ValueError("an evaluator has no candidate link to change or cancel")
    if mail.manage_until is not None and mail.manage_url is None:
        raise ValueError("manage_until without manage_url")
    if deadline_shown and mail.manage_url is not None and mail.manage_until is None:
        raise ValueError("manage_url and manage_until go together")
    for url in (mail.room_url, mail.manage_url):
        if url is not None and not url.startswith(("https://", "http://")):
            raise ValueError(f"links must be http(s) URLs: {url!r}")
    for instant in (mail.start, mail.end, mail.manage_until):
        if instant is not None and (instant.tzinfo is None or instant.utcoffset() is None):
            raise ValueError("booking instants must be timezone-aware")
    validate_address(mail.reader.email)
    validate_address(mail.organisation.contact_email)
    try:
        ZoneInfo(mail.reader.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone: {mail.reader.timezone!r}") from exc


def _summary(mail: BookingMail, context: Mapping[str, Any], translations: Translator) -> str:
    if mail.role == "candidate":
        return translations.gettext("Oral interview (%(language)s) – %(organisation)s") % {
            "language": context["exam_language"],
            "organisation": context["org_name"],
        }
    return translations.gettext("Oral interview: %(candidate)s (%(language)s)") % {
        "candidate": context["candidate_name"],
        "language": context["exam_language"],
    }


def _compose(
    env: jinja2.Environment,
    translations: Translator,
    locale: str,
    mail: BookingMail,
    *,
    kind: str,
    template: str,
    subject: str,
    method: Literal["REQUEST", "CANCEL"],
    context: dict[str, Any],
    now: datetime,
) -> MailContent:
    _check_env(env)
    context = {**context, "subject": subject, "kind": kind}
    text = _tidy_text(_render(env, f"mail/{template}.txt", context))
    html = _render(env, f"mail/{template}.html", context)
    description = _tidy_text(_render(env, "mail/invitation_description.txt", context))
    invitation = ics.Invitation(
        uid=str(mail.booking_id),
        sequence=mail.sequence,
        dtstamp=now,
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
    if method == "CANCEL":
        calendar = ics.build_cancel(invitation)
    elif kind == "booking_updated":
        calendar = ics.build_update(invitation)
    else:
        calendar = ics.build_request(invitation)
    return MailContent(
        kind=kind,
        to_name=mail.reader.name,
        to_address=mail.reader.email,
        subject=subject,
        text=text,
        html=html,
        calendar=calendar,
        method=method,
        date=now.astimezone(UTC),
        from_name=mail.organisation.name,
        reply_to=mail.organisation.contact_email,
    )


# --- the e-mails -------------------------------------------------------------------------


def booking_confirmed(
    env: jinja2.Environment,
    translations: Translator,
    locale: str,
    mail: BookingMail,
    *,
    now: datetime,
) -> MailContent:
    """The confirmation with the invitation (REQUEST), for the candidate or the evaluator.

    The candidate's version is the one the guide promises: date and time, the room link,
    the personal link to change or cancel until the lock, and what to prepare. The
    evaluator's names the candidate and the exam language, with the evaluator's own link.
    """
    _validate(mail, deadline_shown=True)
    context = _common_context(mail, translations, locale)
    if mail.role == "candidate":
        subject = translations.gettext("Your oral interview on %(when)s is confirmed") % {
            "when": context["when"]
        }
    else:
        subject = translations.gettext("Interview with %(candidate)s on %(when)s") % {
            "candidate": context["candidate_name"],
            "when": context["when"],
        }
    return _compose(
        env,
        translations,
        locale,
        mail,
        kind="booking_confirmed",
        template=f"booking_confirmed_{mail.role}",
        subject=subject,
        method="REQUEST",
        context=context,
        now=now,
    )


def booking_cancelled(
    env: jinja2.Environment,
    translations: Translator,
    locale: str,
    mail: BookingMail,
    *,
    now: datetime,
    reason: str | None = None,
) -> MailContent:
    """The cancellation (CANCEL); `mail.sequence` must exceed the last invitation's.

    For a candidate, `manage_url` (if given) is offered to book another slot;
    `manage_until` is not needed and not shown.
    """
    _validate(mail, deadline_shown=False)
    context = _common_context(mail, translations, locale)
    context["reason"] = clean_text(reason) if reason else None
    if mail.role == "candidate":
        subject = translations.gettext("Cancelled: your oral interview on %(when)s") % {
            "when": context["when"]
        }
    else:
        subject = translations.gettext("Cancelled: interview with %(candidate)s on %(when)s") % {
            "candidate": context["candidate_name"],
            "when": context["when"],
        }
    return _compose(
        env,
        translations,
        locale,
        mail,
        kind="booking_cancelled",
        template="booking_cancelled",
        subject=subject,
        method="CANCEL",
        context=context,
        now=now,
    )


def booking_updated(
    env: jinja2.Environment,
    translations: Translator,
    locale: str,
    mail: BookingMail,
    *,
    now: datetime,
    previous_start: datetime,
    reason: str | None = None,
) -> MailContent:
    """ "Your interview has moved to …": a REQUEST with the same UID and a higher SEQUENCE.

    `mail` describes the booking after the move; `previous_start` is where it was, so the
    reader can find the old entry. `reason` is the organisation's text (force majeure).
    """
    _validate(mail, deadline_shown=True)
    context = _common_context(mail, translations, locale)
    context["reason"] = clean_text(reason) if reason else None
    context["previous_when"] = format_when(previous_start, mail.reader.timezone, locale)
    if mail.role == "candidate":
        subject = translations.gettext("Moved: your oral interview is now on %(when)s") % {
            "when": context["when"]
        }
    else:
        subject = translations.gettext("Moved: interview with %(candidate)s is now on %(when)s") % {
            "candidate": context["candidate_name"],
            "when": context["when"],
        }
    return _compose(
        env,
        translations,
        locale,
        mail,
        kind="booking_updated",
        template="booking_updated",
        subject=subject,
        method="REQUEST",
        context=context,
        now=now,
    )


def booking_reminder(
    env: jinja2.Environment,
    translations: Translator,
    locale: str,
    mail: BookingMail,
    *,
    now: datetime,
) -> MailContent:
    """A reminder before the interview, without a calendar part: the invitation is already in
    the reader's calendar, and a second REQUEST would only make clients ask again.

    For the candidate, `manage_url` and `manage_until` (given while changes are still open)
    add the last moment to change and the personal link; without them (inside the lock) the
    reminder only prepares the interview. Both versions give the reader's room link and the
    device check; the evaluator's adds the identity check and the three parts.
    """
    _validate(mail, deadline_shown=True)
    _check_env(env)
    context = _common_context(mail, translations, locale)
    if mail.role == "candidate":
        subject = translations.gettext("Reminder: your oral interview on %(when)s") % {
            "when": context["when"]
        }
    else:
        subject = translations.gettext("Reminder: interview with %(candidate)s on %(when)s") % {
            "candidate": context["candidate_name"],
            "when": context["when"],
        }
    context = {**context, "subject": subject, "kind": "booking_reminder"}
    template = f"mail/booking_reminder_{mail.role}"
    return MailContent(
        kind="booking_reminder",
        to_name=mail.reader.name,
        to_address=mail.reader.email,
        subject=subject,
        text=_tidy_text(_render(env, f"{template}.txt", context)),
        html=_render(env, f"{template}.html", context),
        calendar=None,
        method=None,
        date=now.astimezone(UTC),
        from_name=mail.organisation.name,
        reply_to=mail.organisation.contact_email,
    )


@dataclass(frozen=True)
class NewLinksMail:
    """A candidate's links, re-issued by the organisation: the earlier ones no longer work.

    `manage_url` is the new personal link; `room_url` the new room link of the booking they
    hold, if any (None: nothing booked yet, or nothing ahead).
    """

    organisation: Organisation
    reader: Reader
    manage_url: str
    room_url: str | None = None


def links_reissued(
    env: jinja2.Environment,
    translations: Translator,
    locale: str,
    mail: NewLinksMail,
    *,
    now: datetime,
) -> MailContent:
    """The candidate's new links, without a calendar part: the time has not changed."""
    _check_env(env)
    for url in (mail.manage_url, mail.room_url):
        if url is not None and not url.startswith(("https://", "http://")):
            raise ValueError(f"links must be http(s) URLs: {url!r}")
    validate_address(mail.reader.email)
    validate_address(mail.organisation.contact_email)
    subject = translations.gettext("Your new personal link for your oral interview")
    context = {
        **gettext_callables(translations),
        "html_lang": locale.replace("_", "-"),
        "text_direction": _babel_locale(locale).text_direction,
        "subject": subject,
        "kind": "links_reissued",
        "reader_name": clean_line(mail.reader.name),
        "manage_url": mail.manage_url,
        "room_url": mail.room_url,
        "org_name": clean_line(mail.organisation.name),
        "org_email": mail.organisation.contact_email,
        "org_phone": clean_line(mail.organisation.contact_phone or "") or None,
    }
    return MailContent(
        kind="links_reissued",
        to_name=mail.reader.name,
        to_address=mail.reader.email,
        subject=subject,
        text=_tidy_text(_render(env, "mail/links_reissued.txt", context)),
        html=_render(env, "mail/links_reissued.html", context),
        calendar=None,
        method=None,
        date=now.astimezone(UTC),
        from_name=mail.organisation.name,
        reply_to=mail.organisation.contact_email,
    )
