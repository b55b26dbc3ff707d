"""A run's evaluations as the Distillation runs page shows them: one row per evaluation, not per training step.

metrics.jsonl mixes training steps (loss terms, throughput, `teacher_cache_hits`) with evaluation rows
(`eval_*`, and the teacher's own score at step 0: `teacher_accuracy`, `teacher_exact_match`, ...). Prefix tests alone
let every training row in (`teacher_cache_hits` starts with "teacher_"), so the table listed every step.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from kd_analysis.runs.kinds import TRAIN
from kd_analysis.training.progress import EVAL_PREFIX, TEACHER_PREFIX


def eval_rows(metrics: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per evaluated step: the step and its eval_* values, with the teacher's scores (step 0) beside the
    live model's; steps without an evaluation are left out. Teacher scores come from rows that are not training
    steps (no "loss"), the rule `progress.teacher_metrics` follows."""
    rows: dict[int, dict[str, Any]] = {}
    for m in metrics:
        step = m.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            continue
        values = {
            k: v
            for k, v in m.items()
            if (k.startswith(EVAL_PREFIX) or (k.startswith(TEACHER_PREFIX) and "loss" not in m))
            and isinstance(v, (int, float))
            and not isinstance(v, bool)
        }
        if values:
            rows.setdefault(step, {"step": step}).update(values)
    return [rows[s] for s in sorted(rows)]


RATES = ("accuracy", "exact_match")  # shares of the held-out examples


def eval_table(rows: list[dict[str, Any]], metrics: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """`eval_rows` as a table for people: each rate with its n (the held-out examples of the run's step-0 row)
    and a 95% Wilson interval beside it, as every rate in kd-lens is shown."""
    from kd_analysis.stats.intervals import wilson_interval

    n = next(
        (m["held_out"] for m in metrics if isinstance(m.get("held_out"), int) and not isinstance(m["held_out"], bool)),
        None,
    )
    out = []
    for row in rows:
        shown = dict(row)
        for key, value in row.items():
            if key.split("_", 1)[-1] in RATES and isinstance(value, (int, float)) and n:
                low, high = wilson_interval(value, n)
                shown[f"{key} 95%"] = f"{low:.1%}–{high:.1%}"
        if n:
            shown["n"] = n
        out.append(shown)
    return out


def config_fingerprint(config: dict[str, Any]) -> str:
    """A stable digest of a run config (key order ignored): two submissions of the same form share it."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def active_twin(store, config: dict[str, Any]) -> str | None:
    """The id of a queued or running training run whose config equals `config` (a repeated submit), or None."""
    want = config_fingerprint({k: v for k, v in config.items() if k != "kind"})
    for summary in store.list(kind=TRAIN):
        if summary.state not in ("queued", "running"):
            continue
        have = store.get(summary.run_id).config()
        if config_fingerprint({k: v for k, v in have.items() if k != "kind"}) == want:
            return summary.run_id
    return None
