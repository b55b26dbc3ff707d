"""Head statistics for several models (one per strategy) as a background job; results reopen instantly.

Config (kind "attention"): models = [{"label": ..., "run": RUN_ID} | {"label": ..., "spec": ModelSpec}], data,
limit, max_tokens. Each model reads the bare question through its chat template (what a primed-KD student
sees), or, when the entry has a "template", the question primed by that template (the teacher under each
strategy). Artefact: stats.json, one HeadStats per entry, written after each so a partial job still shows.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from kd_analysis.attention.stats import MAX_TOKENS, HeadStats, head_stats
from kd_analysis.runs import Run

STATS_FILE = "stats.json"


def attention_config(
    models: list[dict[str, Any]], data: str, *, limit: int = 200, max_tokens: int = MAX_TOKENS, name: str = ""
) -> dict[str, Any]:
    return {
        "models": models,
        "data": data,
        "limit": limit,
        "max_tokens": max_tokens,
        "name": name or f"Attention heads of {len(models)} model(s) on {data}",
    }


def load_labelled(entry: dict[str, Any], store):
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.specs import ModelSpec
    from kd_analysis.training.run_models import load_run_student

    if entry.get("run"):
        return load_run_student(store.get(entry["run"]))
    return load_model(ModelSpec.from_dict(entry["spec"]))


def entry_prompt(entry: dict[str, Any], loaded):
    """How an entry's model reads an example: primed by its template, or the bare question."""
    from kd_analysis.prompting.prompts import format_prompt, render_template, student_prompt

    if entry.get("template"):
        template = entry["template"]
        return lambda ex: format_prompt(loaded.tokenizer, render_template(template, ex))
    return lambda ex: student_prompt(loaded.tokenizer, ex)


def attention_job(run: Run, stop: threading.Event, store) -> tuple[str, str | None, dict]:
    from kd_analysis.data.sources import load_dataset

    cfg = run.config()
    examples = load_dataset(cfg["data"]).examples[: cfg.get("limit") or None]
    total = len(examples) * len(cfg["models"])
    done = 0
    results: list[Any] = []
    cache: dict[str, object] = {}
    for entry in cfg["models"]:
        if stop.is_set():
            return "cancelled", f"cancelled after {len(results)} of {len(cfg['models'])} models", {}
        key = json.dumps({k: v for k, v in entry.items() if k not in ("label", "template")}, sort_keys=True)
        loaded = cache.get(key) or load_labelled(entry, store)
        cache = {key: loaded}  # one model in memory; entries that share it (templates) reuse it
        run.log(f"{entry['label']}: {len(examples)} examples")
        base = done

        def tick(i, n, base=base, label=entry["label"]):
            if stop.is_set():
                raise InterruptedError
            run.append_metrics({"step": base + i, "total_steps": total, "label": label})

        try:
            stats = head_stats(
                loaded,
                examples,
                entry_prompt(entry, loaded),
                label=entry["label"],
                max_tokens=cfg.get("max_tokens", MAX_TOKENS),
                progress=tick,
            )
        except InterruptedError:
            return "cancelled", f"cancelled during {entry['label']}", {}
        done += len(examples)
        results.append(stats.to_dict())
        run.write_json(STATS_FILE, results)
    run.log(f"finished: {len(results)} models")
    return "finished", None, {}


def load_attention_run(run: Run) -> list[HeadStats]:
    return [HeadStats.from_dict(d) for d in (run.read_json(STATS_FILE) or [])]
