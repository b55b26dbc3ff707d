"""The trainer's CUDA path, end to end on tiny checkpoints: runs where a GPU is present, skipped elsewhere."""

from __future__ import annotations

import json
import math

import pytest
import torch

from kd_analysis.models.specs import ModelSpec, StudentSpec
from kd_analysis.training.config import LossTerm, TrainConfig
from kd_analysis.training.loop import train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
]


@pytest.mark.parametrize("topk", [None, 4])
def test_train_on_cuda_distils_a_decoder_and_evaluates(tiny_dir, tmp_path, topk):
    data = tmp_path / "qa.jsonl"
    data.write_text(
        "".join(json.dumps({"question": f"{i} plus one?", "answer": f"#### {i + 1}"}) + "\n" for i in range(24))
    )
    cfg = TrainConfig(
        teacher=ModelSpec(str(tiny_dir / "llama"), task="causal_lm"),
        student=StudentSpec(num_layers=1),
        data=str(data),
        losses=[LossTerm("ce", 0.5), LossTerm("kl", 0.5)],
        teacher_topk=topk,
        steps=4,
        eval_every=4,
        eval_size=4,
        batch_size=4,
        device="cuda",
        precision="bf16",
        max_new_tokens=4,
    )
    torch.cuda.reset_peak_memory_stats()
    seen: list[dict] = []
    result = train(cfg, out_dir=tmp_path / "out", on_metrics=seen.append)
    assert result.state == "finished" and result.steps == 4 and "eval_exact_match" in result.metrics
    assert all(math.isfinite(m["loss"]) for m in seen if "loss" in m) and any("loss" in m for m in seen)
    assert torch.cuda.max_memory_allocated() > 0  # the work ran on the GPU, not silently on the CPU
