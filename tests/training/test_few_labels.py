"""The few-label regime (labels=N) and the fixed held-out split of run groups (split_seed)."""

from __future__ import annotations

import pytest
import torch

from kd_analysis.data.example import Example
from kd_analysis.exceptions import KDLensError
from kd_analysis.training.config import LossTerm, TrainConfig
from kd_analysis.training.loop import train
from kd_analysis.training.objective import ce_loss
from kd_analysis.training.run_data import few_labels, split_examples
from tests.helpers.runs import train_config

EXAMPLES = [Example(f"e{i}", f"text {i}", label=i % 3) for i in range(20)]


def test_split_seed_fixes_the_held_out_examples_across_training_seeds(tiny_dir, tmp_path):
    cfg = train_config(tiny_dir, tmp_path, eval_size=4)
    held = {
        s: {e.id for e in split_examples(EXAMPLES, TrainConfig(**{**cfg.__dict__, "seed": s}))[1]} for s in range(3)
    }
    assert len({frozenset(h) for h in held.values()}) > 1  # without split_seed each seed holds out others
    fixed = [
        {e.id for e in split_examples(EXAMPLES, TrainConfig(**{**cfg.__dict__, "seed": s, "split_seed": 7}))[1]}
        for s in range(3)
    ]
    assert fixed[0] == fixed[1] == fixed[2]
    assert fixed[0] == {e.id for e in split_examples(EXAMPLES, TrainConfig(**{**cfg.__dict__, "seed": 7}))[1]}


def test_ce_counts_only_labelled_examples():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, -1.0]], requires_grad=True)
    batch = EXAMPLES[:3]  # labels 0, 1, 2
    full = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2]))
    assert torch.allclose(ce_loss(logits, batch), full)
    only_first_two = torch.nn.functional.cross_entropy(logits[:2], torch.tensor([0, 1]))
    assert torch.allclose(ce_loss(logits, batch, labelled={"e0", "e1"}), only_first_two)
    none = ce_loss(logits, batch, labelled={"e9"})
    assert float(none) == 0.0
    none.backward()  # still part of the graph: a batch of unlabelled inputs trains through its KD terms only
    assert torch.all(logits.grad == 0)


def test_few_labels_keeps_the_transfer_set_only_for_distillation(tiny_dir, tmp_path):
    kd = train_config(tiny_dir, tmp_path, labels=5)
    train_set, labelled, line = few_labels(kd, EXAMPLES, "classification")
    assert train_set == EXAMPLES and labelled == {f"e{i}" for i in range(5)} and "15 unlabelled" in line
    ce_only = train_config(tiny_dir, tmp_path, labels=5, losses=[LossTerm("ce")])
    train_set, labelled, line = few_labels(ce_only, EXAMPLES, "classification")
    assert [e.id for e in train_set] == [f"e{i}" for i in range(5)] and "CE only" in line
    assert few_labels(train_config(tiny_dir, tmp_path), EXAMPLES, "classification") == (EXAMPLES, None, "")
    with pytest.raises(KDLensError, match="not causal_lm"):
        few_labels(kd, EXAMPLES, "causal_lm")
    with pytest.raises(KDLensError, match="labels"):
        TrainConfig.from_dict({**kd.to_dict(), "labels": 0})
    with pytest.raises(KDLensError, match="split_seed"):
        TrainConfig.from_dict({**kd.to_dict(), "split_seed": -1})


def test_more_labels_than_training_examples_is_refused_not_capped(tiny_dir, tmp_path):
    """Taking the first `labels` of fewer examples would label all of them while the config says a few."""
    too_many = train_config(tiny_dir, tmp_path, labels=len(EXAMPLES) + 1)
    with pytest.raises(KDLensError, match=f"labels is {len(EXAMPLES) + 1} but the training set has {len(EXAMPLES)}"):
        few_labels(too_many, EXAMPLES, "classification")
    assert few_labels(train_config(tiny_dir, tmp_path, labels=len(EXAMPLES)), EXAMPLES, "classification")[1] is not None
    with pytest.raises(KDLensError, match=r"labels \(30\) is more than train_size \(20\)"):
        TrainConfig.from_dict({**kd_dict(tiny_dir, tmp_path), "labels": 30, "train_size": 20})


def kd_dict(tiny_dir, tmp_path) -> dict:
    return train_config(tiny_dir, tmp_path).to_dict()


def test_a_few_label_run_logs_its_labelled_and_transfer_counts(tiny_dir, tmp_path):
    seen = []
    cfg = train_config(tiny_dir, tmp_path, labels=6, steps=4, eval_every=4, split_seed=3, seed=1)
    res = train(cfg, out_dir=tmp_path / "out", on_metrics=seen.append)
    assert res.state == "finished"
    start = next(m for m in seen if m.get("step") == 0 and "held_out" in m)
    assert start["labelled"] == 6 and start["train_examples"] == 40 - 8
    ce_seen = []
    res = train(
        train_config(tiny_dir, tmp_path, labels=6, steps=4, eval_every=4, losses=[LossTerm("ce")]),
        on_metrics=ce_seen.append,
    )
    start = next(m for m in ce_seen if m.get("step") == 0 and "held_out" in m)
    assert start["labelled"] == 6 and start["train_examples"] == 6
