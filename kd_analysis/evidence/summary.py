"""One row per run group with what a reader needs beside its mean: seeds, n, the 95% band across seeds, and, for a
distillation group, the share of the teacher–student gap it closes over its CE-only twin (with its interval)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kd_analysis.evidence.groups import RunGroup, ce_twin, final_correct, gap, is_ce_only, list_groups, members
from kd_analysis.runs import RunStore
from kd_analysis.runs.kinds import TRAIN


def group_rows(store: RunStore, groups: Sequence[RunGroup] | None = None) -> list[dict[str, Any]]:
    groups = list(groups) if groups is not None else list_groups(store)
    rows = []
    for g in groups:
        twin = None if is_ce_only(g.config) else ce_twin(store, g, groups)
        closed = gap(store, g.group, twin.group, groups) if twin and g.runs else None
        teacher = None
        if g.runs:
            try:
                teacher = float(final_correct(store, g.runs[0], role="teacher").mean())
            except Exception:
                teacher = None
        rows.append(
            {
                "group": g.group,
                "name": g.name,
                "data": g.data,
                "labels": g.config.get("labels"),
                "seeds": len(g.runs),
                "eval examples": g.eval_examples,
                "mean": g.mean,
                "low": g.interval[0] if g.interval else None,
                "high": g.interval[1] if g.interval else None,
                "accuracies": g.accuracies,
                "teacher": teacher,
                "ce twin": twin.group if twin else None,
                "gap closed": closed.value if closed else None,
                "gap low": closed.interval[0] if closed and closed.interval else None,
                "gap high": closed.interval[1] if closed and closed.interval else None,
                "gap note": closed.note
                if closed
                else ("CE only: the baseline" if is_ce_only(g.config) else "no CE-only twin in the store"),
            }
        )
    return rows


def group_curve(
    store: RunStore, group: str, metric: str = "eval_accuracy", groups: Sequence[RunGroup] | None = None
) -> dict[str, list[float]]:
    """Mean of `metric` across the group's seeds at each step they all logged, with a 95% t band."""
    from kd_analysis.stats.paired import t_interval

    per_run = []
    for rid in members(store, group, groups):
        points = {
            m["step"]: m[metric]
            for m in store.get(rid).metrics()
            if isinstance(m.get(metric), (int, float)) and "step" in m
        }
        per_run.append(points)
    steps = sorted(set.intersection(*(set(p) for p in per_run))) if per_run else []
    out: dict[str, list[float]] = {"step": [], "mean": [], "low": [], "high": []}
    for s in steps:
        values = [p[s] for p in per_run]
        band = t_interval(values) or (values[0], values[0])
        out["step"].append(s)
        out["mean"].append(float(np.mean(values)))
        out["low"].append(band[0])
        out["high"].append(band[1])
    return out


RUN_TWIN_KEYS = ("seed", "split_seed")  # a single run's CE-only twin also shares its seed (and so its split)


def run_gaps(store: RunStore, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """For each distillation run among `run_ids` whose CE-only twin is in the store (same data, pair, labels,
    split, budget and seed): the share of the gap it closes, with its interval, and the twin's id."""
    from kd_analysis.evidence.groups import TWIN_KEYS

    def key(cfg: dict[str, Any]) -> tuple:
        return tuple(json_key(cfg.get(k)) for k in (*TWIN_KEYS, *RUN_TWIN_KEYS))

    configs = {}
    for summary in store.list(kind=TRAIN):
        try:
            configs[summary.run_id] = store.get(summary.run_id).config()
        except Exception:
            continue
    ce_runs = {
        key(c): rid
        for rid, c in configs.items()
        if is_ce_only(c) and not c.get("train_teacher") and store.get(rid).status().get("state") == "finished"
    }
    out = {}
    for rid in run_ids:
        cfg = configs.get(rid)
        if (
            not cfg
            or is_ce_only(cfg)
            or cfg.get("train_teacher")
            or not isinstance(cfg.get("losses"), list)
            or key(cfg) not in ce_runs
        ):
            continue
        twin = ce_runs[key(cfg)]
        try:
            closed = gap(store, rid, twin)
        except Exception:
            continue
        out[rid] = {"twin": twin, "value": closed.value, "interval": closed.interval, "note": closed.note}
    return out


def json_key(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, default=str)
