"""A priming experiment: one student run per strategy from a shared base config, and the accuracy table.

Relative gain is against the `none` strategy's student (distillation without priming), as in the paper; the
paper's own numbers are shown beside ours, never mixed into them.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Sequence

from kd_analysis.errors import KDLensError
from kd_analysis.priming.strategies import PAPER_ACCURACY, STRATEGIES
from kd_analysis.training.config import PrimingSettings, TrainConfig


def strategy_configs(base: TrainConfig, strategies: Sequence[str],
                     templates: dict[str, str] | None = None) -> list[TrainConfig]:
    """One config per strategy, identical but for the priming settings (and the name)."""
    if not strategies:
        raise KDLensError("choose at least one strategy")
    templates = templates or {}
    out = []
    for s in strategies:
        if s not in STRATEGIES:
            raise KDLensError(f"unknown strategy {s!r}; one of {', '.join(STRATEGIES)}")
        edited = templates.get(s)
        custom = edited if edited and edited != STRATEGIES[s].template else None
        cfg = replace(base, priming=PrimingSettings(strategy=s, template=custom),
                      name=f"{base.name + ': ' if base.name else ''}priming {s}{' (edited)' if custom else ''}")
        cfg.validate()
        out.append(cfg)
    return out


def _at_start(metrics: list[dict], key: str) -> float | None:
    return next((m[key] for m in metrics if m.get("step") == 0 and key in m), None)


def _final(metrics: list[dict], key: str) -> float | None:
    vals = [m[key] for m in metrics if m.get(key) is not None]
    return vals[-1] if vals else None


def wilson_interval(p: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion: honest at 0% or 100%, where the normal one collapses."""
    if n <= 0:
        return 0.0, 1.0
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_table(store, run_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Per priming run: strategy, student and teacher exact match with the student's 95% interval, the
    students' gold-answer NLL (moves long before exact match does), gain relative to the `none` student."""
    rows = []
    for rid in run_ids:
        run = store.get(rid)
        cfg = run.config()
        priming = cfg.get("priming") or {}
        if not priming:
            continue
        metrics = run.metrics()  # read once: the page redraws this table every few seconds
        acc = _final(metrics, "eval_exact_match")
        n = _at_start(metrics, "held_out") or 0
        low, high = wilson_interval(acc, n) if acc is not None and n else (None, None)
        rows.append({"run": rid, "strategy": priming.get("strategy"), "edited template": bool(priming.get("template")),
                     "state": run.status().get("state"), "student exact match": acc,
                     "95% low": low, "95% high": high, "eval questions": n or None,
                     "student before": _at_start(metrics, "eval_exact_match"),
                     "student answer NLL": _final(metrics, "eval_answer_nll"),
                     "NLL before": _at_start(metrics, "eval_answer_nll"),
                     "teacher exact match": _final(metrics, "teacher_exact_match")})
    base = next((r["student exact match"] for r in rows if r["strategy"] == "none"
                 and r["student exact match"] is not None), None)
    for r in rows:
        acc = r["student exact match"]
        r["gain vs none"] = (acc - base) / base if base and acc is not None else None
        r["paper (GSM8K, 8B student)"] = PAPER_ACCURACY.get(r["strategy"])
    return rows


def priming_runs(store) -> list[str]:
    """Finished or live priming runs in the store, newest first."""
    return [s.run_id for s in store.list(kind="train") if (store.get(s.run_id).config().get("priming"))]
