"""The inside views as a saved job: one teacher against one or more students (the student before distillation,
after it, two trained students) on the same examples, computed by the worker with progress and Cancel, saved in
the run store so it reopens at once (the shipped reference results are such jobs)."""

from __future__ import annotations

import threading
from typing import Any

from kd_analysis.runs import Run, RunStore

RESULT = "inside.json"


def inside_config(
    teacher: Any,
    students: list[tuple[str, Any]],
    data: str,
    *,
    limit: int = 64,
    threshold: float = 0.5,
    max_length: int = 128,
    name: str = "",
) -> dict[str, Any]:
    """A job's config: `teacher` a ModelSpec, `students` (label, StudentSpec) pairs, read on the first `limit`
    examples of `data`."""
    return {
        "name": name or f"Inside: {teacher.source} against {len(students)} student(s) on {data}",
        "teacher": teacher.to_dict(),
        "students": [{"label": label, "student": spec.to_dict()} for label, spec in students],
        "data": data,
        "limit": int(limit),
        "threshold": float(threshold),
        "max_length": int(max_length),
    }


def inside_job(run: Run, stop: threading.Event, store: RunStore | None = None) -> tuple[str, str | None, dict]:
    """The worker's side: each student's report in turn, saved after each (a cancelled job keeps those done)."""
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.inside.report import inside_report
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.specs import ModelSpec, StudentSpec
    from kd_analysis.models.students import derive_student

    cfg = run.config()
    teacher = load_model(ModelSpec.from_dict(cfg["teacher"]))
    examples = load_dataset(cfg["data"]).examples[: int(cfg.get("limit") or 64)]
    entries = cfg["students"]
    total = len(entries) * len(examples)
    done: list[dict[str, Any]] = []
    for i, entry in enumerate(entries):
        if stop.is_set():
            break
        run.log(f"student {i + 1} of {len(entries)}: {entry['label']}")
        student = derive_student(teacher, StudentSpec.from_dict(entry["student"]))

        def step(n: int, _total: int, offset: int = i * len(examples), label: str = entry["label"]) -> None:
            run.append_metrics({"step": offset + n, "total_steps": total, "phase": f"{label}: example {n}"})

        report = inside_report(
            teacher,
            student,
            examples,
            threshold=float(cfg.get("threshold", 0.5)),
            max_length=int(cfg.get("max_length", 128)),
            progress=step,
            should_stop=stop.is_set,
        )
        done.append({"label": entry["label"], "student": entry["student"], **report.to_dict()})
        run.write_json(RESULT, {"teacher": cfg["teacher"], "data": cfg["data"], "students": done})
    if stop.is_set() and len(done) < len(entries):
        return "cancelled", f"cancelled after {len(done)} of {len(entries)} students (those are kept)", {}
    return "finished", None, {}


def load_inside_run(run: Run) -> dict[str, Any] | None:
    """A saved job's result: the teacher, the data and one report per student done so far."""
    found = run.read_json(RESULT)
    return found if isinstance(found, dict) and isinstance(found.get("students"), list) else None
