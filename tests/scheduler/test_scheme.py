"""The assessment scheme's pure rules (scheduler.scheme): what a scheme may be, what marks
on it may be, and which interviews have no assessment."""

from __future__ import annotations

import pytest

from scheduler.errors import ValidationFailed
from scheduler.scheme import (
    DEFAULT,
    MAX_COMMENT_CHARS,
    Item,
    Marks,
    Scheme,
    checked_marks,
    checked_scheme,
    kept_on,
    marks_errors,
    no_assessment_reason,
    scheme_errors,
)


def _item(code: str) -> Item:
    return Item(code, {"fr": code, "en": code})


def test_the_default_scheme_is_the_cefr_and_an_oral_s_criteria() -> None:
    assert DEFAULT.level_codes == ("below_A1", "A1", "A2", "B1", "B2", "C1", "C2")
    assert DEFAULT.criterion_codes == ("range", "accuracy", "fluency", "interaction", "coherence")
    assert scheme_errors(DEFAULT) == []
    assert DEFAULT.level("below_A1") is not None
    assert DEFAULT.level("below_A1").label("fr") == "Inférieur à A1"  # type: ignore[union-attr]
    assert DEFAULT.criteria[1].label("en") == "Accuracy"


def test_a_scheme_survives_its_storage() -> None:
    assert Scheme.from_json(DEFAULT.to_json()) == DEFAULT


@pytest.mark.parametrize(
    ("scheme", "field"),
    [
        (Scheme((), (_item("range"),)), "levels"),
        (Scheme((_item("A1"),), ()), "criteria"),
        (Scheme((_item("A1"), _item("A1")), (_item("range"),)), "levels.1.code"),
        (Scheme((_item("A1"),), (_item("range"), _item("range"))), "criteria.1.code"),
        (Scheme((_item("A 1"),), (_item("range"),)), "levels.0.code"),
        (Scheme((_item(""),), (_item("range"),)), "levels.0.code"),
        (Scheme((_item("x" * 33),), (_item("range"),)), "levels.0.code"),
        (Scheme((Item("A1", {"fr": "A1"}),), (_item("range"),)), "levels.0.labels.en"),
        (Scheme((Item("A1", {"fr": " ", "en": "A1"}),), (_item("r"),)), "levels.0.labels.fr"),
        (
            Scheme((Item("A1", {"fr": "x" * 101, "en": "A1"}),), (_item("r"),)),
            "levels.0.labels.fr",
        ),
        (
            Scheme((Item("A1", {"fr": "a\nb", "en": "A1"}),), (_item("r"),)),
            "levels.0.labels.fr",
        ),
        (
            Scheme((Item("A1", {"fr": "A1", "en": "A1", "de": "A1"}),), (_item("r"),)),
            "levels.0.labels",
        ),
        (Scheme(tuple(_item(f"L{n}") for n in range(21)), (_item("r"),)), "levels"),
    ],
)
def test_a_bad_scheme_is_refused_naming_the_field(scheme: Scheme, field: str) -> None:
    assert field in [e.field for e in scheme_errors(scheme)]
    with pytest.raises(ValidationFailed):
        checked_scheme(scheme)


def test_a_draft_may_leave_levels_out_but_a_submission_may_not() -> None:
    draft = Marks({"range": "B1"}, None, "")
    assert marks_errors(DEFAULT, draft, complete=False) == []
    fields = [e.field for e in marks_errors(DEFAULT, draft, complete=True)]
    assert fields == ["levels", "overall_level"]
    full = Marks({c: "B2" for c in DEFAULT.criterion_codes}, "B2", "Clear and fluent.")
    assert checked_marks(DEFAULT, full, complete=True) == full


@pytest.mark.parametrize(
    ("marks", "field"),
    [
        (Marks({"grammar": "B1"}), "levels.grammar"),
        (Marks({"range": "B3"}), "levels.range"),
        (Marks({}, "Z9"), "overall_level"),
        (Marks({}, None, "x" * (MAX_COMMENT_CHARS + 1)), "comment"),
    ],
)
def test_marks_off_the_scheme_are_refused(marks: Marks, field: str) -> None:
    assert [e.field for e in marks_errors(DEFAULT, marks, complete=False)] == [field]
    with pytest.raises(ValidationFailed):
        checked_marks(DEFAULT, marks, complete=False)


def test_a_draft_keeps_what_still_fits_a_changed_scheme() -> None:
    changed = Scheme(levels=(_item("A2"), _item("B1")), criteria=(_item("range"),))
    draft = Marks({"range": "B1", "fluency": "B1"}, "C1", "kept")
    assert kept_on(changed, draft) == Marks({"range": "B1"}, None, "kept")
    assert kept_on(changed, Marks({"range": "C2"}, "A2")) == Marks({}, "A2", "")


@pytest.mark.parametrize(
    ("status", "outcome", "reason"),
    [
        ("confirmed", None, None),
        ("locked", None, None),
        ("completed", "completed", None),
        ("locked", "interrupted", "interrupted"),
        ("locked", "id_refused", "id_refused"),
        ("no_show", "no_show", "no_show"),
        ("no_show", None, "no_show"),  # marked by the timer: nobody ended the room
        ("cancelled", None, "cancelled"),
    ],
)
def test_which_interviews_have_no_assessment(
    status: str, outcome: str | None, reason: str | None
) -> None:
    assert no_assessment_reason(status, outcome) == reason
