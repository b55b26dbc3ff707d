"""One call for the page and CLI: teacher (and student) attributions on examples, rationales, overlap, agreement."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kd_analysis.attribution.agreement import agreement_summary
from kd_analysis.attribution.rationales import (
    DEFINITIONS,
    PAPER_OVERLAP,
    Attribution,
    aggregate,
    answer_positions,
    attribute_many,
    chance_overlap,
    overlap,
    select_rationale,
)
from kd_analysis.attribution.targets import MAX_TOKENS
from kd_analysis.stats.intervals import proportion_interval

KS = (1, 2, 3, 5, 8, 10)


@dataclass
class RationaleReport:
    method: str
    k: int
    teacher: list[Attribution]
    student: list[Attribution] = field(default_factory=list)
    aggregate: list[dict[str, Any]] = field(default_factory=list)
    agreement: dict[str, Any] | None = None

    def rows(self) -> list[dict[str, Any]]:
        """One row per example: rationale, correctness and every overlap definition (None when undefined)."""
        by_id = {a.example_id: a for a in self.student}
        out = []
        for t in self.teacher:
            r = select_rationale(t, self.k)
            o = overlap(t, r)
            row = {
                "example": t.example_id,
                "gold": t.gold_label,
                "teacher answer": t.predicted_label if t.prediction_computed else None,
                "teacher right": t.correct if t.prediction_computed else None,
                "rationale": r.text,
                "input cut": t.truncated,
                "overlap defined": o.defined,
                **{f"overlap {d}": o.get(d) for d in ("any", "fraction", "f1", "iou")},
                "ig delta": t.delta,
            }
            s = by_id.get(t.example_id)
            if s is not None:
                row.update(
                    {
                        "student answer": s.predicted_label if s.prediction_computed else None,
                        "student right": s.correct if s.prediction_computed else None,
                        "student rationale": select_rationale(s, self.k).text,
                    }
                )
            out.append(row)
        return out

    def truncated(self) -> dict[str, Any]:
        """Inputs cut to fit the token limit, per model: {"teacher": {"examples": n, "cut": c, "notes": {id: note}}}
        (the notes of the cut examples only)."""
        out = {}
        for role, attrs in (("teacher", self.teacher), ("student", self.student)):
            if role == "teacher" or attrs:
                cut = [a for a in attrs if a.truncated]
                out[role] = {
                    "examples": len(attrs),
                    "cut": len(cut),
                    "notes": {a.example_id: "; ".join(a.notes) for a in cut},
                }
        return out

    def heat(self, example_id: str, role: str = "teacher") -> dict[str, Any] | None:
        attrs = self.teacher if role == "teacher" else self.student
        a = next((x for x in attrs if x.example_id == example_id), None)
        if a is None:
            return None
        return {
            "words": [(w.text, w.score) for w in a.words],
            "rationale": set(select_rationale(a, self.k).indices),
            "answer": answer_positions(a) or set(),
            "attribution": a,
        }


def analyse_rationales(
    teacher,
    examples: Sequence,
    *,
    student=None,
    method: str = "ig",
    k: int = 5,
    target: str = "predicted",  # the teacher's own answer: our reading of the paper's "with respect to the teacher's output"
    steps: int = 32,
    max_tokens: int = MAX_TOKENS,
    progress: Callable[[str, int, int], None] | None = None,
    on_attribution: Callable[[str, Attribution], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RationaleReport:
    """The teacher's (and the student's) attributions, overlap aggregates and their agreement: what the page, the
    rationales job and `kd-lens rationales` all compute. `on_attribution(role, attribution)` sees each one as it
    is made; `should_stop` ends the work between examples (InterruptedError)."""
    say = progress or (lambda role, i, n: None)
    models = {"teacher": teacher, **({"student": student} if student is not None else {})}
    attrs: dict[str, list[Attribution]] = {}
    rows = []
    for role, loaded in models.items():
        attrs[role] = attribute_many(
            loaded,
            examples,
            method=method,
            target=target,
            steps=steps,
            max_tokens=max_tokens,
            progress=lambda i, n, role=role: say(role, i, n),
            on_each=(lambda a, role=role: on_attribution(role, a)) if on_attribution else None,
            should_stop=should_stop,
        )
        rows += [dict(r, method=method, model=role) for r in aggregate(attrs[role], ks=sorted(set(KS) | {k}))]
    s_attrs = attrs.get("student", [])
    agree = agreement_summary(attrs["teacher"], s_attrs, k) if s_attrs else None
    return RationaleReport(
        method=method, k=k, teacher=attrs["teacher"], student=s_attrs, aggregate=rows, agreement=agree
    )


# The paper's figure and when it may be shown -------------------------------------------------------------------
@dataclass(frozen=True)
class PaperReference:
    """Whether Ballout et al.'s 68% may stand beside a figure of ours, and the sentence that says why (or why not).
    `value` is the paper's figure when comparable, else None, so a caller cannot draw it by mistake."""

    comparable: bool
    value: float | None
    caption: str


def data_kind(items: Sequence) -> str:
    """'multiple_choice' when every item offers answer choices, 'mixed' when only some do, 'no_choices' otherwise
    (also for no items). Items are Examples (their `choices`) or Attributions (an input segment named 'choice …',
    which is how a saved job remembers that its examples had choices)."""

    def has_choices(item) -> bool:
        if hasattr(item, "words"):
            return any(str(w.segment).startswith("choice") for w in item.words)
        return bool(getattr(item, "choices", None))

    flags = [has_choices(i) for i in items]
    if flags and all(flags):
        return "multiple_choice"
    return "mixed" if any(flags) else "no_choices"


def paper_reference(definition: str, kind: str, role: str = "teacher", target: str = "predicted") -> PaperReference:
    """Is the paper's 68% comparable with our overlap under `definition` on data of `kind` for the `role`'s
    rationales of `target`? Only for the "any" definition (their measure: at least one extracted token is part of
    the ground truth), on multiple-choice data (where they report it), for the teacher's rationales of its own
    answer (what they extracted: attributions of the answer the teacher gave, then compared with the truth)."""
    if definition not in DEFINITIONS:
        raise ValueError(f"unknown overlap definition {definition!r}; one of {', '.join(DEFINITIONS)}")
    paper = f"Ballout et al. (2024) report {PAPER_OVERLAP:.0%}"
    if target != "predicted":
        return PaperReference(
            False,
            None,
            f"{paper} for attributions with respect to the teacher's output (its own answer); explaining the gold "
            "answer puts the answer's "
            "own tokens among the candidates by construction, so overlap runs higher and no paper figure is shown "
            "(choose Explain: its own answer to compare).",
        )
    if role != "teacher":
        return PaperReference(
            False,
            None,
            f"{paper} for the teacher's extracted tokens; no paper figure exists for "
            "a student's own rationales, so none is shown.",
        )
    if definition != "any":
        return PaperReference(
            False,
            None,
            f"{paper} as the share of examples where an extracted token is part of "
            f"the ground truth (the 'any' definition); it does not measure "
            f"'{definition}' overlap, so no paper figure is shown.",
        )
    if kind != "multiple_choice":
        what = "only some examples of this data set have" if kind == "mixed" else "this data set has no"
        return PaperReference(
            False,
            None,
            f"{paper} on multiple-choice data, where the answer is one of the "
            f"input's choices; {what} answer choices, so no paper figure is shown.",
        )
    return PaperReference(
        True,
        PAPER_OVERLAP,
        f"{paper} on multiple-choice data (any-token overlap, their ~3B teacher and their data "
        "sets): a reference, not a target. Read it beside the chance level of random words, "
        "which is high when the input has few candidate words.",
    )


# Intervals ---------------------------------------------------------------------------------------------------------
def mean_interval(values: Sequence[float]) -> tuple[float | None, float | None]:
    """95% Student-t interval of a mean of scores in [0, 1], clipped to [0, 1]; (None, None) for fewer than two
    values, which say nothing about spread."""
    n = len(values)
    if n < 2:
        return None, None
    from scipy.stats import t

    mean = sum(values) / n
    sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
    half = float(t.ppf(0.975, n - 1)) * sd / n**0.5
    return max(0.0, mean - half), min(1.0, mean + half)


def overlap_interval(values: Sequence[float], definition: str) -> tuple[float | None, float | None]:
    """The 95% interval of a mean overlap over defined examples: Wilson for "any" (each example is 0 or 1, so the
    mean is a rate), a t-interval for the graded definitions."""
    if definition == "any":
        return proportion_interval(round(sum(values)), len(values))
    return mean_interval(values)


def with_intervals(rows: Sequence[dict[str, Any]], attrs: Sequence[Attribution], **select_kw) -> list[dict[str, Any]]:
    """Aggregate rows (from `aggregate(attrs, ...)`) with a 95% interval per definition added as
    "<definition> 95% low" / "<definition> 95% high", over the same defined examples of the same group."""
    groups = {
        "all": lambda a: True,
        "answered right": lambda a: a.correct is True,
        "answered wrong": lambda a: a.correct is False,
    }
    per_k: dict[int, list[tuple[Attribution, Any]]] = {}
    out = []
    for row in rows:
        k = row["k"]
        if k not in per_k:
            per_k[k] = [(a, overlap(a, select_rationale(a, k, **select_kw))) for a in attrs]
        keep = groups.get(row["group"], lambda a: False)
        defined = [o for a, o in per_k[k] if keep(a) and o.defined]
        extra = {}
        for d in DEFINITIONS:
            low, high = overlap_interval([o.get(d) for o in defined], d) if defined else (None, None)
            extra[f"{d} 95% low"], extra[f"{d} 95% high"] = low, high
        out.append({**row, **extra})
    return out


def headline(attrs: Sequence[Attribution], k: int, definition: str, **select_kw) -> dict[str, Any]:
    """The page's headline for one model: mean overlap at k with n (defined examples) and its 95% interval, the
    chance level of random words on the same examples, and whether the two are distinguishable (chance outside
    the interval; "vs chance" is their difference only then). "all equal": every defined example scored the same,
    so a t-interval has no width to show."""
    pairs = [(overlap(a, select_rationale(a, k, **select_kw)), chance_overlap(a, k, **select_kw)) for a in attrs]
    defined = [(o, c) for o, c in pairs if o.defined]
    values = [o.get(definition) for o, _ in defined]
    n = len(values)
    value = sum(values) / n if n else None
    chance = sum(c.get(definition) for _, c in defined) / n if n else None
    low, high = overlap_interval(values, definition) if n else (None, None)
    apart = None if low is None or chance is None else not (low <= chance <= high)
    return {
        "definition": definition,
        "k": k,
        "value": value,
        "n": n,
        "undefined": len(pairs) - n,
        "low": low,
        "high": high,
        "interval": "Wilson" if definition == "any" else "t",
        "chance": chance,
        "vs chance": (value - chance) if apart else None,
        "distinguishable": apart,
        "all equal": n > 1 and len(set(values)) == 1,
    }


def filtered_exports(
    rows: list[dict[str, Any]], report: RationaleReport, texts: dict[str, str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What the page exports for the rows on screen (after its filters): those rows with each example's text,
    and the attributions of those examples for every attributed model, with the text too."""
    keep = {r["example"] for r in rows}
    table = [{**r, "text": texts.get(r["example"], "")} for r in rows]
    lines = [
        {"role": role, "text": texts.get(a.example_id, ""), **a.to_dict()}
        for role, attrs in (("teacher", report.teacher), ("student", report.student or []))
        for a in attrs
        if a.example_id in keep
    ]
    return table, lines
