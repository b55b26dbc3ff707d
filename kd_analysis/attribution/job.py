"""Rationales over a whole data set as a background job: results land in the run folder and reopen instantly.

Run config (kind "rationales"): teacher (ModelSpec), student (StudentSpec or null), data, method, target, k,
steps, limit, max_tokens (the cap on input tokens; the model's own maximum applies when smaller). Artefacts:
attributions.jsonl (one line per example and model) and report.json (aggregates, and the inputs that were cut).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from kd_analysis.attribution.agreement import agreement_summary
from kd_analysis.attribution.methods import METHODS
from kd_analysis.attribution.rationales import Attribution, aggregate
from kd_analysis.attribution.report import KS, RationaleReport, analyse_rationales
from kd_analysis.attribution.targets import MAX_TOKENS
from kd_analysis.data.refs import describe_data
from kd_analysis.fileio import append_jsonl, read_jsonl
from kd_analysis.runs import Run
from kd_analysis.runs.kinds import RATIONALES
from kd_analysis.runs.layout import CHECKPOINT

ATTRIBUTIONS, REPORT = "attributions.jsonl", "report.json"


def _method_title(method: str) -> str:
    return METHODS[method].title if method in METHODS else method


def rationale_config(
    teacher,
    student,
    data: str,
    *,
    method: str = "saliency",
    target: str = "predicted",  # the teacher's own answer: our reading of the paper's "with respect to the teacher's output"
    k: int = 5,
    steps: int = 32,
    limit: int | None = None,
    max_tokens: int = MAX_TOKENS,
    name: str = "",
) -> dict[str, Any]:
    return {
        "teacher": teacher.to_dict(),
        "student": student.to_dict() if student else None,
        "data": data,
        "method": method,
        "target": target,
        "k": k,
        "steps": steps,
        "limit": limit,
        "max_tokens": max_tokens,
        "name": name or f"{_method_title(method)} rationales on {describe_data(data)}",
    }


def rationale_job(run: Run, stop: threading.Event, store=None) -> tuple[str, str | None, dict]:
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.specs import ModelSpec, StudentSpec
    from kd_analysis.models.students import derive_student

    cfg = run.config()
    teacher = load_model(ModelSpec.from_dict(cfg["teacher"]))
    models = {"teacher": teacher}
    if cfg.get("student"):
        models["student"] = derive_student(teacher, StudentSpec.from_dict(cfg["student"]))
    examples = load_dataset(cfg["data"]).examples[: cfg.get("limit") or None]
    n = len(examples)
    total = n * len(models)
    run.log(f"attributing {n} examples with {cfg['method']} ({', '.join(models)})")
    roles = list(models)
    try:
        report = analyse_rationales(
            teacher,
            examples,
            student=models.get("student"),
            method=cfg["method"],
            k=int(cfg.get("k", 5)),
            target=cfg.get("target", "gold"),
            steps=cfg.get("steps", 32),
            max_tokens=cfg.get("max_tokens") or MAX_TOKENS,
            progress=lambda role, i, _n: run.append_metrics(
                {"step": roles.index(role) * n + i, "total_steps": total, "role": role}
            ),
            on_attribution=lambda role, a: append_jsonl(run.path / ATTRIBUTIONS, {"role": role, **a.to_dict()}),
            should_stop=stop.is_set,
        )
    except InterruptedError:
        done = len(read_jsonl(run.path / ATTRIBUTIONS)) if (run.path / ATTRIBUTIONS).exists() else 0
        return "cancelled", f"cancelled after {done} of {total} attributions", {}
    run.write_json(
        REPORT, {"aggregate": report.aggregate, "agreement": report.agreement, "truncated": report.truncated()}
    )
    for role, t in report.truncated().items():
        if t["cut"]:
            run.log(
                f"{role}: {t['cut']} of {t['examples']} inputs were cut from the left of the question to fit "
                "the token limit (see each example's notes)"
            )
    run.log(f"finished: {total} attributions")
    return "finished", None, {}


def _report(cfg: dict, results: dict[str, list[Attribution]]) -> RationaleReport:
    k = int(cfg.get("k", 5))
    rows = []
    for role, attrs in results.items():
        rows += [dict(r, method=cfg["method"], model=role) for r in aggregate(attrs, ks=sorted(set(KS) | {k}))]
    agree = agreement_summary(results["teacher"], results["student"], k) if results.get("student") else None
    return RationaleReport(
        method=cfg["method"],
        k=k,
        teacher=results.get("teacher", []),
        student=results.get("student", []),
        aggregate=rows,
        agreement=agree,
    )


def load_rationale_run(run: Run) -> RationaleReport:
    """Reopen a finished (or partial) job from its folder, without recomputing anything."""
    results: dict[str, list[Attribution]] = {"teacher": [], "student": []}
    for line in read_jsonl(run.path / ATTRIBUTIONS):
        role = line.pop("role", "teacher")
        results.setdefault(role, []).append(Attribution.from_dict(line))
    if not results["student"]:
        results.pop("student")
    return _report(run.config(), results)


def agreement_table(store) -> list[dict[str, Any]]:
    """Teacher-student agreement of every finished rationales job that attributed a student: how far a student
    looks at its teacher's words before and after distillation (one row per job, newest first)."""
    from kd_analysis.models.specs import StudentSpec

    rows = []
    for summary in store.list(kind=RATIONALES):
        run = store.get(summary.run_id)
        cfg, report = run.config(), run.read_json(REPORT)
        if summary.state != "finished" or not report or not report.get("agreement") or not cfg.get("student"):
            continue
        agree = report["agreement"]
        acc = {r["model"]: r for r in report["aggregate"] if r["group"] == "all" and r["k"] == agree["k"]}
        student = acc.get("student", {})
        rows.append(
            {
                "job": summary.run_id,
                "name": cfg.get("name", ""),
                "teacher": cfg["teacher"]["source"],
                "student": student_words(store, StudentSpec.from_dict(cfg["student"])),
                "examples": agree["examples"],
                "k": agree["k"],
                "mean spearman": agree["mean_spearman"],
                "top-k overlap": agree["mean_topk_overlap"],
                "student overlap (any)": student.get("any"),
                "teacher overlap (any)": acc.get("teacher", {}).get("any"),
                "student accuracy": _accuracy(run, "student"),
            }
        )
    return rows


def student_words(store, spec) -> str:
    """A student in words: one read from a run's checkpoint is named by that run (its name, else its id), not
    by the checkpoint's path."""
    source = spec.model.source if spec.kind == "model" and spec.model is not None else ""
    folder = Path(source)
    if folder.name == CHECKPOINT:
        try:
            run = store.get(folder.parent.name)
            return f"the student of run {run.config().get('name') or run.run_id}"
        except Exception:  # not a run of this store (a folder elsewhere): its path says what it is
            pass
    return spec.describe()


def _accuracy(run: Run, role: str) -> float | None:
    right = [
        line["correct"]
        for line in read_jsonl(run.path / ATTRIBUTIONS)
        if line.get("role") == role and line.get("correct") is not None
    ]
    return sum(right) / len(right) if right else None


def same_model_source(a: str | None, b: str) -> bool:
    """Two model sources name the same model: equal strings, the same folder, or copies of one run's checkpoint
    (a run store moved elsewhere keeps `<run id>/checkpoint`)."""
    from pathlib import Path

    if not a:
        return False
    if a == b:
        return True
    pa, pb = Path(a), Path(b)
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve() or (pa.name == pb.name == "checkpoint" and pa.parent.name == pb.parent.name)
    return False


def newest_rationale_job(store, data: str, teacher_source: str) -> str | None:
    """The newest finished rationales job on `data`, one made with this teacher first: what the Saliency page
    shows before any click."""
    same_data = []
    for summary in store.list(kind=RATIONALES):  # newest first
        cfg = store.get(summary.run_id).config()
        if summary.state == "finished" and cfg.get("data") == data:
            if same_model_source((cfg.get("teacher") or {}).get("source"), teacher_source):
                return summary.run_id
            same_data.append(summary.run_id)
    return same_data[0] if same_data else None
