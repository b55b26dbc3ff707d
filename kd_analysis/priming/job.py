"""The teacher's outputs under each strategy as a background job, so a long set (or the demo's reference) is
saved with its run and reopens without recomputing.

Config (kind "teacher_outputs"): teacher (a ModelSpec dict), data, templates [{strategy, template}] (a list:
the store writes JSON with sorted keys, and the user's order is kept), limit, generate, max_new_tokens,
batch_size. Artefact: outputs.jsonl, one TeacherOutput per (strategy, example), rewritten after
each strategy so a cancelled job keeps what it finished.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from kd_analysis.priming.teacher import TeacherOutput, teacher_outputs, to_jsonl
from kd_analysis.runs import Run
from kd_analysis.runs.kinds import TEACHER_OUTPUTS

OUTPUTS_FILE = "outputs.jsonl"
KIND = TEACHER_OUTPUTS


def outputs_config(
    teacher: dict[str, Any],
    data: str,
    templates: dict[str, str],
    *,
    limit: int = 40,
    generate: bool = True,
    max_new_tokens: int = 96,
    batch_size: int = 8,
    name: str = "",
) -> dict[str, Any]:
    from kd_analysis.prompting.prompts import check_template

    for template in templates.values():
        check_template(template)
    return {
        "teacher": teacher,
        "data": data,
        "templates": [{"strategy": s, "template": t} for s, t in templates.items()],
        "limit": limit,
        "generate": generate,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "name": name or f"Teacher outputs of {teacher.get('source')} under {len(templates)} strategies",
    }


def outputs_job(run: Run, stop: threading.Event, store=None) -> tuple[str, str | None, dict]:
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.specs import ModelSpec
    from kd_analysis.priming.teacher import check_gold_answers
    from kd_analysis.runs import PhaseReporter

    cfg = run.config()
    examples = check_gold_answers(load_dataset(cfg["data"]).examples[: cfg.get("limit") or None], cfg["data"])
    teacher = load_model(ModelSpec.from_dict(cfg["teacher"]))
    templates = {t["strategy"]: t["template"] for t in cfg["templates"]}
    total = len(examples) * len(templates)
    phases = PhaseReporter(run)
    results: dict[str, list[TeacherOutput]] = {}
    for k, (strategy, template) in enumerate(templates.items()):
        if stop.is_set():
            return "cancelled", f"cancelled after {k} of {len(templates)} strategies", {}
        run.log(f"{strategy}: {len(examples)} examples")

        def tick(_s, i, _n, base=k * len(examples), strategy=strategy):  # noqa: B008 - bound per strategy
            if stop.is_set():
                raise InterruptedError
            run.append_metrics({"step": base + i, "total_steps": total, "label": strategy})

        def token(_s, i, n, tokens, budget, strategy=strategy):  # every token: stop within one, say where
            if stop.is_set():
                raise InterruptedError
            phases.say(f"{strategy}: generating, {i}/{n} examples done, batch at token {tokens} of at most {budget}")

        try:
            results.update(
                teacher_outputs(
                    teacher,
                    examples,
                    {strategy: template},
                    generate=cfg.get("generate", True),
                    max_new_tokens=cfg.get("max_new_tokens", 96),
                    batch_size=cfg.get("batch_size", 8),
                    progress=tick,
                    on_token=token,
                )
            )
        except InterruptedError:
            return "cancelled", f"cancelled during {strategy}", {}
        run.append_metrics({"step": (k + 1) * len(examples), "total_steps": total, "label": strategy})
        run.write_text(OUTPUTS_FILE, to_jsonl(results))
    run.log(f"finished: {len(results)} strategies")
    return "finished", None, {}


def load_outputs_run(run: Run) -> dict[str, list[TeacherOutput]]:
    """Strategy -> outputs, in the job's order; empty when nothing finished yet."""
    path = run.path / OUTPUTS_FILE
    out: dict[str, list[TeacherOutput]] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            out.setdefault(row["strategy"], []).append(TeacherOutput(**row))
    return out
