"""Helpers shared by several test files."""

from __future__ import annotations

import json
from pathlib import Path

from kd_analysis.models.specs import ModelSpec, StudentSpec
from kd_analysis.runs import RunStore
from kd_analysis.runs.records import PREDICTIONS
from kd_analysis.training.config import LoraSettings, LossTerm, PrimingSettings, RationaleSettings, TrainConfig


def mc_file(path: Path, n: int = 40) -> Path:
    rows = [
        {
            "id": f"q{i}",
            "question": f"what is {i} plus one",
            "answerKey": "AB"[i % 2],
            "choices": {
                "label": ["A", "B"],
                "text": [str(i + 1), str(i + 7)] if i % 2 == 0 else [str(i + 7), str(i + 1)],
            },
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def train_config(tiny_dir, tmp_path, **kw) -> TrainConfig:
    base = dict(
        teacher=ModelSpec(str(tiny_dir / "gpt2"), task="multiple_choice"),
        student=StudentSpec(num_layers=1),
        data=str(mc_file(tmp_path / "mc.jsonl")),
        steps=10,
        eval_every=5,
        eval_size=8,
        batch_size=4,
        losses=[LossTerm("ce"), LossTerm("kl")],
        lr=1e-3,
    )
    base.update(kw)
    return TrainConfig(**base)


def gsm8k_file(path, n=24):
    rows = [
        {
            "question": f"Ann has {i} pens and buys 2 more. How many pens does Ann have?",
            "answer": f"Ann has {i} + 2 = {i + 2} pens.\n#### {i + 2}",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def priming_store(root, runs):
    """A run store with one finished priming run per (run id, strategy, hits out of 24 held-out questions)."""
    from kd_analysis.runs import RunStore

    store = RunStore(root)
    for rid, strategy, hits in runs:
        run = store.create(
            "train", {"data": "demo:arithmetic", "priming": {"strategy": strategy} if strategy else None}, run_id=rid
        )
        run.append_metrics({"step": 0, "held_out": 24, "eval_exact_match": 0.0, "eval_answer_nll": 2.0})
        run.append_metrics({"step": 0, "teacher_exact_match": 0.25})
        run.append_metrics({"step": 10, "eval_exact_match": hits / 24, "eval_answer_nll": 1.0 - hits / 100})
        run.set_status("finished")
    return store


def finished_run(store: RunStore, run_id: str, cfg: TrainConfig):
    """A training run made the way the app makes one (worker, metrics, status), with its predictions.jsonl."""
    from kd_analysis.training.worker import run_worker

    run = store.create("train", cfg.to_dict(), run_id=run_id, state="queued")
    assert run_worker(None, run_id=run_id, root=str(store.root), config=cfg) == 0
    assert run.status()["state"] == "finished" and (run.path / PREDICTIONS).exists()
    return run


def backfill_configs(tiny_dir: Path, tmp_path: Path) -> dict[str, TrainConfig]:
    arith = str(gsm8k_file(tmp_path / "arith.jsonl"))
    bert = ModelSpec(str(tiny_dir / "bert"), task="multiple_choice")
    return {
        "mc-full-checkpoint": train_config(tiny_dir, tmp_path, steps=4, eval_every=2),
        "mc-teacher-full-checkpoint": train_config(
            tiny_dir, tmp_path, train_teacher=True, losses=[LossTerm("ce")], steps=3, eval_every=3
        ),
        "mc-teacher-lora": train_config(
            tiny_dir,
            tmp_path,
            teacher=bert,
            train_teacher=True,
            losses=[LossTerm("ce")],
            lora=LoraSettings(r=2, alpha=4),
            steps=3,
            eval_every=3,
        ),
        "mc-rationale-append": train_config(
            tiny_dir,
            tmp_path,
            teacher=bert,
            steps=2,
            eval_every=2,
            rationales=RationaleSettings(mode="append", target="gold", k=3),
        ),
        "priming-lora-generation": TrainConfig(
            teacher=ModelSpec(str(tiny_dir / "llama")),
            student=StudentSpec(num_layers=1),
            data=arith,
            steps=3,
            eval_every=3,
            eval_size=4,
            batch_size=4,
            max_new_tokens=4,
            lr=1e-3,
            losses=[LossTerm("ce", 0.6), LossTerm("rkl", 0.4)],
            lora=LoraSettings(r=4, alpha=8),
            priming=PrimingSettings("teacher"),
        ),
    }


def tamper(run, step: int, name: str, change) -> None:
    """Change one value the run logged at `step` in its metrics.jsonl."""
    rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    row = next(r for r in rows if r.get("step") == step and name in r)
    row[name] = change(row[name])
    (run.path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
