"""Slices: named filters with per-model accuracy, and the slice finder that looks for where the student falls behind.

Aggregate accuracy hides *which* examples distillation lost. A slice is a saved filter; its metrics are each
model's accuracy with a Wilson interval and the teacher–student gap. The slice finder searches candidate slices
(input length, gold label, teacher confidence, KL, numbers in the text, ...) for the largest teacher–student gaps,
with Benjamini–Hochberg adjusted p-values because many slices are tested at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from kd_analysis.error_analysis.filters import column_list, parse_filter
from kd_analysis.error_analysis.frames import add_features, frame_class_names
from kd_analysis.exceptions import KDLensError
from kd_analysis.stats.intervals import wilson_interval
from kd_analysis.stats.significance import benjamini_hochberg, mcnemar_exact_p, paired_difference_interval


@dataclass(frozen=True)
class Slice:
    """A named, saved filter (the page stores these and shows their metrics)."""

    name: str
    expr: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Slice:
        try:
            return cls(str(data["name"]), str(data["expr"]))
        except (KeyError, TypeError):
            raise KDLensError("a saved slice needs a name and an expression") from None


def apply_slice(frame: pd.DataFrame, slice_: Slice | str) -> pd.DataFrame:
    """The rows of the frame in the slice."""
    expr = slice_.expr if isinstance(slice_, Slice) else slice_
    return frame[parse_filter(expr)(frame).to_numpy()]


@dataclass
class RoleAccuracy:
    role: str
    n: int  # examples in the slice with a known right/wrong for this model
    correct: int
    accuracy: float | None
    ci_low: float | None  # Wilson 95%
    ci_high: float | None


@dataclass
class SliceMetrics:
    name: str
    expr: str
    n: int  # rows the slice selects
    roles: dict[str, RoleAccuracy]
    gap: float | None  # accuracy of the first role minus the second (teacher − student)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "expr": self.expr, "n": self.n}
        for role, acc in self.roles.items():
            out.update(
                {
                    f"{role}_n": acc.n,
                    f"{role}_correct": acc.correct,
                    f"{role}_accuracy": acc.accuracy,
                    f"{role}_ci_low": acc.ci_low,
                    f"{role}_ci_high": acc.ci_high,
                }
            )
        out["gap"] = self.gap
        return out


def _role_correct(frame: pd.DataFrame, role: str) -> pd.Series:
    """A role's right/wrong in either a joined frame (`<role>_correct`) or a long one (`role`, `correct`)."""
    if f"{role}_correct" in frame.columns:
        return frame[f"{role}_correct"].astype("boolean")
    if "role" in frame.columns and "correct" in frame.columns:
        return frame.loc[(frame["role"] == role).to_numpy(dtype=bool, na_value=False), "correct"].astype("boolean")
    raise KDLensError(f"the frame has no right/wrong answers for '{role}' (no '{role}_correct' column)")


def _accuracy(role: str, correct: pd.Series) -> RoleAccuracy:
    known = correct.dropna()
    n, hits = len(known), int(known.sum())
    if n == 0:
        return RoleAccuracy(role, 0, 0, None, None, None)
    low, high = wilson_interval(hits / n, n)
    return RoleAccuracy(role, n, hits, hits / n, low, high)


def slice_metrics(
    frame: pd.DataFrame, slices: Sequence[Slice], roles: Sequence[str] = ("teacher", "student")
) -> list[SliceMetrics]:
    """Per slice and model: examples, accuracy with its Wilson 95% interval, and the gap between the first two
    roles (teacher − student)."""
    out = []
    for s in slices:
        part = apply_slice(frame, s)
        accs = {role: _accuracy(role, _role_correct(part, role)) for role in roles}
        gap = None
        if len(roles) >= 2:
            a, b = accs[roles[0]].accuracy, accs[roles[1]].accuracy
            gap = a - b if a is not None and b is not None else None
        out.append(SliceMetrics(s.name, s.expr, len(part), accs, gap))
    return out


@dataclass
class SliceFinding:
    """A candidate slice with the teacher–student gap inside it and how surprising that gap is."""

    feature: str
    name: str
    expr: str  # a filter that selects exactly this slice (parse_filter accepts it)
    n: int  # examples with both answers scored
    teacher_accuracy: float
    student_accuracy: float
    gap: float  # teacher − student
    teacher_ci: tuple[float, float]
    student_ci: tuple[float, float]
    teacher_only: int  # discordant pairs inside the slice
    student_only: int
    mcnemar_p: float
    gap_ci: tuple[float, float]  # paired 95% interval of the gap (Newcombe's method 10)
    adjusted_p: float  # Benjamini–Hochberg over all candidates kept

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_slice(self) -> Slice:
        return Slice(self.name, self.expr)


def _fmt(x: float) -> str:
    """A number as a literal that parses back to exactly the same float."""
    x = float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


def _literal(value: Any) -> str | None:
    """A category value as a filter literal; None when it cannot be written as one."""
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return _fmt(float(value)) if math.isfinite(value) else None
    if isinstance(value, str) and "__" not in value:
        return repr(value)
    return None


def _is_bool_like(s: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(s.dtype):
        return True
    return s.dtype == object and all(isinstance(v, (bool, np.bool_)) for v in s.dropna())


def _distinct_short(edges: np.ndarray) -> list[str]:
    """Bin edges in as few significant digits (at least 4) as keep them apart: confidences of 0.99991 and 0.99998
    both read "1" at 4 digits, which named a bin "1 < p ≤ 1"."""
    for digits in range(4, 18):
        short = [f"{float(e):.{digits}g}" for e in edges]
        if len(set(short)) == len(short):
            return short
    return [_fmt(e) for e in edges]


def _numeric_bins(frame: pd.DataFrame, column: str, bins: int) -> list[tuple[str, str]]:
    """Quantile bins as (exact filter, short label): (−∞, q1], (q1, q2], ..., (q_last, ∞); missing values fall in
    none. The filter's numbers round-trip exactly, so it selects the very rows that were counted."""
    values = frame[column].to_numpy(dtype=float, na_value=np.nan)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return []
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1))[1:-1])
    if edges.size == 0:
        return []
    lits, short = [_fmt(e) for e in edges], _distinct_short(edges)
    out = [(f"{column} <= {lits[0]}", f"{column} ≤ {short[0]}")]
    out += [
        (f"{lo} < {column} <= {hi}", f"{slo} < {column} ≤ {shi}")
        for lo, hi, slo, shi in zip(lits, lits[1:], short, short[1:])
    ]
    out.append((f"{column} > {lits[-1]}", f"{column} > {short[-1]}"))
    return out


def _category_values(frame: pd.DataFrame, column: str, min_count: int, max_values: int) -> list[tuple[str, str]]:
    counts = frame[column].dropna().map(lambda v: v if isinstance(v, (bool, int, float, str, np.generic)) else None)
    counts = counts.dropna().value_counts()
    exprs = []
    for value, count in counts.items():
        lit = _literal(value)
        if count >= min_count and lit is not None:
            exprs.append((f"{column} == {lit}", f"{column} = {lit}"))
        if len(exprs) >= max_values:
            break
    return exprs


def _feature_exprs(
    frame: pd.DataFrame, column: str, bins: int, min_count: int, max_values: int, categorical: bool = False
) -> list[tuple[str, str]]:
    """Numbers with more distinct values than bins → quantile bins (unless `categorical`: labels are names, not
    amounts); true/false → == True / == False; the rest → one slice per common value."""
    s = frame[column]
    if s.notna().sum() == 0:
        return []
    if _is_bool_like(s):
        return [(f"{column} == True", f"{column}: yes"), (f"{column} == False", f"{column}: no")]
    if not categorical and pd.api.types.is_numeric_dtype(s.dtype) and s.nunique(dropna=True) > bins:
        return _numeric_bins(frame, column, bins)
    return _category_values(frame, column, min_count, max_values)


def _gold_words(expr: str, frame: pd.DataFrame) -> str:
    """A gold-label slice in words: `choice 4 (the 5th)` for multiple choice (the index is a position, the text
    differs per question), `class 1 (positive)` for a class the records name, the value itself otherwise."""
    literal = expr.split("==", 1)[1].strip()
    if not literal.lstrip("-").isdigit():
        return literal
    index = int(literal)
    multiple_choice = (
        "choices" in frame.columns and frame["choices"].map(lambda c: isinstance(c, list) and bool(c)).any()
    )
    if multiple_choice and index >= 0:  # numbered from 0, as the table and the chart number choices
        ordinal = {1: "st", 2: "nd", 3: "rd"}.get(index + 1 if index + 1 < 20 else (index + 1) % 10, "th")
        return f"choice {index} (the {index + 1}{ordinal})"
    name = frame_class_names(frame).get(index)
    return f"class {index}" + (f" ({name})" if name else "")


def _features(frame: pd.DataFrame, columns: Sequence[str] | None, first: str, second: str) -> list[tuple[str, str]]:
    """The candidate features as (name, column): the built-in ones the frame has, then the user's columns."""
    features: list[tuple[str, str]] = []
    if "text_tokens" in frame.columns:
        features.append(("input length", "text_tokens"))
    if "gold" in frame.columns:
        features.append(("gold label", "gold"))
    for c in (f"{first}_p_pred", f"{first}_p_gold"):
        if c in frame.columns and frame[c].notna().any():
            features.append((f"{first} confidence", c))
            break
    kl = "kl" if "kl" in frame.columns else f"{second}_kl"
    if kl in frame.columns:
        features.append(("KL", kl))
    if "has_number" in frame.columns:
        features.append(("numbers in the text", "has_number"))
    if "rationale_overlap" in frame.columns:
        features.append(("rationale overlap", "rationale_overlap"))
    for c in columns or []:
        if c not in frame.columns:
            raise KDLensError(f"unknown column '{c}'; columns are {column_list(frame.columns)}")
        if not str(c).isidentifier() or str(c).startswith("__"):
            raise KDLensError(f"column '{c}' cannot be used in a filter; rename it to letters, digits and '_'")
        if all(c != col for _, col in features):
            features.append((str(c), str(c)))
    return features


def _candidate_exprs(
    frame: pd.DataFrame, column: str, bins: int, min_count: int, max_values: int
) -> list[tuple[str, str]]:
    """One feature's candidate slices as (exact filter, words)."""
    if (
        column == "rationale_overlap"
        and not _is_bool_like(frame[column])
        and pd.api.types.is_numeric_dtype(frame[column].dtype)
    ):
        return [(f"{column} > 0", "yes"), (f"{column} == 0", "no")]
    if column == "gold":
        return [
            (e, _gold_words(e, frame))
            for e, _ in _feature_exprs(frame, column, bins, min_count, max_values, categorical=True)
        ]
    return _feature_exprs(frame, column, bins, min_count, max_values)


def find_slices(
    joined_frame: pd.DataFrame,
    columns: Sequence[str] | None = None,
    bins: int = 4,
    *,
    min_n: int = 10,
    min_count: int = 5,
    max_values: int = 20,
    roles: tuple[str, str] = ("teacher", "student"),
) -> list[SliceFinding]:
    """Search candidate slices for where the student falls behind the teacher.

    Candidates: input length (`text_tokens` quantile bins), gold label, teacher confidence (`p_pred`, else
    `p_gold`, quantile bins), per-example KL bins, digits in the text, `rationale_overlap` yes/no when present,
    and each column in `columns` (categories with ≥ `min_count` examples, or quantile bins for numbers). Slices
    with fewer than `min_n` scored examples are skipped. Each finding carries the exact McNemar p on its discordant
    pairs and a Benjamini–Hochberg adjusted p over all candidates kept; ranked by gap (largest first), then by
    adjusted p. The frame is a joined one (`join_roles`); `roles` names the reference and the compared model."""
    if bins < 2:
        raise KDLensError("the slice finder needs at least 2 bins")
    first, second = roles
    for c in (f"{first}_correct", f"{second}_correct"):
        if c not in joined_frame.columns:
            raise KDLensError(f"the slice finder needs a joined frame with '{c}' (join the records with join_roles)")
    frame = add_features(joined_frame)
    features = _features(frame, columns, first, second)

    a = frame[f"{first}_correct"].astype("boolean")
    b = frame[f"{second}_correct"].astype("boolean")
    known = (a.notna() & b.notna()).to_numpy(dtype=bool)
    av = a.to_numpy(dtype=bool, na_value=False) & known
    bv = b.to_numpy(dtype=bool, na_value=False) & known
    a_only, b_only = av & ~bv, ~av & bv

    kept: list[dict[str, Any]] = []
    seen: set[str] = set()
    for feature, column in features:
        exprs = _candidate_exprs(frame, column, bins, min_count, max_values)
        for expr, label in exprs:
            if expr in seen:
                continue
            seen.add(expr)
            mask = parse_filter(expr)(frame).to_numpy(dtype=bool) & known
            n = int(mask.sum())
            if n < min_n or n == int(known.sum()):  # too small, or every example: not a slice of anything
                continue
            ta, sa = int((av & mask).sum()), int((bv & mask).sum())
            t_only, s_only = int((a_only & mask).sum()), int((b_only & mask).sum())
            both = int((av & bv & mask).sum())
            kept.append(
                dict(
                    feature=feature,
                    name=f"{feature}: {label}",
                    expr=expr,
                    n=n,
                    teacher_accuracy=ta / n,
                    student_accuracy=sa / n,
                    gap=(ta - sa) / n,
                    teacher_ci=wilson_interval(ta / n, n),
                    student_ci=wilson_interval(sa / n, n),
                    teacher_only=t_only,
                    student_only=s_only,
                    mcnemar_p=mcnemar_exact_p(t_only, s_only),
                    gap_ci=paired_difference_interval(both, t_only, s_only, n - both - t_only - s_only),
                )
            )
    adjusted = benjamini_hochberg([k["mcnemar_p"] for k in kept])
    findings = [SliceFinding(**k, adjusted_p=p) for k, p in zip(kept, adjusted)]
    findings.sort(key=lambda f: (-f.gap, f.adjusted_p))
    return findings


def finding_rows(findings: Sequence[Mapping[str, Any]], names: tuple[str, str] = ("teacher", "student")) -> list[dict]:
    """The slice finder's findings as a table for people (the page and the HTML report): each accuracy with its
    95% Wilson interval, the gap with its paired interval, the adjusted p in two significant figures."""

    def rate(p: float, ci: Sequence[float]) -> str:
        return f"{p:.0%} ({ci[0]:.0%}–{ci[1]:.0%})"

    rows = []
    for f in findings:
        lo, hi = f["gap_ci"]
        rows.append(
            {
                "slice": f["name"],
                "n": f["n"],
                f"{names[0]} accuracy (95%)": rate(f["teacher_accuracy"], f["teacher_ci"]),
                f"{names[1]} accuracy (95%)": rate(f["student_accuracy"], f["student_ci"]),
                "gap (95%)": f"{f['gap']:+.2f} ({lo:+.2f} to {hi:+.2f})",
                "adjusted p": f"{f['adjusted_p']:.2g}",
                "filter": f["expr"],
            }
        )
    return rows
