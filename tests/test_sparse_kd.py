"""Top-k teacher KD over the full vocabulary: k + 1 buckets against dense references and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import log_softmax

from kd_analysis.errors import KDLensError
from kd_analysis.losses import LOSSES, bucket_logprobs, sparse_kd, tail_mass, teacher_topk_logprobs

ROWWISE = [n for n, spec in LOSSES.items() if spec.rows is not None]


def _pair(rows=5, vocab=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(rows, vocab, generator=g, dtype=torch.float64) * 2,
        torch.randn(rows, vocab, generator=g, dtype=torch.float64) * 2,
    )


def test_every_row_divergence_has_a_sparse_form():
    assert {"kl", "rkl", "js", "tvd", "skew_kl", "soft_ce"} <= set(ROWWISE)
    assert "sinkhorn" not in ROWWISE
    with pytest.raises(KDLensError, match="not a row-wise divergence"):
        s, t = _pair()
        lp, idx = teacher_topk_logprobs(t, 5)
        sparse_kd("sinkhorn", s, lp, idx)


@pytest.mark.parametrize("name", ROWWISE)
@pytest.mark.parametrize("tau", [1.0, 2.0, 5.9])
def test_k_equal_v_is_the_dense_loss(name, tau):
    s, t = _pair()
    lp, idx = teacher_topk_logprobs(t, t.shape[-1], tau=tau)
    dense = LOSSES[name](s, t, tau=tau).item()
    assert sparse_kd(name, s, lp, idx, tau=tau).item() == pytest.approx(dense, abs=1e-6, rel=1e-9)


def _bucket_reference(s: np.ndarray, t: np.ndarray, k: int, tau: float):
    """The k + 1 bucket distributions built by hand in NumPy from full softmaxes (independent of the library)."""
    lt, ls = log_softmax(t / tau, -1), log_softmax(s / tau, -1)
    P, Q = [], []
    for i in range(len(t)):
        top = np.argsort(-lt[i])[:k]
        p, q = np.exp(lt[i, top]), np.exp(ls[i, top])
        P.append(np.append(p, 1 - p.sum()))
        Q.append(np.append(q, 1 - q.sum()))
    return np.array(P), np.array(Q)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_k_below_v_equals_divergences_of_hand_built_buckets(k):
    """k < V: the value is the divergence between the (k + 1)-bucket distributions, computed here by hand."""
    s, t = _pair(vocab=30, seed=1)
    tau = 1.5
    P, Q = _bucket_reference(s.numpy(), t.numpy(), k, tau)
    M = (P + Q) / 2
    ref = {
        "kl": (P * np.log(P / Q)).sum(-1),
        "rkl": (Q * np.log(Q / P)).sum(-1),
        "js": 0.5 * (P * np.log(P / M)).sum(-1) + 0.5 * (Q * np.log(Q / M)).sum(-1),
        "tvd": 0.5 * np.abs(P - Q).sum(-1),
        "soft_ce": -(P * np.log(Q)).sum(-1),
        "skew_kl": (P * np.log(P / (0.1 * P + 0.9 * Q))).sum(-1),
    }
    lp, idx = teacher_topk_logprobs(t, k, tau=tau)
    for name, values in ref.items():
        got = sparse_kd(name, s, lp, idx, tau=tau, reduction="none").numpy()
        np.testing.assert_allclose(got, values, rtol=1e-9, atol=1e-12, err_msg=name)


def test_k_below_v_differs_from_renormalising_over_the_top_k():
    """The old path (both sides renormalised over the teacher's k tokens) gives another number when k < V."""
    s, t = _pair(vocab=30, seed=2)
    lp, idx = teacher_topk_logprobs(t, 4)
    renormalised = LOSSES["kl"](s.gather(-1, idx), t.gather(-1, idx)).item()
    assert abs(sparse_kd("kl", s, lp, idx).item() - renormalised) > 1e-2


def test_student_mass_outside_the_top_k_is_charged():
    """A student with 99.8% of its mass outside the teacher's top-k: ≈ 0 when renormalised, large here."""
    V, k = 1000, 10
    teacher = torch.full((1, V), -10.0, dtype=torch.float64)
    teacher[0, :k] = 10.0
    student = torch.zeros(1, V, dtype=torch.float64)
    student[0, :k] = -1.3  # same shape as the teacher on the top-k, tiny share of its mass
    lp, idx = teacher_topk_logprobs(teacher, k)
    t_tail, s_tail = tail_mass(student, lp, idx)
    assert s_tail.item() > 0.99 and t_tail.item() < 1e-6
    renormalised = LOSSES["rkl"](student.gather(-1, idx), teacher.gather(-1, idx)).item()
    dense = LOSSES["rkl"](student, teacher).item()
    sparse = sparse_kd("rkl", student, lp, idx).item()
    assert renormalised < 1e-8
    assert sparse > 10 and sparse <= dense + 1e-9  # the tail bucket can only merge, never overstate
    # by hand: buckets P = (p_1..p_k, tail_t), Q = (q_1..q_k, tail_s)
    q = math.exp(-1.3) / (k * math.exp(-1.3) + (V - k))
    p_tail = (V - k) * math.exp(-20.0) / (k + (V - k) * math.exp(-20.0))
    s_tail_exact = (V - k) / (k * math.exp(-1.3) + (V - k))
    p = (1 - p_tail) / k
    by_hand = k * q * math.log(q / p) + s_tail_exact * math.log(s_tail_exact / p_tail)
    assert sparse == pytest.approx(by_hand, rel=1e-9)


def test_gradients_flow_to_the_tail_and_match_finite_differences():
    s, t = _pair(rows=3, vocab=12, seed=3)
    lp, idx = teacher_topk_logprobs(t, 4, tau=2.0)
    x = s.clone().requires_grad_(True)
    for name in ("kl", "rkl", "js", "tvd"):
        assert torch.autograd.gradcheck(lambda z, name=name: sparse_kd(name, z, lp, idx, tau=2.0), (x,)), name
    (g,) = torch.autograd.grad(sparse_kd("kl", x, lp, idx), x)
    outside = torch.ones_like(s, dtype=torch.bool).scatter_(-1, idx, False)
    assert g[outside].abs().max() > 1e-4  # columns outside the top-k get gradient through the tail bucket


def test_reused_logsumexp_and_mask():
    s, t = _pair(rows=6)
    lp, idx = teacher_topk_logprobs(t, 8, tau=2.0)
    lse = torch.logsumexp(s / 2.0, -1)
    a = sparse_kd("js", s, lp, idx, tau=2.0)
    b = sparse_kd("js", s, lp, idx, tau=2.0, student_lse=lse)
    assert a.item() == pytest.approx(b.item(), rel=1e-12)
    mask = torch.tensor([1, 0, 1, 1, 0, 0], dtype=torch.bool)
    per_row = sparse_kd("js", s, lp, idx, tau=2.0, reduction="none")
    assert sparse_kd("js", s, lp, idx, tau=2.0, mask=mask, student_lse=lse).item() == pytest.approx(
        per_row[mask].mean().item(), rel=1e-12
    )
    assert sparse_kd("js", s, lp, idx, tau=2.0, tau_squared=True).item() == pytest.approx(4 * a.item(), rel=1e-12)


def test_buckets_are_distributions_and_k_equal_v_has_no_tail():
    s, t = _pair()
    lp, idx = teacher_topk_logprobs(t, 7)
    P, Q = bucket_logprobs(s, lp, idx)
    assert P.shape == (5, 8) and Q.shape == (5, 8)
    torch.testing.assert_close(P.exp().sum(-1), torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(Q.exp().sum(-1), torch.ones(5, dtype=torch.float64))
    lp_full, idx_full = teacher_topk_logprobs(t, 40)
    assert bucket_logprobs(s, lp_full, idx_full)[0].shape == (5, 40)


def test_width_limits_the_teacher_ids_but_not_its_normaliser():
    t = torch.tensor([[0.0, 1.0, 2.0, 9.0]], dtype=torch.float64)  # column 3 exists only in the teacher
    lp, idx = teacher_topk_logprobs(t, 2, width=3)
    assert idx.tolist() == [[2, 1]]
    np.testing.assert_allclose(lp.numpy(), log_softmax(t.numpy(), -1)[:, [2, 1]])


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(lp=torch.zeros(5, 3) + 0.5), "log-probabilities"),
        (dict(idx=torch.full((5, 3), 99)), "outside the student's vocabulary"),
        (dict(lp=torch.zeros(4, 3) - 1, idx=torch.zeros(4, 3, dtype=torch.long)), r"\[rows, k\]"),
        (dict(tau=0.0), "τ"),
    ],
)
def test_bad_input(bad, match):
    s = torch.randn(5, 40)
    lp = bad.get("lp", torch.full((5, 3), -2.0))
    idx = bad.get("idx", torch.zeros(5, 3, dtype=torch.long))
    with pytest.raises(KDLensError, match=match):
        sparse_kd("kl", s, lp, idx, tau=bad.get("tau", 1.0))


@pytest.mark.parametrize("name", ["kl", "rkl", "js"])
def test_float32_matches_float64(name):
    """The training loop runs in float32: values and gradients agree with float64 on realistic tails."""
    s, t = _pair(rows=8, vocab=2000, seed=7)
    lp, idx = teacher_topk_logprobs(t, 64, tau=2.0)
    x64 = s.clone().requires_grad_(True)
    x32 = s.float().clone().requires_grad_(True)
    v64 = sparse_kd(name, x64, lp, idx, tau=2.0)
    v32 = sparse_kd(name, x32, lp.float(), idx, tau=2.0)
    (g64,) = torch.autograd.grad(v64, x64)
    (g32,) = torch.autograd.grad(v32, x32)
    assert v32.item() == pytest.approx(v64.item(), rel=1e-4)
    torch.testing.assert_close(g32.double(), g64, rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("tau", [1.0, 2.0, 5.9])
def test_fast_logsumexp_matches_torch_and_gradcheck(tau):
    from kd_analysis.losses.sparse import logsumexp_at

    z = torch.randn(5, 13, dtype=torch.float64) * 4
    z[0, 3] = float("-inf")  # a masked column
    torch.testing.assert_close(logsumexp_at(z, tau), torch.logsumexp(z / tau, -1))
    x = torch.randn(4, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: logsumexp_at(v, tau), (x,))


def test_a_top_k_that_covers_the_vocabulary_keeps_rows_unsorted_and_within_budget():
    """k ≥ V stores the rows as they are (no sort) and gives the same loss; past the byte budget examples are
    returned for this step but not kept, and the cache says so."""
    from kd_analysis.data.example import Example
    from kd_analysis.training.teacher_cache import TeacherCache

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 12, generator=g)
    labels = torch.tensor([[-100, 1, 2, 3, -100], [4, 5, -100, -100, -100], [6, 7, 8, 9, 10]])
    examples = [Example(str(i), f"q{i}") for i in range(3)]
    full = TeacherCache(topk=64, temperatures=(1.0, 2.0))
    sorted_k = TeacherCache(topk=12, temperatures=(1.0, 2.0))
    made = full.put_lm(examples, logits, labels, None)
    sorted_k.put_lm(examples, logits, labels, None)
    a, b = full.lm(examples, "cpu"), sorted_k.lm(examples, "cpu")
    assert torch.equal(a.indices[0], torch.arange(12, dtype=a.indices.dtype))  # kept in column order
    student = torch.randn(a.logits.shape[0], 12, generator=g)
    for tau in (1.0, 2.0):
        assert torch.allclose(
            sparse_kd("kl", student, a.logprobs(tau), a.indices.long(), tau=tau),
            sparse_kd("kl", student, b.logprobs(tau), b.indices.long(), tau=tau),
            atol=1e-6,
        )
    one_example = 8 * 3 * 12 + 4 * 3 * 2  # values and ids of 3 positions, one normaliser per position and τ
    small = TeacherCache(topk=64, temperatures=(1.0, 2.0), budget_bytes=one_example)
    fresh = small.put_lm(examples, logits, labels, None)
    assert set(small.entries) == {"0"} and small.over_budget and set(fresh) == {"0", "1", "2"}
    assert torch.equal(small.lm(examples, "cpu", fresh).logits, a.logits) and set(made) == set(fresh)
