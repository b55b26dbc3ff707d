"""Helpers shared by several test files."""

from __future__ import annotations

import json

import numpy as np

from kd_analysis.evidence.groups import (
    group_configs,
)
from kd_analysis.runs import RunStore

N = 120


def write_group_records(path, run_id, student: np.ndarray, teacher: np.ndarray, data: str) -> None:
    with open(path / "predictions.jsonl", "w", encoding="utf-8") as fh:
        for role, step, correct in (("teacher", 0, teacher), ("student", 0, 1 - student), ("student", 40, student)):
            for i, ok in enumerate(correct):
                fh.write(
                    json.dumps(
                        {
                            "run_id": run_id,
                            "data": data,
                            "role": role,
                            "step": step,
                            "example_id": f"ex-{i:03d}",
                            "correct": bool(ok),
                            "gold": 0,
                            "prediction": 0 if ok else 1,
                        }
                    )
                    + "\n"
                )


def build_groups(store: RunStore):
    """Two groups of three seeds (CE only ~55%, KL ~75%) and a teacher at ~90% on 120 shared examples."""
    rng = np.random.default_rng(11)
    teacher = (rng.random(N) < 0.9).astype(int)
    base = {
        "data": "demo:mcq",
        "teacher": {"source": "t"},
        "student": {"num_layers": 2},
        "labels": 100,
        "split_seed": 0,
        "eval_size": N,
        "steps": 40,
        "lr": 1e-4,
        "batch_size": 8,
    }
    made = {}
    for label, losses, p in (
        ("CE only", [{"name": "ce", "weight": 1.0}], 0.55),
        ("KL", [{"name": "ce", "weight": 0.5}, {"name": "kl", "weight": 0.5}], 0.75),
    ):
        for cfg in group_configs({**base, "name": label, "losses": losses, "seed": 0}, [0, 1, 2]):
            run = store.create("train", cfg, state="finished")
            write_group_records(run.path, run.run_id, (rng.random(N) < p).astype(int), teacher, "demo:mcq")
            made.setdefault(label, []).append(run.run_id)
    other = store.create("train", {**base, "data": "demo:sentiment", "name": "elsewhere"}, state="finished")
    write_group_records(other.path, other.run_id, np.ones(N, int), teacher, "demo:sentiment")
    return store, made, other.run_id
