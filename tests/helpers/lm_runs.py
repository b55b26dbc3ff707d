"""Short language-model training runs on tiny fixtures, shared by the tests of the LM training paths."""

from __future__ import annotations

import json
from pathlib import Path

from kd_analysis.models.specs import ModelSpec, StudentSpec
from kd_analysis.training.config import TrainConfig


def arith_file(path: Path) -> Path:
    """Twelve generated arithmetic questions with their answers (JSONL)."""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(12):
            f.write(json.dumps({"question": f"What is {i} plus {i + 1}?", "answer": str(2 * i + 1)}) + "\n")
    return path


def tiny_lm_config(teacher: Path, data: Path, **kw) -> TrainConfig:
    """A few steps of a 1-layer student of `teacher` on `data`, evaluated once at the end on two questions."""
    steps = kw.pop("steps", 3)
    settings = dict(
        teacher=ModelSpec(str(teacher)),
        student=StudentSpec(num_layers=1),
        data=str(data),
        steps=steps,
        eval_every=steps,
        eval_size=2,
        batch_size=4,
        max_new_tokens=2,
        lr=1e-3,
        save_checkpoint=False,
    )
    return TrainConfig(**{**settings, **kw})
