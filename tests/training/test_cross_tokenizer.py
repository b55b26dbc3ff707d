"""Cross-tokenizer distillation: ULD (sorted probabilities) on answer positions aligned by index."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kd_analysis.exceptions import KDLensError
from kd_analysis.losses import LOSSES
from kd_analysis.models.specs import ModelSpec, StudentSpec
from kd_analysis.training.config import LossTerm, OnPolicySettings, PrimingSettings
from tests.helpers.lm_runs import arith_file, tiny_lm_config


@pytest.fixture(scope="module")
def cross_pair(tmp_path_factory):
    """A tiny Llama teacher and a tiny Qwen2 student whose BPE tokenizer has fewer merges: the same text becomes
    different token sequences."""
    from kd_analysis.models.tiny import build_tiny

    base = tmp_path_factory.mktemp("cross")
    build_tiny("llama", base / "teacher")
    build_tiny("qwen2", base / "student", bpe_tokens=290, seed=1)
    return base


def test_uld_is_the_l1_distance_of_sorted_probabilities_across_widths():
    g = torch.Generator().manual_seed(0)
    zt, zs = torch.randn(4, 9, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g, dtype=torch.float64)
    p, q = torch.softmax(zt, -1).numpy(), torch.softmax(zs, -1).numpy()
    want = []
    for pr, qr in zip(p, q):
        a, b = np.sort(pr)[::-1], np.concatenate([np.sort(qr)[::-1], np.zeros(3)])
        want.append(np.abs(a - b).sum())
    got = LOSSES["uld"].rows(torch.log_softmax(zt, -1), torch.log_softmax(zs, -1))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    perm = torch.randperm(9, generator=g)
    same = LOSSES["uld"].rows(torch.log_softmax(zt, -1), torch.log_softmax(zt[:, perm], -1))
    assert float(same.abs().max()) < 1e-12  # blind to which token is which
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: LOSSES["uld"](z, zt[:3, :5]), (x,))


def test_the_pair_check_offers_uld_to_a_cross_tokenizer_pair(cross_pair):
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.pair import check_pair

    t = load_model(ModelSpec(str(cross_pair / "teacher")))
    s = load_model(ModelSpec(str(cross_pair / "student")))
    text = "What is 3 plus 4?"
    assert t.tokenizer(text)["input_ids"] != s.tokenizer(text)["input_ids"]
    report = check_pair(t, s)
    assert not report.comparable and report.losses["uld"]["applies"] and not report.losses["kl"]["applies"]
    assert "across tokenizers" in report.losses["uld"]["reason"] and "ULD" in " ".join(report.notes)


def _train(cross_pair, tmp_path, **kw):
    from kd_analysis.models.loading import load_model
    from kd_analysis.training.loop import train

    teacher = load_model(ModelSpec(str(cross_pair / "teacher")))
    student = load_model(ModelSpec(str(cross_pair / "student")))
    student.model.float()
    settings = dict(
        student=StudentSpec(kind="model", model=ModelSpec(str(cross_pair / "student"))),
        losses=[LossTerm("ce", 0.5), LossTerm("uld", 1.0)],
    )
    cfg = tiny_lm_config(cross_pair / "teacher", arith_file(tmp_path / "a.jsonl"), **{**settings, **kw})
    seen: list = []
    res = train(cfg, models=(teacher, student), on_metrics=seen.append)
    return res, [m for m in seen if "loss" in m]


def test_a_cross_tokenizer_pair_trains_with_uld_on_aligned_positions(cross_pair, tmp_path, monkeypatch):
    from kd_analysis.training import objective

    pairs = []
    real = objective.aligned_answer_rows

    def spy(student, teacher):
        s_rows, t_rows, seq = real(student, teacher)
        counts = [
            (int((student.labels[b] != -100).sum()), int((teacher.labels[b] != -100).sum()))
            for b in range(student.labels.shape[0])
        ]
        pairs.append((s_rows.shape, t_rows.shape, counts))
        return s_rows, t_rows, seq

    monkeypatch.setattr(objective, "aligned_answer_rows", spy)
    res, steps = _train(cross_pair, tmp_path)
    assert res.state == "finished" and len(steps) == 3
    assert all(m["loss_uld"] > 0 and m["loss_ce"] > 0 for m in steps)
    s_shape, t_shape, counts = pairs[0]
    assert s_shape[0] == t_shape[0] == sum(min(a, b) for a, b in counts)  # each answer cut to the shorter one
    assert any(a != b for a, b in counts)  # the two tokenizations really differ in length
    # on-policy batches work across tokenizers too: the teacher re-tokenizes the student's sampled text
    res2, steps2 = _train(cross_pair, tmp_path, on_policy=OnPolicySettings(fraction=1.0, max_new_tokens=4), steps=2)
    assert res2.state == "finished" and all(m["on_policy_batch"] == 1.0 and "loss_uld" in m for m in steps2)


def test_cross_tokenizer_refusals(cross_pair, tmp_path):
    with pytest.raises(KDLensError, match="cross-tokenizer loss \\(uld\\)"):
        _train(cross_pair, tmp_path, losses=[LossTerm("ce", 0.5), LossTerm("kl", 0.5)])
    with pytest.raises(KDLensError, match="needs one tokenizer"):
        _train(cross_pair, tmp_path, priming=PrimingSettings("teacher"), lora=None)
