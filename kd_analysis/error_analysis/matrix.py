"""The right/wrong matrix and flips: where a student fails and the teacher did not, and what one student fixed or
broke relative to another.

Counts the teacher–student 2×2 right/wrong matrix on the examples both answered, with an exact McNemar test (paired
outcomes on the same examples, so an unpaired test of two accuracies would be wrong), and compares two students
(what B fixed and broke).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from kd_analysis.error_analysis.frames import Rows, join_roles, side_of
from kd_analysis.exceptions import DataError
from kd_analysis.stats.significance import MCNEMAR_TEST, mcnemar_exact_p


def _counts(frame: pd.DataFrame, first: str, second: str) -> tuple[int, int, int, int]:
    a = frame[f"{first}_correct"].astype("boolean")
    b = frame[f"{second}_correct"].astype("boolean")
    known = (a.notna() & b.notna()).to_numpy(dtype=bool)
    av = a.to_numpy(dtype=bool, na_value=False)[known]
    bv = b.to_numpy(dtype=bool, na_value=False)[known]
    return (int((av & bv).sum()), int((av & ~bv).sum()), int((~av & bv).sum()), int((~av & ~bv).sum()))


@dataclass
class Disagreement:
    """The teacher–student right/wrong matrix on the examples both answered (and scored)."""

    examples: int
    both_right: int
    teacher_only: int  # teacher right, student wrong: what distillation lost
    student_only: int  # student right, teacher wrong
    both_wrong: int
    teacher_accuracy: float
    student_accuracy: float
    mcnemar_p: float
    test: str = MCNEMAR_TEST

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def disagreement(teacher_rows: Rows, student_rows: Rows, *, step: int | None = None) -> Disagreement:
    """Count both-right / teacher-only / student-only / both-wrong over the examples both models answered with a
    known right/wrong, and test b = teacher-only against c = student-only with the exact McNemar test.

    `step` picks the student's evaluation step (default: its latest)."""
    joined = join_roles({"teacher": teacher_rows, "student": student_rows}, step={"student": step})
    both_right, teacher_only, student_only, both_wrong = _counts(joined, "teacher", "student")
    n = both_right + teacher_only + student_only + both_wrong
    if n == 0:
        raise DataError("the teacher's and the student's records share no example with a known right/wrong answer")
    return Disagreement(
        n,
        both_right,
        teacher_only,
        student_only,
        both_wrong,
        (both_right + teacher_only) / n,
        (both_right + student_only) / n,
        mcnemar_exact_p(teacher_only, student_only),
    )


@dataclass
class Flips:
    """Student B against student A on the same examples: what B fixed (A wrong, B right) and broke."""

    examples: int
    fixed: int
    broke: int
    both_right: int
    both_wrong: int
    a_accuracy: float
    b_accuracy: float
    mcnemar_p: float
    test: str = MCNEMAR_TEST
    fixed_ids: list[str] = field(default_factory=list)
    broke_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def flips(student_a_rows: Rows, student_b_rows: Rows, *, step_a: int | None = None, step_b: int | None = None) -> Flips:
    """Which examples student B fixed and broke relative to student A, with the exact McNemar test on the two
    counts. The same run at two evaluation steps works too: pass its records twice with `step_a`/`step_b`."""
    a, b = side_of(student_a_rows, "student"), side_of(student_b_rows, "student")
    joined = join_roles({"a": a, "b": b}, step={"a": step_a, "b": step_b})
    known = joined["cell"].notna().to_numpy(dtype=bool)
    joined = joined[known]
    if joined.empty:
        raise DataError("the two students' records share no example with a known right/wrong answer")
    both_right, broke, fixed, both_wrong = _counts(joined, "a", "b")
    n = len(joined)
    ids = joined["example_id"]
    return Flips(
        n,
        fixed,
        broke,
        both_right,
        both_wrong,
        (both_right + broke) / n,
        (both_right + fixed) / n,
        mcnemar_exact_p(fixed, broke),
        fixed_ids=ids[(joined["cell"] == "b_only").to_numpy()].tolist(),
        broke_ids=ids[(joined["cell"] == "a_only").to_numpy()].tolist(),
    )
