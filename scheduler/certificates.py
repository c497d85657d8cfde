"""The two PDFs of a published result: the results statement and the certificate.

Pure: a `ResultDocument` and the reader's translations in, bytes out (reportlab, which
installs from its wheel alone). The same document gives the same bytes every time, so a
re-download is identical: the canvas is `invariant` (no random document id) and its
creation date is the result's own issue date, never the clock. Text is set in the Vera
TrueType fonts bundled with reportlab, which carry é, ç, œ, ß, ł; reportlab embeds a subset
with its Unicode map, so PDF readers (and the tests, through pypdf) read the text back.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import reportlab
from babel import Locale
from babel.dates import format_date
from reportlab.graphics import renderPDF
from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from mailer.compose import Translator

REGULAR = "VivaVera"
BOLD = "VivaVeraBold"
_FONTS = Path(reportlab.__file__).parent / "fonts"
_MARGIN = 60.0


def _register_fonts() -> None:
    registered = pdfmetrics.getRegisteredFontNames()
    for name, file in ((REGULAR, "Vera.ttf"), (BOLD, "VeraBd.ttf")):
        if name not in registered:
            pdfmetrics.registerFont(TTFont(name, str(_FONTS / file)))


@dataclass(frozen=True)
class Part:
    """One part of the certification besides the oral (e.g. the written test)."""

    name: str
    level: str
    score: float | None = None


@dataclass(frozen=True)
class ResultDocument:
    """What both PDFs say, already chosen by the caller (scheduler.results)."""

    locale: str  # the candidate's language: "fr" or "en"
    organisation: str
    candidate: str
    exam_language: str  # a language code ("en", "es"), named in `locale`
    interview_on: date | None  # in the candidate's zone
    issued_on: date  # the published version's day, in the candidate's zone
    issued_at: datetime  # the published version's instant: the PDFs' creation date
    oral_level: str | None
    parts: Sequence[Part]
    overall_level: str
    target_level: str | None
    target_reached: bool
    code: str
    verify_url: str


def language_name(code: str, locale: str) -> str:
    languages = Locale.parse(locale.replace("-", "_")).languages
    normalized = code.replace("-", "_")
    return str(languages.get(normalized) or languages.get(normalized.split("_")[0]) or code)


def long_date(day: date, locale: str) -> str:
    return format_date(day, format="long", locale=Locale.parse(locale.replace("-", "_")))


def score_text(value: float, locale: str) -> str:
    text = f"{value:g}"
    return text.replace(".", ",") if locale.startswith("fr") else text


class _Page:
    """A cursor down one A4 page, wrapping long lines."""

    def __init__(self, doc: ResultDocument, title: str) -> None:
        _register_fonts()
        self.buffer = io.BytesIO()
        self.canvas = Canvas(self.buffer, pagesize=A4, invariant=1, pageCompression=1)
        stamp = doc.issued_at.astimezone(UTC)
        fixed = stamp.strftime("D:%Y%m%d%H%M%S+00'00'")
        self.canvas.setDateFormatter(lambda *_: fixed)
        self.canvas.setTitle(title)
        self.canvas.setAuthor(doc.organisation)
        self.canvas.setCreator("Viva")
        self.canvas.setProducer("Viva")
        self.width, self.height = A4
        self.y = self.height - _MARGIN

    def line(self, text: str, *, size: float = 12, bold: bool = False, gap: float = 6) -> None:
        font = BOLD if bold else REGULAR
        self.canvas.setFont(font, size)
        for piece in simpleSplit(text, font, size, self.width - 2 * _MARGIN) or [""]:
            self.canvas.drawString(_MARGIN, self.y - size, piece)
            self.y -= size * 1.3
        self.y -= gap

    def centred(self, text: str, *, size: float, bold: bool = False, gap: float = 8) -> None:
        font = BOLD if bold else REGULAR
        self.canvas.setFont(font, size)
        for piece in simpleSplit(text, font, size, self.width - 2 * _MARGIN) or [""]:
            self.canvas.drawCentredString(self.width / 2, self.y - size, piece)
            self.y -= size * 1.3
        self.y -= gap

    def qr(self, url: str, size: float = 110) -> None:
        widget = QrCodeWidget(url)
        x0, y0, x1, y1 = widget.getBounds()
        drawing = Drawing(size, size, transform=[size / (x1 - x0), 0, 0, size / (y1 - y0), 0, 0])
        drawing.add(widget)
        renderPDF.draw(drawing, self.canvas, self.width - _MARGIN - size, _MARGIN)

    def finish(self) -> bytes:
        self.canvas.showPage()
        self.canvas.save()
        return self.buffer.getvalue()


def _verification(page: _Page, doc: ResultDocument, t: Translator) -> None:
    page.y = _MARGIN + 110
    page.line(t.gettext("Verification code: %(code)s") % {"code": doc.code}, bold=True, gap=2)
    page.line(t.gettext("Anyone can check this document at:"), size=9, gap=0)
    page.line(doc.verify_url, size=9)
    page.qr(doc.verify_url)


def statement(doc: ResultDocument, t: Translator) -> bytes:
    """The results statement: every level the organisation certifies."""
    title = t.gettext("Results statement")
    page = _Page(doc, title)
    language = language_name(doc.exam_language, doc.locale)
    page.line(doc.organisation, size=14, bold=True, gap=18)
    page.line(title, size=22, bold=True, gap=18)
    page.line(t.gettext("Candidate: %(name)s") % {"name": doc.candidate})
    page.line(t.gettext("Language examined: %(language)s") % {"language": language})
    if doc.interview_on is not None:
        when = long_date(doc.interview_on, doc.locale)
        page.line(t.gettext("Oral interview on %(date)s") % {"date": when})
    issued = long_date(doc.issued_on, doc.locale)
    page.line(t.gettext("Results issued on %(date)s") % {"date": issued}, gap=18)
    if doc.oral_level:
        page.line(t.gettext("Oral interview: %(level)s") % {"level": doc.oral_level})
    for part in doc.parts:
        text = f"{part.name}: {part.level}"
        if part.score is not None:
            score = score_text(part.score, doc.locale)
            text += " " + t.gettext("(score %(score)s)") % {"score": score}
        page.line(text)
    page.line(
        t.gettext("Overall level: %(level)s") % {"level": doc.overall_level}, bold=True, gap=10
    )
    if doc.target_level:
        reached = (
            t.gettext("Target level %(level)s: reached")
            if doc.target_reached
            else t.gettext("Target level %(level)s: not reached")
        )
        page.line(reached % {"level": doc.target_level})
    _verification(page, doc, t)
    return page.finish()


def certificate(doc: ResultDocument, t: Translator) -> bytes:
    """The certificate, for a candidate who reached the target level; valid for life."""
    title = t.gettext("Certificate")
    page = _Page(doc, title)
    language = language_name(doc.exam_language, doc.locale)
    page.y -= 60
    page.centred(doc.organisation, size=16, bold=True, gap=30)
    page.centred(title, size=30, bold=True, gap=30)
    page.centred(t.gettext("This certifies that"), size=13)
    page.centred(doc.candidate, size=24, bold=True, gap=14)
    page.centred(
        t.gettext("has reached level %(level)s in %(language)s")
        % {"level": doc.overall_level, "language": language},
        size=14,
        gap=20,
    )
    issued = long_date(doc.issued_on, doc.locale)
    page.centred(t.gettext("Issued on %(date)s") % {"date": issued}, size=12)
    page.centred(t.gettext("This certificate is valid for life."), size=11)
    _verification(page, doc, t)
    return page.finish()
