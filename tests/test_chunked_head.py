"""The exact online mode's block-by-block loss (`chunked_head_loss`) against the plain dense losses, and train()
with it against train() on full logits."""

from __future__ import annotations

import logging

import pytest
import torch

from kd_analysis.errors import KDLensError
from kd_analysis.losses import LOSSES
from kd_analysis.losses.chunked_head import Head, Term, block_rows, chunked_head_loss
from kd_analysis.models.specs import ModelSpec
from kd_analysis.training.config import LossTerm, PrimingSettings, StudentSpec, TrainConfig
from tests.lm_runs import arith_file, tiny_lm_config

ROW_WISE = [name for name, spec in LOSSES.items() if spec.rows is not None]


def _pair(n=29, h=12, ht=20, v=41, vt=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = torch.float64
    hs = torch.randn(n, h, generator=g, dtype=d, requires_grad=True)
    ws = torch.randn(v, h, generator=g, dtype=d, requires_grad=True)
    bs = torch.randn(v, generator=g, dtype=d, requires_grad=True)
    ht_ = torch.randn(n, ht, generator=g, dtype=d)
    wt = torch.randn(vt, ht, generator=g, dtype=d)
    labels = torch.randint(0, v, (n,), generator=g)
    return hs, ws, bs, ht_, wt, labels


@pytest.mark.parametrize("name", ROW_WISE)
def test_blocks_equal_the_dense_loss_and_its_gradients(name):
    """Blocks of 6 of 29 positions, vocabularies of 41 and 37 (KD on the 37 shared columns, CE on all 41): the
    value and the gradients for hidden states, head weight and bias equal the dense registry loss's."""
    hs, ws, bs, ht, wt, labels = _pair()
    params = LOSSES[name].defaults()
    terms = [Term("ce", 0.7), Term(name, 1.3, tau=2.0, scale=4.0, params=params)]
    total, values = chunked_head_loss(Head(hs, ws, bs), Head(ht, wt), labels, terms, width=37, block=6)
    zs, zt = hs @ ws.T + bs, ht @ wt.T
    ce = torch.nn.functional.cross_entropy(zs, labels)
    kd = LOSSES[name](zs[:, :37], zt, tau=2.0, **params) * 4.0
    want = 0.7 * ce + 1.3 * kd
    assert total.item() == pytest.approx(want.item(), rel=1e-12, abs=1e-12)
    assert values["ce"] == pytest.approx(ce.item(), rel=1e-12)
    assert values[name] == pytest.approx(kd.item(), rel=1e-12, abs=1e-14)
    got = torch.autograd.grad(total * 1.5, (hs, ws, bs))
    ref = torch.autograd.grad(want * 1.5, (hs, ws, bs))
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_gradcheck_through_the_blocks():
    hs, ws, bs, ht, wt, labels = _pair(n=7, h=3, ht=4, v=9, vt=9)
    terms = [Term("ce", 0.5), Term("kl", 1.0, tau=1.5), Term("js", 0.5)]

    def f(h, w, b):
        return chunked_head_loss(Head(h, w, b), Head(ht, wt), labels, terms, block=3)[0]

    assert torch.autograd.gradcheck(f, (hs, ws, bs))


def test_frozen_head_and_empty_batches():
    hs, ws, _, ht, wt, labels = _pair()
    ws.requires_grad_(False)
    total, _ = chunked_head_loss(Head(hs, ws), Head(ht, wt[:, :]), labels, [Term("rkl")], width=37, block=5)
    (g,) = torch.autograd.grad(total, hs)
    want = LOSSES["rkl"]((hs @ ws.T)[:, :37], ht @ wt.T)
    torch.testing.assert_close(g, torch.autograd.grad(want, hs)[0], rtol=1e-10, atol=1e-12)
    empty, values = chunked_head_loss(Head(hs[:0], ws), Head(ht[:0], wt), labels[:0], [Term("kl")])
    assert empty.item() == 0.0 and values == {"kl": 0.0}


def test_blocks_refuse_what_they_cannot_compute():
    hs, ws, _, ht, wt, labels = _pair()
    with pytest.raises(KDLensError, match="row-wise"):
        chunked_head_loss(Head(hs, ws), Head(ht, wt), labels, [Term("sinkhorn")])
    with pytest.raises(KDLensError, match="positions differ"):
        chunked_head_loss(Head(hs, ws), Head(ht[:-1], wt), labels, [Term("kl")])
    with pytest.raises(KDLensError, match="hidden states"):
        chunked_head_loss(Head(hs, ws), None, labels, [Term("kl")])
    assert block_rows(8192) == 128 and block_rows(10**9) == 32 and block_rows(8192, budget=2**25) == 1024


def test_teacher_cache_setting():
    assert TrainConfig(teacher=ModelSpec("x"), teacher_cache="none").online
    assert TrainConfig(teacher=ModelSpec("x"), teacher_topk=None).online  # the older spelling
    assert not TrainConfig(teacher=ModelSpec("x")).online
    with pytest.raises(KDLensError, match="teacher_cache must be one of topk, none"):
        TrainConfig.from_dict({"teacher": "x", "teacher_cache": "full"})


def _losses(tiny_dir, tmp_path, family, blocks: bool, monkeypatch, **kw):
    from kd_analysis.training import loop

    if not blocks:
        monkeypatch.setattr(loop, "_blockwise", lambda *a, **k: False)
    cfg = tiny_lm_config(
        tiny_dir / family,
        arith_file(tmp_path / "a.jsonl"),
        teacher_cache="none",
        tau=2.0,
        losses=[LossTerm("ce", 0.5), LossTerm("kl", 1.0), LossTerm("js", 0.3, tau=1.0)],
        **kw,
    )
    seen: list = []
    assert loop.train(cfg, on_metrics=seen.append).state == "finished"
    monkeypatch.undo()
    return [(m["loss"], m["loss_ce"], m["loss_kl"], m["loss_js"]) for m in seen if "loss" in m]


@pytest.mark.parametrize(
    "family,extra",
    [("llama", {}), ("gpt2", {}), ("qwen2", {"priming": PrimingSettings("teacher", alignment="paper")})],
)
def test_training_in_blocks_follows_training_on_full_logits(tiny_dir, tmp_path, monkeypatch, caplog, family, extra):
    """Three steps of the exact online mode, block by block and on full logits: the same losses at every step
    (each step starts from weights the previous one moved, so the gradients agree too)."""
    with caplog.at_level(logging.INFO, logger="kd_analysis.training.loop"):
        blocks = _losses(tiny_dir, tmp_path, family, True, monkeypatch, **extra)
    assert "a block of positions at a time" in caplog.text
    full = _losses(tiny_dir, tmp_path, family, False, monkeypatch, **extra)
    assert len(blocks) == len(full) == 3
    for a, b in zip(blocks, full):
        assert a == pytest.approx(b, rel=2e-5, abs=1e-6)  # float32: KL near 0 is a difference of two logs


def test_a_model_whose_output_layer_is_not_its_logits_trains_on_full_logits(tiny_dir, tmp_path, caplog):
    """A model that scales its logits after the output layer (like soft-capping) fails the split check, so the
    run says why and trains on the model's own logits."""
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.students import derive_student
    from kd_analysis.training.batches import head_split_matches
    from kd_analysis.training.loop import train

    teacher = load_model(ModelSpec(str(tiny_dir / "llama")))
    student = derive_student(teacher, StudentSpec(num_layers=1))
    assert head_split_matches(teacher) and head_split_matches(student)
    forward = teacher.model.forward

    def capped(*a, **k):
        out = forward(*a, **k)
        out.logits = 3.0 * torch.tanh(out.logits / 3.0)
        return out

    teacher.model.forward = capped
    assert not head_split_matches(teacher)
    cfg = TrainConfig(
        teacher=ModelSpec(str(tiny_dir / "llama")),
        data=str(arith_file(tmp_path / "a.jsonl")),
        steps=1,
        eval_every=1,
        eval_size=2,
        batch_size=4,
        max_new_tokens=2,
        teacher_cache="none",
        save_checkpoint=False,
    )
    with caplog.at_level(logging.INFO, logger="kd_analysis.training.loop"):
        assert train(cfg, models=(teacher, student)).state == "finished"
    assert "does not reproduce its logits" in caplog.text
