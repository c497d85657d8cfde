"""The candidate's results e-mails: published, updated after a correction, a new link.

Like mailer.compose (whose helpers it uses): rendered from templates/mail/results.*,
in the reader's language, without a calendar part; pure, no clock or database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import jinja2
from babel import Locale

from mailer.compose import (
    Organisation,
    Reader,
    Translator,
    _check_env,
    _language_name,
    _render,
    _tidy_text,
    gettext_callables,
)
from mailer.message import MailContent, clean_line, clean_text, validate_address

Kind = Literal["results_published", "results_updated", "results_link"]


@dataclass(frozen=True)
class ResultsMail:
    """`results_url` opens the results page (the PDFs are there); `reason` is the
    organisation's words for a correction."""

    organisation: Organisation
    reader: Reader
    results_url: str
    exam_language: str
    overall_level: str
    certificate: bool
    reason: str | None = None


def results_mail(
    env: jinja2.Environment,
    translations: Translator,
    locale: str,
    mail: ResultsMail,
    *,
    kind: Kind,
    now: datetime,
) -> MailContent:
    _check_env(env)
    if not mail.results_url.startswith(("https://", "http://")):
        raise ValueError(f"links must be http(s) URLs: {mail.results_url!r}")
    validate_address(mail.reader.email)
    validate_address(mail.organisation.contact_email)
    language = _language_name(mail.exam_language, locale)
    subjects = {
        "results_published": translations.gettext("Your results: %(language)s oral certification"),
        "results_updated": translations.gettext("Updated results: %(language)s oral certification"),
        "results_link": translations.gettext("A new link to your results (%(language)s)"),
    }
    subject = subjects[kind] % {"language": language}
    context = {
        **gettext_callables(translations),
        "html_lang": locale.replace("_", "-"),
        "text_direction": Locale.parse(locale.replace("-", "_")).text_direction,
        "subject": subject,
        "kind": kind,
        "reader_name": clean_line(mail.reader.name),
        "results_url": mail.results_url,
        "exam_language": language,
        "overall_level": clean_line(mail.overall_level),
        "certificate": mail.certificate,
        "reason": clean_text(mail.reason) if mail.reason else None,
        "org_name": clean_line(mail.organisation.name),
        "org_email": mail.organisation.contact_email,
        "org_phone": clean_line(mail.organisation.contact_phone or "") or None,
    }
    return MailContent(
        kind=kind,
        to_name=mail.reader.name,
        to_address=mail.reader.email,
        subject=subject,
        text=_tidy_text(_render(env, "mail/results.txt", context)),
        html=_render(env, "mail/results.html", context),
        calendar=None,
        method=None,
        date=now.astimezone(UTC),
        from_name=mail.organisation.name,
        reply_to=mail.organisation.contact_email,
    )
