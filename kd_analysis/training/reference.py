"""The demo's reference runs: a MiniLM teacher fine-tuned (LoRA) on the multiple-choice demo, then a 2-layer
MiniLM student distilled from it with CE only, KL, reverse KL, JS and Sinkhorn (SinKD).

Regenerate with `python -m kd_analysis runs make-reference` (about 5 minutes on 2 CPU cores). The teacher's
LoRA adapter (~1.4 MB) is kept so students can be distilled from it on a fresh clone; student weights are not.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from kd_analysis.models.specs import ModelSpec, StudentSpec
from kd_analysis.runs import RunStore
from kd_analysis.training.config import LoraSettings, LossTerm, TrainConfig

TEACHER_RUN = "reference-minilm-mc-teacher"
STUDENT_LOSSES = {"ce": [LossTerm("ce", 1.0)],
                  "kl": [LossTerm("ce", 0.5), LossTerm("kl", 0.5)],
                  "rkl": [LossTerm("ce", 0.5), LossTerm("rkl", 0.5)],
                  "js": [LossTerm("ce", 0.5), LossTerm("js", 0.5)],
                  "sinkhorn": [LossTerm("ce", 0.5), LossTerm("sinkhorn", 0.5)]}
COMMON = dict(data="demo:mcq", epochs=4, eval_every=27, eval_size=52, batch_size=8, seed=0, device="cpu")


def teacher_source(store: RunStore) -> str:
    """The reference teacher's adapter folder, relative to the working directory when it lies below it."""
    path = (store.root / TEACHER_RUN / "checkpoint").resolve()
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    except ValueError:
        return str(path)


def reference_configs(store: RunStore) -> list[tuple[str, TrainConfig]]:
    teacher = TrainConfig(name="Reference teacher: MiniLM + LoRA fine-tuned on the MC demo",
                          teacher=ModelSpec("minilm", task="multiple_choice"), train_teacher=True, lr=1e-3,
                          losses=[LossTerm("ce", 1.0)], lora=LoraSettings(r=8, alpha=16), **COMMON)
    out = [(TEACHER_RUN, teacher)]
    for name, losses in STUDENT_LOSSES.items():
        out.append((f"reference-minilm-2l-{name}", TrainConfig(
            name=f"Reference student (2 layers): {' + '.join(t.name for t in losses)}",
            teacher=ModelSpec(teacher_source(store), task="multiple_choice"), student=StudentSpec(num_layers=2),
            losses=losses, tau=2.0, lr=1e-4, save_checkpoint=False, **COMMON)))
    return out


def make_reference(store: RunStore | None = None, log: Callable[[str], None] = print,
                   only: list[str] | None = None) -> list[str]:
    """Run every reference config in this process; each replaces its old folder only once it has finished."""
    from kd_analysis.training.worker import run_worker

    store = store or RunStore()
    done = []
    for run_id, cfg in reference_configs(store):
        if only and run_id not in only:
            continue
        log(f"{run_id}: {cfg.name}")
        tmp_id = f"{run_id}.new"
        shutil.rmtree(store.root / tmp_id, ignore_errors=True)
        run = store.create("train", cfg.to_dict(), run_id=tmp_id, name=cfg.name, reference=True)
        code = run_worker(run.path / "config.json", run_id=tmp_id, root=str(store.root))
        if code or run.status().get("state") != "finished":
            raise RuntimeError(f"{run_id} did not finish: {run.status().get('reason')} (see {run.path}/log.txt)")
        final = store.root / run_id
        if final.exists():
            shutil.rmtree(final)
        os.replace(run.path, final)
        metrics = [m for m in store.get(run_id).metrics() if "eval_accuracy" in m]
        log(f"{run_id}: eval accuracy {metrics[-1]['eval_accuracy']:.3f}" if metrics else f"{run_id}: done")
        done.append(run_id)
    return done
