"""The error-analysis questions asked of the run store: one call per question, shared by the CLI and the page.

A run's `predictions.jsonl` holds its teacher's records (step 0) and its student's (final evaluation), so one run
answers "where does the student fail and the teacher did not?" on its own; a second run answers "which examples
did distillation fix or break?". Notes and tags live beside the runs (`notes.sqlite`), keyed by data set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from kd_analysis.error_analysis.frames import PREDICTIONS, join_roles, load_records
from kd_analysis.exceptions import KDLensError
from kd_analysis.runs import RunStore

CELLS = ("both_right", "teacher_only", "student_only", "both_wrong")


def run_records(store: RunStore, run_id: str) -> pd.DataFrame:
    """Every per-example record of one run; a run without them is refused with what to do."""
    run = store.get(run_id)
    if not (run.path / PREDICTIONS).exists():
        raise KDLensError(
            f"run {run_id} has no per-example records ({PREDICTIONS}): runs write them when they "
            f"evaluate; for a finished run from before that: "
            f"`python -m kd_analysis errors backfill {run_id}`"
        )
    frame = load_records(run.path / PREDICTIONS)
    if frame.empty:
        raise KDLensError(f"run {run_id}: {PREDICTIONS} holds no records")
    return frame


def _role(frame: pd.DataFrame, role: str, run_id: str) -> pd.DataFrame:
    rows = frame[frame["role"] == role]
    if rows.empty:
        raise KDLensError(f"run {run_id} has no {role} records (it may be a teacher-training run)")
    return rows


def run_data(store: RunStore, run_id: str) -> str:
    """The data set the run evaluated on: the key notes and tags are filed under."""
    data = store.get(run_id).config().get("data")
    return data if isinstance(data, str) and data else run_id


def _distils(store: RunStore, run_id: str) -> bool:
    """True when the run's loss has a term other than plain CE on the labels (a KD student)."""
    losses = store.get(run_id).config().get("losses")
    return isinstance(losses, list) and any(
        isinstance(t, dict) and t.get("name") != "ce" and isinstance(t.get("weight"), (int, float)) and t["weight"] > 0
        for t in losses
    )


def default_run(store: RunStore, paired: list[str], data: str | None, preferred: str | None = None) -> str | None:
    """The run the error page opens with: one on the sidebar's data set (its examples are the ones the user picked),
    `preferred` when it is such a run, else the first distillation student there, else any run on that data, else
    `preferred` or the first run at all. `paired` lists runs with teacher and student records, in store order."""
    on_data = [r for r in paired if run_data(store, r) == data]
    for pool in (on_data, paired):
        if preferred in pool:
            return preferred
        if pool:
            return next((r for r in pool if _distils(store, r)), pool[0])
    return None


def pair_frame(store: RunStore, run_id: str) -> pd.DataFrame:
    """Teacher and student of one run side by side: one row per example, with its disagreement cell."""
    frame = run_records(store, run_id)
    return join_roles({"teacher": _role(frame, "teacher", run_id), "student": _role(frame, "student", run_id)})


def matrix(store: RunStore, run_id: str, against: str | None = None) -> dict[str, Any]:
    """The 2×2 teacher/student matrix of one run with its exact McNemar test, or with `against`, which
    examples the second run's student fixed and broke relative to the first's."""
    from kd_analysis.error_analysis.matrix import disagreement, flips

    frame = run_records(store, run_id)
    if against is None:
        out = disagreement(_role(frame, "teacher", run_id), _role(frame, "student", run_id)).to_dict()
        return {"run": run_id, **out}
    other = run_records(store, against)
    out = flips(_role(frame, "student", run_id), _role(other, "student", against)).to_dict()
    return {"run": run_id, "against": against, **out}


@dataclass
class PairView:
    """What the page and the report show for one pair: teacher × student of a run, or its student (a) × another
    run's student (b). `cells` are the four matrix cells' counts under the cell names of `frame`."""

    run_id: str
    against: str | None
    frame: pd.DataFrame  # one row per example with both answers (join_roles), with its `cell`
    counts: dict[str, Any]  # matrix() as is, McNemar included
    first: str  # column prefixes: teacher/student, or a/b
    second: str
    names: tuple[str, str]  # how the two models are called on screen
    cells: dict[str, int]
    accuracies: tuple[float, float]
    sources: tuple[str, ...] = ()  # other analyses of the data joined onto `frame` (rationales, primed outputs)
    features: tuple[str, ...] = ()  # their columns the slice finder tries beside its defaults

    @property
    def lost(self) -> int:
        """Examples only the first model gets right (the student lost them, or run b broke them)."""
        return self.cells[f"{self.first}_only"]

    @property
    def gained(self) -> int:
        return self.cells[f"{self.second}_only"]

    @property
    def n(self) -> int:
        return int(self.counts["examples"])

    def sentence(self) -> str:
        """The matrix in one plain sentence, with its McNemar p and what it means at the 5% level."""
        p = float(self.counts["mcnemar_p"])
        verdict = "a real difference at the 5% level" if p < 0.05 else "not distinguishable"
        lost, gained = self.lost, self.gained
        if self.against is None:
            return (
                f"The student is wrong on {lost} example{'s' * (lost != 1)} the teacher gets right and right on "
                f"{gained} it gets wrong; p = {p:.2g}: {verdict}."
            )
        return (
            f"The other run's student fixed {gained} example{'s' * (gained != 1)} this run's student gets wrong "
            f"and broke {lost} it gets right; p = {p:.2g}: {verdict}."
        )


def pair_view(store: RunStore, run_id: str, against: str | None = None) -> PairView:
    from kd_analysis.error_analysis.joins import join_analyses

    counts = matrix(store, run_id, against)
    if against is None:
        frame = pair_frame(store, run_id)
        first, second, names = "teacher", "student", ("teacher", "student")
        cells = {c: int(counts[c]) for c in CELLS}
        accuracies = (counts["teacher_accuracy"], counts["student_accuracy"])
    else:
        a, b = run_records(store, run_id), run_records(store, against)
        frame = join_roles({"a": _role(a, "student", run_id), "b": _role(b, "student", against)})
        frame = frame[frame["cell"].notna()].reset_index(drop=True)
        first, second, names = "a", "b", ("student A (this run)", "student B (the other run)")
        cells = {
            "both_right": int(counts["both_right"]),
            "a_only": int(counts["broke"]),
            "b_only": int(counts["fixed"]),
            "both_wrong": int(counts["both_wrong"]),
        }
        accuracies = (counts["a_accuracy"], counts["b_accuracy"])
    joined = join_analyses(frame, store, run_data(store, run_id))
    return PairView(
        run_id,
        against,
        joined.frame,
        counts,
        first,
        second,
        names,
        cells,
        accuracies,
        tuple(joined.sources),
        tuple(joined.features),
    )


def examples(
    store: RunStore,
    run_id: str,
    cell: str = "all",
    where: str | None = None,
    sort: str | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """The run's examples in one cell of the matrix (or all), filtered by a safe expression, sorted."""
    from kd_analysis.error_analysis.filters import select_examples

    if cell not in (*CELLS, "all"):
        raise KDLensError(f"unknown cell {cell!r}; one of {', '.join(CELLS)}, all")
    frame = pair_frame(store, run_id)
    if cell != "all":
        frame = frame[frame["cell"] == cell]
    return select_examples(frame, where, sort_by=sort, limit=limit)


def slices(store: RunStore, run_id: str, min_n: int = 10) -> list[dict[str, Any]]:
    """Feature-defined slices ranked by the teacher–student accuracy gap (slice finder)."""
    from kd_analysis.error_analysis.slices import find_slices

    view = pair_view(store, run_id)
    return [f.to_dict() for f in find_slices(view.frame, columns=list(view.features), min_n=min_n)]


def notes_store(store: RunStore):
    from kd_analysis.error_analysis.notes import NotesStore

    return NotesStore.at(Path(store.root))
