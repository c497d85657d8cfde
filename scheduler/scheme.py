"""An organisation's assessment scheme and the rules an assessment on it follows. Pure.

A scheme is an ordered scale of levels (by default the CEFR's, from "below A1" to C2) and the
criteria an interview is assessed on (by default those of an oral like CLOE's). Each has a
code, which is what is stored and exchanged, and a French and an English label, which is
what people read. An assessment keeps a copy of the scheme it was given on
(scheduler.assessments), so the rules here take the scheme to check against as a value.

Why an interview has no assessment is decided here too: the evaluator ended it as a no-show,
interrupted it, or refused the candidate's identity document; there was no oral to assess.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scheduler.errors import FieldError, ValidationFailed

LABEL_LOCALES = ("fr", "en")
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,31}$"
_CODE = re.compile(CODE_PATTERN)
MAX_LABEL_CHARS = 100
MAX_LEVELS = 20
MAX_CRITERIA = 20
MAX_COMMENT_CHARS = 5000
# The room's outcomes (rooms.room.OUTCOMES) and booking statuses after which there is
# nothing to assess, in the order they are looked for.
NO_ASSESSMENT_OUTCOMES = ("no_show", "interrupted", "id_refused")


@dataclass(frozen=True)
class Item:
    """A level of the scale or a criterion: its code and its labels by locale."""

    code: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def label(self, locale: str) -> str:
        return self.labels.get(locale) or self.labels.get("en") or self.code


@dataclass(frozen=True)
class Scheme:
    levels: tuple[Item, ...]  # lowest first
    criteria: tuple[Item, ...]

    @property
    def level_codes(self) -> tuple[str, ...]:
        return tuple(item.code for item in self.levels)

    @property
    def criterion_codes(self) -> tuple[str, ...]:
        return tuple(item.code for item in self.criteria)

    def level(self, code: str | None) -> Item | None:
        return next((item for item in self.levels if item.code == code), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "levels": [{"code": i.code, "labels": dict(i.labels)} for i in self.levels],
            "criteria": [{"code": i.code, "labels": dict(i.labels)} for i in self.criteria],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Scheme:
        """A stored scheme (checked when it was stored)."""
        return cls(
            levels=tuple(Item(i["code"], dict(i["labels"])) for i in data["levels"]),
            criteria=tuple(Item(i["code"], dict(i["labels"])) for i in data["criteria"]),
        )


def _item(code: str, fr: str, en: str) -> Item:
    return Item(code, {"fr": fr, "en": en})


DEFAULT = Scheme(
    levels=(
        _item("below_A1", "Inférieur à A1", "Below A1"),
        _item("A1", "A1", "A1"),
        _item("A2", "A2", "A2"),
        _item("B1", "B1", "B1"),
        _item("B2", "B2", "B2"),
        _item("C1", "C1", "C1"),
        _item("C2", "C2", "C2"),
    ),
    criteria=(
        _item("range", "Étendue", "Range"),
        _item("accuracy", "Correction", "Accuracy"),
        _item("fluency", "Aisance", "Fluency"),
        _item("interaction", "Interaction", "Interaction"),
        _item("coherence", "Cohérence", "Coherence"),
    ),
)


def scheme_errors(scheme: Scheme) -> list[FieldError]:
    """What is wrong with a scheme an organisation sends: empty lists, bad or repeated
    codes, missing or overlong labels. Empty when it can be stored."""
    errors: list[FieldError] = []
    for name, items, most in (
        ("levels", scheme.levels, MAX_LEVELS),
        ("criteria", scheme.criteria, MAX_CRITERIA),
    ):
        if not items:
            errors.append(FieldError(name, "must not be empty"))
        if len(items) > most:
            errors.append(FieldError(name, f"at most {most}"))
        seen: set[str] = set()
        for n, item in enumerate(items):
            if not _CODE.match(item.code):
                errors.append(FieldError(f"{name}.{n}.code", "1 to 32 letters, digits or _ . + -"))
            elif item.code in seen:
                errors.append(FieldError(f"{name}.{n}.code", f"{item.code!r} is repeated"))
            seen.add(item.code)
            for locale in LABEL_LOCALES:
                label = (item.labels.get(locale) or "").strip()
                if not label:
                    errors.append(FieldError(f"{name}.{n}.labels.{locale}", "required"))
                elif len(label) > MAX_LABEL_CHARS or any(c in label for c in "\r\n\x00"):
                    errors.append(
                        FieldError(
                            f"{name}.{n}.labels.{locale}",
                            f"one line of at most {MAX_LABEL_CHARS} characters",
                        )
                    )
            unknown = set(item.labels) - set(LABEL_LOCALES)
            if unknown:
                errors.append(
                    FieldError(f"{name}.{n}.labels", f"unknown locales: {sorted(unknown)}")
                )
    return errors


def checked_scheme(scheme: Scheme) -> Scheme:
    errors = scheme_errors(scheme)
    if errors:
        raise ValidationFailed(errors)
    return scheme


@dataclass(frozen=True)
class Marks:
    """What an assessment says: a level per criterion, an overall level, a comment."""

    levels: Mapping[str, str] = field(default_factory=dict)
    overall_level: str | None = None
    comment: str = ""


def marks_errors(scheme: Scheme, marks: Marks, *, complete: bool) -> list[FieldError]:
    """What is wrong with `marks` on `scheme`. A draft (`complete` False) may leave levels
    out; a submitted assessment gives every criterion a level, and an overall level."""
    errors: list[FieldError] = []
    levels = set(scheme.level_codes)
    criteria = scheme.criterion_codes
    for criterion, level in marks.levels.items():
        if criterion not in criteria:
            errors.append(FieldError(f"levels.{criterion}", "not a criterion of the scheme"))
        elif level not in levels:
            errors.append(FieldError(f"levels.{criterion}", "not a level of the scale"))
    if marks.overall_level is not None and marks.overall_level not in levels:
        errors.append(FieldError("overall_level", "not a level of the scale"))
    if len(marks.comment) > MAX_COMMENT_CHARS:
        errors.append(FieldError("comment", f"at most {MAX_COMMENT_CHARS} characters"))
    if complete:
        missing = [c for c in criteria if c not in marks.levels]
        if missing:
            errors.append(FieldError("levels", f"a level is needed for {', '.join(missing)}"))
        if marks.overall_level is None:
            errors.append(FieldError("overall_level", "required"))
    return errors


def checked_marks(scheme: Scheme, marks: Marks, *, complete: bool) -> Marks:
    errors = marks_errors(scheme, marks, complete=complete)
    if errors:
        raise ValidationFailed(errors)
    return marks


def kept_on(scheme: Scheme, marks: Marks) -> Marks:
    """A draft's marks that still mean something on `scheme` (which may have changed since
    the draft was saved): levels of criteria and of a scale no longer there are dropped."""
    levels = set(scheme.level_codes)
    return Marks(
        levels={
            c: lv for c, lv in marks.levels.items() if c in scheme.criterion_codes and lv in levels
        },
        overall_level=marks.overall_level if marks.overall_level in levels else None,
        comment=marks.comment,
    )


def no_assessment_reason(booking_status: str, room_outcome: str | None) -> str | None:
    """Why an interview has no assessment (None: it has, or will have, one).

    The booking's status says a no-show marked by the timer, or a cancellation; the room's
    outcome says how the evaluator ended the interview (`interrupted` and `id_refused` leave
    the booking's status unchanged, see scheduler.room_wiring)."""
    if booking_status == "cancelled":
        return "cancelled"
    if booking_status == "no_show":
        return "no_show"
    if room_outcome in NO_ASSESSMENT_OUTCOMES:
        return room_outcome
    return None
