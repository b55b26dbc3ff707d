"""Top-k teacher KD over the full vocabulary: k + 1 buckets against dense references and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import log_softmax

from kd_analysis.exceptions import KDLensError
from kd_analysis.losses import LOSSES, bucket_logprobs, sparse_kd, tail_mass, teacher_topk_logprobs
from tests.helpers.rounding import U32, U64

pytestmark = pytest.mark.numeric  # floats compared across computation orders: rerun on other kernels

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


def _by_hand_rkl(V, k, t_head, t_rest, s_head):
    """Reverse KL over the buckets (p_1..p_k, tail_t), (q_1..q_k, tail_s) for rows that are constant on the top-k
    and constant on the rest (the tail shapes then agree, so the bucketed value is also the dense one)."""
    q = math.exp(s_head) / (k * math.exp(s_head) + (V - k))
    s_tail = (V - k) / (k * math.exp(s_head) + (V - k))
    p_tail = (V - k) * math.exp(t_rest - t_head) / (k + (V - k) * math.exp(t_rest - t_head))
    p = (1 - p_tail) / k
    return k * q * math.log(q / p) + s_tail * math.log(s_tail / p_tail)


def _flat_pair(V, k, t_head, t_rest, s_head):
    teacher = torch.full((1, V), t_rest, dtype=torch.float64)
    teacher[0, :k] = t_head
    student = torch.zeros(1, V, dtype=torch.float64)
    student[0, :k] = s_head
    return student, teacher


def test_student_mass_outside_the_top_k_is_charged():
    """A student with 99.8% of its mass outside a confident teacher's top-k: ≈ 0 when renormalised, large here."""
    V, k = 1000, 10
    student, teacher = _flat_pair(V, k, 10.0, -10.0, -1.3)  # same shape as the teacher on the top-k
    lp, idx = teacher_topk_logprobs(teacher, k)
    t_tail, s_tail = tail_mass(student, lp, idx)
    assert s_tail.item() > 0.99 and t_tail.item() < 1e-6
    renormalised = LOSSES["rkl"](student.gather(-1, idx), teacher.gather(-1, idx)).item()
    dense = LOSSES["rkl"](student, teacher).item()
    sparse = sparse_kd("rkl", student, lp, idx).item()
    assert renormalised < 1e-8
    # The teacher's tail (2e-7) is recovered as 1 − Σ exp(log p_k) from log-probabilities that each carry ~u64 ×
    # (|z| + |logsumexp z|) of rounding, so log(tail) is known to that over the tail, and reverse KL's tail term
    # s_tail · log(s_tail / tail) inherits s_tail times it: 7e-8 of 15.3 on the AVX2 and scalar kernels, 6 of the
    # units below (64 allowed). Equal tails make sparse = dense in real arithmetic: "never overstates" to that bound.
    magnitude = (teacher.abs().max() + torch.logsumexp(teacher, -1).abs().max()).item()
    tol = 64 * U64 * magnitude * s_tail.item() / t_tail.item()
    assert tol < 1e-6  # still far sharper than what the test tells apart (renormalised ≈ 0, sparse ≈ 15)
    assert sparse > 10 and sparse <= dense + tol  # the tail bucket can only merge, never overstate
    assert sparse == pytest.approx(_by_hand_rkl(V, k, 10.0, -10.0, -1.3), rel=0, abs=tol)


def test_merging_the_tail_never_overstates_in_float64():
    """Well-conditioned tails (teacher 0.33, student 0.99): the bucketed value equals the dense one where the
    tail shapes agree and is strictly below it where they do not, to float64 rounding."""
    V, k = 1000, 10
    student, teacher = _flat_pair(V, k, 3.0, 0.0, -1.3)
    lp, idx = teacher_topk_logprobs(teacher, k)
    t_tail, _ = tail_mass(student, lp, idx)
    assert 0.1 < t_tail.item() < 0.9
    sparse, dense = sparse_kd("rkl", student, lp, idx).item(), LOSSES["rkl"](student, teacher).item()
    tol = 64 * U64 * 10  # u64 × log-probabilities of magnitude ≲ 10, summed over 11 buckets
    assert sparse == pytest.approx(dense, rel=0, abs=tol)
    assert sparse == pytest.approx(_by_hand_rkl(V, k, 3.0, 0.0, -1.3), rel=0, abs=tol)
    s, t = _pair(rows=50, vocab=40, seed=4)  # random tails: the merge loses information
    lp, idx = teacher_topk_logprobs(t, 6)
    for name in ("kl", "rkl", "js", "tvd"):
        gap = LOSSES[name](s, t, reduction="none") - sparse_kd(name, s, lp, idx, reduction="none")
        assert gap.min().item() > -tol and gap.mean().item() > 1e-3, name


def test_merging_the_tail_never_overstates_from_a_float32_cache():
    """What training computes: float32 student logits and a float32 teacher cache, against the dense loss of
    the same logits in float64. The bucketed value stays below it up to float32 rounding, whose bound is stated."""
    g = torch.Generator().manual_seed(7)
    s = (torch.randn(200, 64, generator=g) * 3).float()
    t = (torch.randn(200, 64, generator=g) * 3).float()
    flat_s, flat_t = _flat_pair(64, 8, 3.0, 0.0, -1.3)  # equal tail shapes: sparse = dense in real arithmetic
    s, t = torch.cat([s, flat_s.float()]), torch.cat([t, flat_t.float()])
    for tau in (1.0, 2.0):
        lp, idx = teacher_topk_logprobs(t, 8, tau=tau)  # float32, as the cache keeps it
        assert lp.dtype == torch.float32
        t_tail, s_tail = tail_mass(s, lp, idx)
        # log-probabilities of magnitude ≲ (|z| + |logsumexp|)/τ, rounded at u32; the teacher's tail is known to
        # that over the tail itself (see above), which reverse KL's tail term weights by s_tail. Observed: ≤ 0.12
        # units (the equal-tail rows) on the AVX-512, AVX2 and scalar kernels; 64 allowed.
        magnitude = (t.abs().amax(-1) + torch.logsumexp(t / tau, -1).abs()) / tau + s.abs().amax(-1) / tau
        tol = 64 * U32 * magnitude.double() * (1 + s_tail.double() / t_tail.double())
        for name in ("kl", "rkl", "js", "tvd"):
            dense = LOSSES[name](s.double(), t.double(), tau=tau, reduction="none")
            sparse = sparse_kd(name, s, lp, idx, tau=tau, reduction="none").double()
            assert (sparse <= dense + tol).all(), (name, tau, (sparse - dense - tol).max().item())
            assert (dense - sparse)[:-1].mean() > 1e-3, (name, tau)  # the random rows' merge loses something


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
    one_example = 8 * 3 * 12 + 8 * 3 * 2  # values and ids of 3 positions; per position and τ, two normalisers
    small = TeacherCache(topk=64, temperatures=(1.0, 2.0), budget_bytes=one_example)
    fresh = small.put_lm(examples, logits, labels, None)
    assert set(small.entries) == {"0"} and small.over_budget and set(fresh) == {"0", "1", "2"}
    assert torch.equal(small.lm(examples, "cpu", fresh).logits, a.logits) and set(made) == set(fresh)


def _bucketed_and_dense(name, seed=4, k=6, **kw):
    from kd_analysis.losses.sparse import teacher_topk

    g = torch.Generator().manual_seed(seed)
    s = torch.randn(200, 40, generator=g, dtype=torch.float64) * 2
    t = torch.randn(200, 40, generator=g, dtype=torch.float64) * 2
    lp, idx, rest = teacher_topk(t, k)
    dense = LOSSES[name](s, t, reduction="none", **kw)
    return sparse_kd(name, s, lp, idx, teacher_rest=rest, reduction="none", **kw), dense


COARSENINGS = [
    (n, kw)
    for n in LOSSES
    if LOSSES[n].rows is not None and LOSSES[n].bucketed == "coarsening"
    for kw in ([{"jsd_beta": b} for b in (0.1, 0.5, 0.9)] if n == "gjsd" else [{}])
] + [("alpha_beta", {"ab_alpha": 0.3, "ab_beta": 0.7}), ("alpha_beta", {"ab_alpha": 1.0, "ab_beta": 0.0})]


@pytest.mark.parametrize("name,kw", COARSENINGS)
def test_losses_declared_coarsenings_never_exceed_their_dense_value(name, kw):
    """What the registry declares, checked on 200 random rows in float64: an f-divergence (α-β on α + β = 1 is
    Amari's α-divergence) or soft CE is never above its dense value on the k + 1 buckets (to float64 rounding of
    log-probabilities ≲ 10)."""
    bucketed, dense = _bucketed_and_dense(name, **kw)
    assert (bucketed <= dense + 64 * U64 * 10).all()


def test_an_approximate_loss_can_exceed_its_dense_value():
    """α-β off the line α + β = 1 is not an f-divergence: on these rows its bucketed value is above the dense one,
    which is why the registry calls it approximate and the docs do not promise a bound for it."""
    assert LOSSES["alpha_beta"].bucketed == "approximate"
    bucketed, dense = _bucketed_and_dense("alpha_beta", ab_alpha=1.5, ab_beta=0.5)
    assert (bucketed > dense + 0.1).any()


def test_uld_has_no_bucketed_form_but_k_equal_v_is_its_dense_value():
    s, t = _pair()
    lp, idx = teacher_topk_logprobs(t, 5)
    with pytest.raises(KDLensError, match="teacher_cache: none"):
        sparse_kd("uld", s, lp, idx)
    lp, idx = teacher_topk_logprobs(t, t.shape[-1])
    assert sparse_kd("uld", s, lp, idx).item() == pytest.approx(LOSSES["uld"](s, t).item(), rel=1e-12)


def _akl_by_hand(pt: np.ndarray, ps: np.ndarray, mu: float) -> float:
    """AKL of one row of k + 1 buckets (the last is the tail, never ranked): the head is the teacher's k tokens
    by decreasing probability while the cumulative mass stays ≤ μ (and always the top one); the tail bucket's gap
    counts in the tail's."""
    order = np.argsort(-pt[:-1], kind="stable")
    head = np.cumsum(pt[:-1][order]) <= mu
    head[0] = True
    g_head = np.abs(pt[:-1][order] - ps[:-1][order])[head].sum()
    g_all = np.abs(pt - ps).sum()
    w = g_head / g_all
    kl = lambda a, b: float(np.sum(a * (np.log(a) - np.log(b))))  # noqa: E731
    return w * kl(pt, ps) + (1 - w) * kl(ps, pt)


def test_akl_never_ranks_the_tail_bucket_into_the_head():
    """At τ 2 a top-4 cache leaves the teacher's tail larger than its top token; AKL on the buckets still takes
    its head from the teacher's tokens only, as computed by hand."""
    from kd_analysis.losses.sparse import teacher_topk

    g = torch.Generator().manual_seed(11)
    s = torch.randn(30, 200, generator=g, dtype=torch.float64) * 2
    t = torch.randn(30, 200, generator=g, dtype=torch.float64) * 2
    lp, idx, rest = teacher_topk(t, 4, tau=2.0)
    assert (rest > lp[:, 0]).all()  # the case: the bucket outweighs every kept token
    got = sparse_kd("akl", s, lp, idx, tau=2.0, teacher_rest=rest, reduction="none").numpy()
    ls = torch.log_softmax(s / 2, -1)
    s_b = torch.cat([ls.gather(-1, idx), torch.logsumexp(ls.scatter(-1, idx, -math.inf), -1, keepdim=True)], -1)
    t_b = torch.cat([lp, rest[:, None]], -1)
    want = [_akl_by_hand(a, b, 0.5) for a, b in zip(t_b.exp().numpy(), s_b.exp().numpy())]
    np.testing.assert_allclose(got, want, rtol=1e-12)
