"""ULD's reduction over a batch, as its references compute it: each sequence's mean over its answer positions,
then the mean over the sequences (Boizard et al.'s `DistillationLoss`, TRL's GOLD `ULDLoss`), on every path a
language-model run takes: dense teacher rows, a top-k cache covering the vocabulary, the exact online mode's
blocks, and a cross-tokenizer pair. The reference below is that procedure written out sequence by sequence."""

from __future__ import annotations

import math

import pytest
import torch

from kd_analysis.data.example import Example
from kd_analysis.losses.chunked_head import Head, Term, chunked_head_loss
from kd_analysis.losses.registry import LOSSES, reduction_weights
from kd_analysis.models.specs import ModelSpec
from kd_analysis.training.batches import AnswerRows, LMBatch
from kd_analysis.training.config import LossTerm, TrainConfig
from kd_analysis.training.objective import cross_vocab_terms, kd_loss_terms
from kd_analysis.training.teacher_cache import TeacherCache
from tests.helpers.rounding import U64

pytestmark = pytest.mark.numeric

V = 24
# answers of 1 and 5 positions: a per-sequence mean weighs the short answer's position 5 times more than a token mean
LABELS = torch.tensor([[-100, -100, -100, -100, -100, 3, -100], [-100, 2, 4, 6, 8, 10, -100]])


def _uld_by_sequence(student: torch.Tensor, teacher: torch.Tensor, s_labels, t_labels, tau: float = 1.0):
    """Boizard et al.'s procedure: per sequence, softmax at τ over each model's answer positions, cut both to the
    shorter answer, sort each row's probabilities (zero-padding the smaller vocabulary), Σ |difference| per
    position, mean over the positions; then the mean over the sequences."""
    per_sequence = []
    for b in range(student.shape[0]):
        s = torch.softmax(student[b][s_labels[b] != -100] / tau, -1)
        t = torch.softmax(teacher[b][t_labels[b] != -100] / tau, -1)
        m = min(s.shape[0], t.shape[0])
        s, t = s[:m].sort(-1, descending=True).values, t[:m].sort(-1, descending=True).values
        width = max(s.shape[-1], t.shape[-1])
        s = torch.nn.functional.pad(s, (0, width - s.shape[-1]))
        t = torch.nn.functional.pad(t, (0, width - t.shape[-1]))
        per_sequence.append((s - t).abs().sum(-1).mean())
    return torch.stack(per_sequence).mean()


def _uld_token_mean(student, teacher, labels):
    keep = labels != -100
    return LOSSES["uld"](student[keep], teacher[keep]).item()


def _pair(seed: int = 0, vocab_t: int = V):
    g = torch.Generator().manual_seed(seed)
    student = (torch.randn(2, 7, V, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    teacher = torch.randn(2, 7, vocab_t, generator=g, dtype=torch.float64) * 3
    return student, teacher


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(teacher=ModelSpec("x"), losses=[LossTerm("uld")], tau=2.0, **kw)


def test_reduction_weights_give_each_sequence_an_equal_share():
    seq = torch.tensor([0, 1, 1, 1, 1, 3, 3])
    w = reduction_weights("sequence", seq)
    assert w.tolist() == pytest.approx([1 / 3, 1 / 12, 1 / 12, 1 / 12, 1 / 12, 1 / 6, 1 / 6], rel=1e-15)
    assert reduction_weights("token", seq).tolist() == pytest.approx([1 / 7] * 7, rel=1e-15)
    assert reduction_weights("sequence", torch.tensor([], dtype=torch.long)).shape == (0,)
    assert LOSSES["uld"].reduce == "sequence"
    assert all(spec.reduce == "token" for name, spec in LOSSES.items() if name != "uld")


@pytest.mark.parametrize("path", ["dense rows", "cache with k = V"])
def test_uld_averages_each_sequence_then_the_batch_as_its_references_do(path):
    """Value and gradient as the loop computes them (statistics on), against the reference; the token mean,
    which the reference does not compute, is well apart on this batch."""
    student, teacher = _pair()
    out = LMBatch(student, LABELS, int((LABELS != -100).sum()))
    rows = AnswerRows.of(out)
    if path == "dense rows":
        teacher_rows = teacher[LABELS != -100]
        cfg = _cfg(teacher_cache="none")
    else:
        cache = TeacherCache(topk=V, temperatures=(1.0,))
        examples = [Example(id=str(b), text="q") for b in range(2)]
        cache.put_lm(examples, teacher, LABELS, None)
        teacher_rows = cache.lm(examples, "cpu")
        cfg = _cfg(teacher_topk=V)
    got = kd_loss_terms(cfg, out, teacher_rows, V, rows=rows, stats={})["uld"]
    (grad,) = torch.autograd.grad(got, student)
    want = _uld_by_sequence(student, teacher, LABELS, LABELS)  # τ 1 without τ²: ULD's reference temperature
    (want_grad,) = torch.autograd.grad(want, student)
    # sums of ≤ 2V probabilities ≤ 1 in another order: a few u64 × 2V; 64 × that allowed
    tol = 64 * U64 * 2 * V
    assert got.item() == pytest.approx(want.item(), rel=0, abs=tol)
    assert torch.allclose(grad, want_grad, rtol=0, atol=tol)
    assert abs(_uld_token_mean(student.detach(), teacher, LABELS) - want.item()) > 0.05


def test_the_exact_online_modes_blocks_reduce_uld_per_sequence():
    """`chunked_head_loss` (the exact online mode) with the row weights the loop gives it, in blocks of 2
    positions that cut across the sequences: value and gradient of the hidden states as the reference's."""
    g = torch.Generator().manual_seed(4)
    hs = torch.randn(2, 7, 5, generator=g, dtype=torch.float64).requires_grad_(True)
    ht = torch.randn(2, 7, 5, generator=g, dtype=torch.float64)
    ws, wt = torch.randn(V, 5, generator=g, dtype=torch.float64), torch.randn(V, 5, generator=g, dtype=torch.float64)
    keep = LABELS != -100
    seq = keep.nonzero()[:, 0]
    term = Term("uld", 1.0, 1.0, 1.0, {}, reduction_weights("sequence", seq))
    total, values = chunked_head_loss(
        Head(hs[keep], ws, None), Head(ht[keep], wt, None), LABELS[keep], [term], block=2, norms={}
    )
    (grad,) = torch.autograd.grad(total, hs)
    hs2 = hs.detach().clone().requires_grad_(True)
    want = _uld_by_sequence(hs2 @ ws.T, ht @ wt.T, LABELS, LABELS)
    (want_grad,) = torch.autograd.grad(want, hs2)
    tol = 64 * U64 * 2 * V
    assert total.item() == pytest.approx(want.item(), rel=0, abs=tol) and values["uld"] == pytest.approx(total.item())
    assert torch.allclose(grad, want_grad, rtol=0, atol=tol * 10)


def test_a_cross_tokenizer_pair_averages_each_examples_aligned_positions():
    """Two vocabularies (24 and 31 tokens) and two tokenizations: the teacher's answers are 3 and 2 positions
    long, the student's 1 and 5, so the aligned rows are 1 and 2; each example's mean, then the batch's."""
    student, teacher = _pair(seed=2, vocab_t=31)
    t_labels = torch.tensor([[-100, -100, 1, 2, 3, -100, -100], [-100, -100, -100, -100, 4, 5, -100]])
    s_out = LMBatch(student, LABELS, 6)
    t_out = LMBatch(teacher, t_labels, 5)
    got = cross_vocab_terms(_cfg(), s_out, t_out, 0, 1, {})["uld"]
    (grad,) = torch.autograd.grad(got, student)
    want = _uld_by_sequence(student, teacher, LABELS, t_labels)
    (want_grad,) = torch.autograd.grad(want, student)
    tol = 64 * U64 * 2 * 31
    assert got.item() == pytest.approx(want.item(), rel=0, abs=tol)
    assert torch.allclose(grad, want_grad, rtol=0, atol=tol)
    # the token mean over the 3 aligned rows weighs the second example twice: not what the references compute
    rows = [(0, [5], [2]), (1, [1, 2], [4, 5])]
    token = torch.cat(
        [
            LOSSES["uld"].rows(
                torch.log_softmax(teacher[b, t_pos], -1), torch.log_softmax(student.detach()[b, s_pos], -1)
            )
            for b, s_pos, t_pos in rows
        ]
    ).mean()
    assert abs(token.item() - want.item()) > 0.01
    assert not math.isclose(token.item(), got.item(), rel_tol=1e-6)
