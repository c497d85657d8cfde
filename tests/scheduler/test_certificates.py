"""The verification codes and the PDFs, pure: no app, no database."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, date, datetime

import pytest
from pypdf import PdfReader

from scheduler.certificates import Part, ResultDocument, certificate, statement
from scheduler.i18n import Catalogs
from scheduler.verification import ALPHABET, CodeMaker, code_hash, lookup_hash, normalise

SECRET = b"0123456789abcdef0123456789abcdef"
RESULT_ID = uuid.UUID("6a0b7d4e-1c2f-4e7a-9b3c-5d6e7f8a9b0c")


def test_a_code_is_80_bits_in_four_groups_without_ambiguous_letters() -> None:
    code = CodeMaker(SECRET).code(RESULT_ID)
    groups = code.split("-")
    assert [len(g) for g in groups] == [4, 4, 4, 4]
    assert len(ALPHABET) == 32 and 32 ** len("".join(groups)) == 2**80
    assert not set("ILOU") & set(ALPHABET)
    assert set("".join(groups)) <= set(ALPHABET)
    # The same result gives the same code; another result or another secret another one.
    assert CodeMaker(SECRET).code(RESULT_ID) == code
    assert CodeMaker(SECRET).code(uuid.uuid4()) != code
    assert CodeMaker(SECRET[::-1]).code(RESULT_ID) != code


def test_typed_codes_forgive_case_dashes_spaces_and_look_alikes() -> None:
    assert normalise("7kq3 m9xd-2fha_wt6c") == "7KQ3M9XD2FHAWT6C"
    assert normalise("O1IL-0000-0000-0000") == "0111000000000000"
    assert code_hash("7kq3-m9xd-2fha-wt6c") == code_hash("7KQ3M9XD2FHAWT6C")
    for bad in ("", "7KQ3-M9XD-2FHA", "7KQ3-M9XD-2FHA-WT6CX", "7KQ3-M9XD-2FHA-WT6U", "x" * 100):
        assert normalise(bad) is None
        assert len(lookup_hash(bad)) == 64  # a look-up is still made, for nothing
    with pytest.raises(ValueError):
        code_hash("nope")


def _doc(locale: str) -> ResultDocument:
    return ResultDocument(
        locale=locale,
        organisation="Société Française d’Œnologie",
        candidate="Łukasz Weiß-Françoise",
        exam_language="de",
        interview_on=date(2026, 12, 1),
        issued_on=date(2026, 12, 3),
        issued_at=datetime(2026, 12, 3, 10, 30, tzinfo=UTC),
        oral_level="B2",
        parts=[Part("Written test", "C1", 81.5)],
        overall_level="B2",
        target_level="B1",
        target_reached=True,
        code="7KQ3-M9XD-2FHA-WT6C",
        verify_url="https://viva.example/v/7KQ3-M9XD-2FHA-WT6C",
    )


def _text(body: bytes) -> str:
    reader = PdfReader(io.BytesIO(body))
    assert reader.metadata is not None
    assert reader.metadata["/CreationDate"].startswith("D:20261203103000")
    return "\n".join(page.extract_text() for page in reader.pages)


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        (
            "fr",
            [
                "Relevé de résultats",
                "Langue évaluée : allemand",
                "Entretien oral du 1 décembre 2026",
                "Résultats délivrés le 3 décembre 2026",
                "Entretien oral : B2",
                "Written test: C1 (score 81,5)",
                "Niveau global : B2",
                "Niveau cible B1 : atteint",
            ],
        ),
        (
            "en",
            [
                "Results statement",
                "Language examined: German",
                "Oral interview on December 1, 2026",
                "Written test: C1 (score 81.5)",
                "Overall level: B2",
                "Target level B1: reached",
            ],
        ),
    ],
)
def test_the_statement_says_everything_in_the_candidates_language(
    locale: str, expected: list[str]
) -> None:
    doc = _doc(locale)
    body = statement(doc, Catalogs.load().get(locale))
    assert body == statement(doc, Catalogs.load().get(locale))  # byte for byte
    text = _text(body)
    for words in [*expected, doc.candidate, doc.organisation, doc.code, doc.verify_url]:
        assert words in text, words


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("fr", ["Certificat", "a atteint le niveau B2 en allemand", "valable à vie"]),
        ("en", ["Certificate", "has reached level B2 in German", "valid for life"]),
    ],
)
def test_the_certificate_is_the_same_bytes_every_time(locale: str, expected: list[str]) -> None:
    doc = _doc(locale)
    body = certificate(doc, Catalogs.load().get(locale))
    assert body == certificate(doc, Catalogs.load().get(locale))
    text = _text(body)
    for words in [*expected, doc.candidate, doc.organisation, doc.code]:
        assert words in text, words
    # Another publication date is another document.
    later = ResultDocument(**{**doc.__dict__, "issued_at": datetime(2026, 12, 4, tzinfo=UTC)})
    assert certificate(later, Catalogs.load().get(locale)) != body
