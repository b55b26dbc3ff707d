"""The inside views of two slices of one run's examples side by side (e.g. the examples the student lost against
those both models got right): where, by depth, the student's reading of one slice parts from the other's."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kd_analysis.data.example import Example
from kd_analysis.exceptions import KDLensError
from kd_analysis.inside.report import inside_report

MAX_PER_SLICE = 64


def slice_reports(
    teacher: Any,
    student: Any,
    slices: Mapping[str, Sequence[Example]],
    *,
    limit: int = MAX_PER_SLICE,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, dict[str, Any]]:
    """One inside report per slice (its first `limit` examples); each carries its n, and its lens per layer a 95%
    interval of p(gold) over that slice's examples."""
    chosen = {name: list(examples)[:limit] for name, examples in slices.items()}
    small = [name for name, examples in chosen.items() if len(examples) < 2]
    if small:
        raise KDLensError(f"a slice needs at least 2 examples to compare; {', '.join(small)} has fewer")
    total, done = sum(len(e) for e in chosen.values()), 0
    out = {}
    for name, examples in chosen.items():

        def step(n: int, _total: int, offset: int = done) -> None:
            if progress:
                progress(offset + n, total)

        out[name] = inside_report(teacher, student, examples, progress=step, should_stop=should_stop).to_dict()
        done += len(examples)
    return out
