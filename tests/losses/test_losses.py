"""Losses against independent references (SciPy, POT), properties, gradients, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import ot
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import softmax
from scipy.stats import entropy

from kd_analysis.exceptions import KDLensError
from kd_analysis.losses import LOSSES, sinkhorn_plan, sinkhorn_to_labels
from kd_analysis.losses.sinkhorn import cost_matrix

pytestmark = pytest.mark.numeric  # floats compared across computation orders: rerun on other kernels

ROWWISE = ["kl", "rkl", "js", "tvd", "skew_kl", "soft_ce", "akl", "alpha_beta", "gjsd", "taid", "uld"]


def _logits(rows=6, cols=7, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=g, dtype=dtype) * 2, torch.randn(rows, cols, generator=g, dtype=dtype) * 2


def test_registry_lists_every_loss():
    assert set(LOSSES) == set(ROWWISE) | {"sinkhorn"}
    assert ROWWISE == ["kl", "rkl", "js", "tvd", "skew_kl", "soft_ce", "akl", "alpha_beta", "gjsd", "taid", "uld"]
    assert LOSSES["sinkhorn"].batchwise and LOSSES["js"].symmetric and not LOSSES["kl"].symmetric
    assert LOSSES["sinkhorn"].rows is None and all(LOSSES[n].rows is not None for n in ROWWISE)


def test_soft_cross_entropy_is_kl_plus_teacher_entropy():
    s, t = _logits()
    p = softmax(t.numpy() / 2, -1)
    h = -(p * np.log(p)).sum(-1).mean()
    assert LOSSES["soft_ce"](s, t, tau=2.0).item() == pytest.approx(LOSSES["kl"](s, t, tau=2.0).item() + h, rel=1e-12)
    x1, x2 = s.clone().requires_grad_(True), s.clone().requires_grad_(True)
    (g1,) = torch.autograd.grad(LOSSES["soft_ce"](x1, t, tau=2.0), x1)
    (g2,) = torch.autograd.grad(LOSSES["kl"](x2, t, tau=2.0), x2)
    torch.testing.assert_close(g1, g2)  # same gradient: the offset is the teacher's entropy


@pytest.mark.parametrize("tau", [1.0, 2.5])
def test_divergences_match_scipy(tau):
    s, t = _logits()
    p, q = softmax(t.numpy() / tau, -1), softmax(s.numpy() / tau, -1)
    ref = {
        "kl": np.mean([entropy(p[i], q[i]) for i in range(len(p))]),
        "rkl": np.mean([entropy(q[i], p[i]) for i in range(len(p))]),
        "js": np.mean([jensenshannon(p[i], q[i]) ** 2 for i in range(len(p))]),
        "tvd": np.mean(0.5 * np.abs(p - q).sum(-1)),
        "skew_kl": np.mean([entropy(p[i], 0.1 * p[i] + 0.9 * q[i]) for i in range(len(p))]),
    }
    for name, value in ref.items():
        assert LOSSES[name](s, t, tau=tau).item() == pytest.approx(value, rel=1e-9, abs=1e-12), name


@pytest.mark.parametrize("name", [n for n, spec in LOSSES.items() if spec.zero_at_match and not spec.batchwise])
def test_zero_for_identical_inputs_and_nonnegative(name):
    s, t = _logits()
    assert LOSSES[name](t, t).item() == pytest.approx(0.0, abs=1e-6)
    assert LOSSES[name](s, t).item() >= 0


def test_sinkhorn_of_identical_batches_is_small_and_shrinks_with_eps():
    _, t = _logits(rows=8)
    d1 = LOSSES["sinkhorn"](t, t, eps=0.1, iters=200).item()
    d2 = LOSSES["sinkhorn"](t, t, eps=0.01, iters=2000).item()
    assert 0 <= d2 < d1 and d2 < 1e-3  # entropic blur vanishes as ε → 0: the identity plan costs 0


@pytest.mark.parametrize("name", ["js", "tvd"])
def test_symmetric_losses(name):
    s, t = _logits()
    assert LOSSES[name](s, t).item() == pytest.approx(LOSSES[name](t, s).item(), rel=1e-12)


def test_kl_and_rkl_swap():
    s, t = _logits()
    assert LOSSES["kl"](s, t).item() == pytest.approx(LOSSES["rkl"](t, s).item(), rel=1e-12)
    assert LOSSES["kl"](s, t).item() != pytest.approx(LOSSES["rkl"](s, t).item(), rel=1e-3)


def test_temperature_behaviour():
    s, t = _logits()
    values = [LOSSES["kl"](s, t, tau=tau).item() for tau in (1, 2, 4, 8, 64)]
    assert values == sorted(values, reverse=True)  # softer distributions get closer
    assert values[-1] < 1e-3
    assert LOSSES["kl"](s, t, tau=3, tau_squared=True).item() == pytest.approx(9 * LOSSES["kl"](s, t, tau=3).item())


def test_mask_selects_rows_and_reduction_none():
    s, t = _logits(rows=6)
    mask = torch.tensor([1, 0, 1, 1, 0, 0], dtype=torch.bool)
    for name in ROWWISE:
        per_row = LOSSES[name](s, t, reduction="none")
        assert per_row.shape == (6,)
        assert LOSSES[name](s, t, mask=mask).item() == pytest.approx(per_row[mask].mean().item(), rel=1e-12)
    rows = LOSSES["sinkhorn"](s, t, reduction="none")
    assert rows.sum().item() == pytest.approx(LOSSES["sinkhorn"](s, t).item(), rel=1e-12)


def test_token_level_shapes_with_mask():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(2 * 5, 50, generator=g), torch.randn(2 * 5, 50, generator=g)
    mask = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]]).bool()
    assert LOSSES["kl"](s, t, mask=mask).item() == pytest.approx(
        LOSSES["kl"](s[mask.flatten()], t[mask.flatten()]).item(), rel=1e-6
    )


@pytest.mark.parametrize("domain", ["scaling", "log"])
@pytest.mark.parametrize("cost", ["l1", "l2"])
def test_sinkhorn_plan_matches_pot(domain, cost):
    s, t = _logits(rows=9, cols=11, seed=3)
    res = sinkhorn_plan(s, t, tau=2.0, eps=0.1, iters=60, cost=cost, domain=domain)
    p, q = softmax(s.numpy() / 2, -1), softmax(t.numpy() / 2, -1)
    M = ot.dist(p, q, metric="cityblock" if cost == "l1" else "sqeuclidean")
    np.testing.assert_allclose(res.cost[0].numpy(), M, atol=1e-12)
    a = np.full(9, 1 / 9)
    with pytest.warns(UserWarning):  # POT warns because stopThr=0 never "converges"
        P = ot.sinkhorn(a, a, M, 0.1, method="sinkhorn_log", numItermax=60, stopThr=0)
    np.testing.assert_allclose(res.plan[0].numpy(), P, atol=1e-12)
    assert res.distance.item() == pytest.approx(float((P * M).sum()), rel=1e-10)


def test_sinkhorn_approaches_exact_ot_as_eps_shrinks():
    s, t = _logits(rows=8, seed=4)
    p, q = softmax(s.numpy(), -1), softmax(t.numpy(), -1)
    M = ot.dist(p, q, metric="cityblock")
    exact = ot.emd2(np.full(8, 1 / 8), np.full(8, 1 / 8), M)
    gaps = [
        abs(sinkhorn_plan(s, t, tau=1.0, eps=eps, iters=4000).distance.item() - exact) for eps in (0.2, 0.05, 0.005)
    ]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-3 * max(exact, 1e-9) + 1e-4


def _sinkd_reference(ys: torch.Tensor, yt: torch.Tensor, tau=2.0, eps=0.1, iters=20, scale=0.001) -> float:
    """SinKD's published formula, written directly: K = exp(−C/ε) with C the L1 cost between softmax rows at τ;
    `iters` times normalise every row to 1, then every column to 1; loss = scale · Σ P∘C (plan mass B)."""
    ps, pt = softmax(ys.numpy() / tau, -1), softmax(yt.numpy() / tau, -1)
    C = np.abs(ps[:, None, :] - pt[None, :, :]).sum(-1)
    P = np.exp(-C / eps)
    for _ in range(iters):
        P = P / P.sum(1, keepdims=True)
        P = P / P.sum(0, keepdims=True)
    return float(scale * (P * C).sum())


@pytest.mark.parametrize("rows,cols,seed", [(8, 2, 0), (32, 3, 1), (16, 10, 2)])
def test_sinkd_form_matches_the_authors_formula(rows, cols, seed):
    s, t = _logits(rows=rows, cols=cols, seed=seed)
    ref = _sinkd_reference(s, t)
    ours = sinkhorn_plan(s, t, tau=2.0, eps=0.1, iters=20, first="rows", mass="batch", scale=0.001).distance.item()
    assert ours == pytest.approx(ref, rel=1e-10)
    # the plan's mass alone is a factor B; the update order matters at 20 iterations (not at convergence)
    plain = sinkhorn_plan(s, t, tau=2.0, eps=0.1, iters=20, first="rows").distance.item()
    assert plain * rows * 0.001 == pytest.approx(ref, rel=1e-10)
    few = _sinkd_reference(s, t, iters=2)  # the update order matters before convergence
    assert sinkhorn_plan(
        s, t, tau=2.0, iters=2, first="rows", mass="batch", scale=0.001
    ).distance.item() == pytest.approx(few, rel=1e-10)
    assert sinkhorn_plan(s, t, tau=2.0, iters=2, mass="batch", scale=0.001).distance.item() != pytest.approx(
        few, rel=1e-6
    )
    both = sinkhorn_plan(s, t, tau=2.0, eps=0.1, iters=20, first="rows", domain="log", mass="batch", scale=0.001)
    assert both.distance.item() == pytest.approx(ref, rel=1e-9)  # the log domain runs the same iterations


def test_envelope_gradient_matches_pot_envelope_and_unrolled_matches_pot_autodiff():
    """POT differentiates `ot.solve(..., grad="envelope")` through the plan only and `sinkhorn2` by autodiff
    through the iterations; ours reproduces each, and the two differ at finite iterations."""
    s, t = _logits(rows=7, seed=13)
    q = torch.softmax(t / 2, -1)
    a = torch.full((7,), 1 / 7, dtype=torch.float64)

    def grad(fn):
        x = s.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(x), x)
        return g

    def pot_envelope(x):
        M = torch.cdist(torch.softmax(x / 2, -1), q, p=1)
        with warnings.catch_warnings():  # POT warns that 25 iterations did not "converge" (stopThr 0)
            warnings.simplefilter("ignore")
            return ot.solve(
                M, a, a, reg=0.1, reg_type="entropy", method="sinkhorn_log", max_iter=25, tol=0, grad="envelope"
            ).value

    def pot_autodiff(x):
        M = torch.cdist(torch.softmax(x / 2, -1), q, p=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ot.sinkhorn2(a, a, M, 0.1, method="sinkhorn_log", numItermax=25, stopThr=0)

    ours_env = grad(lambda x: sinkhorn_plan(x, t, tau=2.0, iters=25, gradient="envelope", domain="log").distance)
    ours_unr = grad(lambda x: sinkhorn_plan(x, t, tau=2.0, iters=25, gradient="unrolled", domain="log").distance)
    torch.testing.assert_close(ours_env, grad(pot_envelope), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ours_unr, grad(pot_autodiff), rtol=1e-7, atol=1e-10)
    assert (ours_env - ours_unr).abs().max() > 1e-4


def test_shuffling_the_student_rows_leaves_sinkhorn_unchanged_but_not_kl():
    """Uniform marginals: the distance ignores which student row belongs to which example (why SinKD keeps KL)."""
    s, t = _logits(rows=9, seed=14)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(0))
    for kw in ({}, {"first": "rows", "mass": "batch", "scale": 0.001}):
        a = LOSSES["sinkhorn"](s, t, tau=2.0, **kw).item()
        assert LOSSES["sinkhorn"](s[perm], t, tau=2.0, **kw).item() == pytest.approx(a, rel=1e-10)
    assert LOSSES["kl"](s[perm], t).item() != pytest.approx(LOSSES["kl"](s, t).item(), rel=1e-3)


def test_sinkhorn_temperature_defaults_agree():
    import inspect

    from kd_analysis.losses.sinkhorn import sinkhorn_loss

    default = inspect.signature(sinkhorn_plan).parameters["tau"].default
    assert default == inspect.signature(sinkhorn_loss).parameters["tau"].default
    s, t = _logits(seed=15)
    assert LOSSES["sinkhorn"](s, t).item() == pytest.approx(sinkhorn_plan(s, t).distance.item(), rel=1e-12)


def test_blocks_use_every_row():
    from kd_analysis.losses.sinkhorn import block_sizes, sinkhorn_blocks

    assert block_sizes(200) == [200]
    assert block_sizes(320) == [64] * 5
    assert block_sizes(300) == [64] * 4 + [44]
    assert block_sizes(257) == [64] * 3 + [65]  # a single leftover row joins the last block
    for n in (2, 257, 300, 999):
        sizes = block_sizes(n)
        assert sum(sizes) == n and min(sizes) >= 2
    s, t = _logits(rows=300, cols=5, seed=16)
    ps, pt = torch.softmax(s, -1), torch.softmax(t, -1)
    got = sinkhorn_blocks(ps, pt, teacher_probs=True, student_probs=True, eps=0.1, iters=20).item()
    parts, start = [], 0
    for size in block_sizes(300):
        parts.append(size / 300 * sinkhorn_plan(s[start : start + size], t[start : start + size]).distance.item())
        start += size
    assert got == pytest.approx(sum(parts), rel=1e-10)
    with pytest.raises(KDLensError, match="at least 2 rows"):
        sinkhorn_blocks(ps[:1], pt[:1], teacher_probs=True, student_probs=True)


def test_small_eps_is_stable_in_log_domain():
    s, t = _logits(rows=8, seed=5, dtype=torch.float32)
    res = sinkhorn_plan(s, t, tau=1.0, eps=1e-4, iters=200)
    assert torch.isfinite(res.plan).all() and torch.isfinite(res.distance)
    assert res.plan.sum().item() == pytest.approx(1.0, abs=1e-3)  # float32 at C/ε ≈ 2e4


@pytest.mark.parametrize("name", [n for n in LOSSES if n not in ("akl", "taid")])  # constants in their gradients
def test_gradcheck_float64(name):
    s, t = _logits(rows=4, cols=5, seed=6)
    s.requires_grad_(True)
    kw = {"eps": 0.5, "iters": 15} if name == "sinkhorn" else {}
    assert torch.autograd.gradcheck(lambda x: LOSSES[name](x, t, tau=1.5, **kw), (s,))


def test_sinkhorn_gradcheck_log_domain_and_l1_cost_backward():
    s, t = _logits(rows=5, cols=4, seed=7)
    s.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: LOSSES["sinkhorn"](x, t, eps=0.3, iters=10, domain="log"), (s,))
    x = torch.rand(2, 4, 6, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 3, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: cost_matrix(a, b, "l1"), (x, y))


def _pot_gradient_in_logit_space(s, t, iters):
    """POT's sinkhorn2 (torch backend) differentiated by autograd, chained through the softmax at τ = 2."""
    s2 = s.clone().requires_grad_(True)
    p = torch.softmax(s2 / 2, -1)
    M = torch.cdist(p, torch.softmax(t / 2, -1), p=1)
    a = torch.full((s.shape[0],), 1 / s.shape[0], dtype=torch.float64)
    value = ot.sinkhorn2(a, a, M, 0.1, method="sinkhorn_log", numItermax=iters, stopThr=0)
    (g,) = torch.autograd.grad(value, s2)
    return value.item(), g


def test_unrolled_gradient_matches_pot_autodiff():
    s, t = _logits(rows=6, seed=8)
    ref_value, ref_grad = _pot_gradient_in_logit_space(s, t, iters=30)
    x = s.clone().requires_grad_(True)
    ours = sinkhorn_plan(x, t, tau=2.0, eps=0.1, iters=30, gradient="unrolled", domain="log").distance
    assert ours.item() == pytest.approx(ref_value, rel=1e-10)
    (g,) = torch.autograd.grad(ours, x)
    torch.testing.assert_close(g, ref_grad, rtol=1e-7, atol=1e-10)


def test_envelope_gradient_is_the_entropic_ot_gradient():
    """At convergence ∂OT_ε/∂logits = Σ P* ∂C/∂logits; checked by finite differences of OT_ε computed by POT."""
    s, t = _logits(rows=5, seed=12)
    eps = 0.1
    a = np.full(5, 1 / 5)
    q = softmax(t.numpy() / 2, -1)

    def entropic_ot(logits: np.ndarray) -> float:
        M = ot.dist(softmax(logits / 2, -1), q, metric="cityblock")
        P = ot.sinkhorn(a, a, M, eps, method="sinkhorn_log", numItermax=20000, stopThr=1e-15)
        return float((P * M).sum() + eps * (P * np.log(P)).sum())

    x = s.clone().requires_grad_(True)
    res = sinkhorn_plan(x, t, tau=2.0, eps=eps, iters=3000, gradient="envelope", domain="log")
    (g,) = torch.autograd.grad(res.distance, x)
    h = 1e-6
    for i, j in [(0, 0), (2, 3), (4, 6)]:
        up, down = s.numpy().copy(), s.numpy().copy()
        up[i, j] += h
        down[i, j] -= h
        numeric = (entropic_ot(up) - entropic_ot(down)) / (2 * h)
        assert g[i, j].item() == pytest.approx(numeric, rel=1e-4, abs=1e-7)


def test_topk_support_lower_bounds_and_is_exact_on_sparse_rows():
    s, t = _logits(rows=6, cols=40, seed=9)
    full = sinkhorn_plan(s, t, tau=1.0, eps=0.05, iters=300, domain="log")
    coarse = sinkhorn_plan(s, t, tau=1.0, eps=0.05, iters=300, topk=8, domain="log")
    assert torch.all(coarse.cost <= full.cost + 1e-12)  # merging the tail never overstates the L1 cost
    sparse_s = torch.full((6, 40), -1e4, dtype=torch.float64)
    sparse_t = sparse_s.clone()
    sparse_s[:, :5], sparse_t[:, :5] = s[:, :5], t[:, :5]
    a = sinkhorn_plan(sparse_s, sparse_t, tau=1.0, eps=0.05, iters=300)
    b = sinkhorn_plan(sparse_s, sparse_t, tau=1.0, eps=0.05, iters=300, topk=5)
    assert a.distance.item() == pytest.approx(b.distance.item(), rel=1e-9)


def test_group_size_couples_blocks_only():
    s, t = _logits(rows=8, seed=10)
    grouped = sinkhorn_plan(s, t, group_size=4, eps=0.1, iters=50)
    halves = [sinkhorn_plan(s[i : i + 4], t[i : i + 4], eps=0.1, iters=50).distance.item() for i in (0, 4)]
    assert grouped.plan.shape == (2, 4, 4)
    assert grouped.distance.item() == pytest.approx(np.mean(halves), rel=1e-10)
    with pytest.raises(KDLensError, match="groups of 3"):
        sinkhorn_plan(s, t, group_size=3)


def test_regression_variant_uses_raw_outputs():
    ys = torch.tensor([[0.1], [0.9], [0.5]], dtype=torch.float64)
    yt = torch.tensor([[0.5], [0.1], [0.9]], dtype=torch.float64)
    res = sinkhorn_plan(ys, yt, eps=1e-3, iters=2000, domain="log")
    np.testing.assert_allclose(res.cost[0].numpy(), np.abs(ys.numpy() - yt.numpy().T))
    assert res.distance.item() == pytest.approx(0.0, abs=1e-3)  # a permutation matches them exactly
    assert LOSSES["kl"](ys, yt).item() == 0.0  # why the regression variant exists: softmax of one value is 1


def test_one_hot_label_variant():
    s, _ = _logits(rows=6, cols=4, seed=11)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    res = sinkhorn_to_labels(s, labels, tau=1.0, eps=0.1, iters=50)
    onehot = np.eye(4)[labels.numpy()]
    M = ot.dist(softmax(s.numpy(), -1), onehot, metric="cityblock")
    np.testing.assert_allclose(res.cost[0].numpy(), M, atol=1e-12)


def test_large_vocab_cost_is_chunked(monkeypatch):
    """Past the size limit the L1 cost and its gradient are built in bounded chunks, never [n, m, V] at once."""
    from kd_analysis.losses import sinkhorn as sk

    monkeypatch.setattr(sk, "CHUNK_ELEMENTS", 4096)
    x = torch.rand(1, 16, 256, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 16, 256, dtype=torch.float64)
    sizes = []
    real_sub = torch.Tensor.__sub__
    monkeypatch.setattr(torch.Tensor, "__sub__", lambda a, b: (lambda o: sizes.append(o.numel()) or o)(real_sub(a, b)))
    C = sk.cost_matrix(x, y, "l1")
    (gx,) = torch.autograd.grad((C * torch.arange(256.0, dtype=torch.float64).reshape(1, 16, 16)).sum(), x)
    monkeypatch.undo()
    assert sizes and max(sizes) <= 4096 < 16 * 16 * 256
    ref_x = x.detach().clone().requires_grad_(True)
    ref = torch.cdist(ref_x[0], y[0], p=1)
    (g_ref,) = torch.autograd.grad((ref * torch.arange(256.0, dtype=torch.float64).reshape(16, 16)).sum(), ref_x)
    torch.testing.assert_close(C[0], ref)
    torch.testing.assert_close(gx, g_ref)


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(s=torch.randn(4, 5), t=torch.randn(4, 6)), "vocabularies or label sets differ"),
        (dict(s=torch.tensor([[float("nan"), 0.0]] * 2), t=torch.zeros(2, 2)), "NaN"),
        (dict(s=torch.tensor([[float("inf"), 0.0]] * 2), t=torch.zeros(2, 2)), r"\+inf"),
        (dict(s=torch.zeros(2, 2), t=torch.zeros(2, 2), tau=0.0), "τ must be > 0"),
        (dict(s=torch.zeros(2, 2), t=torch.zeros(2, 2), tau=-1.0), "τ must be > 0"),
    ],
)
@pytest.mark.parametrize("name", list(LOSSES))
def test_bad_input_messages(name, bad, match):
    with pytest.raises(KDLensError, match=match):
        LOSSES[name](bad["s"], bad["t"], tau=bad.get("tau", 1.0))


def test_sinkhorn_specific_bad_input():
    with pytest.raises(KDLensError, match="at least 2 rows"):
        LOSSES["sinkhorn"](torch.randn(1, 5), torch.randn(1, 5))
    for eps in (0.0, -0.1):
        with pytest.raises(KDLensError, match="ε"):
            LOSSES["sinkhorn"](torch.randn(3, 5), torch.randn(3, 5), eps=eps)
    with pytest.raises(KDLensError, match="-inf"):
        LOSSES["kl"](torch.tensor([[0.0, float("-inf")]] * 2), torch.zeros(2, 2))


def test_padding_choices_marked_minus_inf_in_both_are_ignored():
    s = torch.tensor([[1.0, 2.0, float("-inf")], [0.5, 0.1, 0.3]])
    t = torch.tensor([[2.0, 1.0, float("-inf")], [0.1, 0.5, 0.3]])
    for name in LOSSES:
        assert torch.isfinite(LOSSES[name](s, t))
    assert LOSSES["kl"](s[:1], t[:1]).item() == pytest.approx(LOSSES["kl"](s[:1, :2], t[:1, :2]).item(), rel=1e-6)


def test_js_with_its_gradient_written_out_equals_the_plain_form():
    """`js` (a hand-written backward) against the plain formula through autograd: values and gradients for
    both inputs, with zero probabilities on either side and on both; and gradcheck in float64."""
    from kd_analysis.losses.divergences import js_rows, js_rows_reference

    g = torch.Generator().manual_seed(0)
    zt, zs = torch.randn(6, 9, generator=g, dtype=torch.float64), torch.randn(6, 9, generator=g, dtype=torch.float64)
    zt[0, :3] = -torch.inf  # teacher puts no mass there
    zs[1, 2:5] = -torch.inf  # student puts none there
    zt[2, :4] = zs[2, :4] = -torch.inf  # neither does
    a_t, a_s = torch.log_softmax(zt, -1).requires_grad_(True), torch.log_softmax(zs, -1).requires_grad_(True)
    b_t, b_s = a_t.detach().clone().requires_grad_(True), a_s.detach().clone().requires_grad_(True)
    weights = torch.rand(6, generator=g, dtype=torch.float64)
    (js_rows(a_t, a_s) * weights).sum().backward()
    (js_rows_reference(b_t, b_s) * weights).sum().backward()
    assert torch.allclose(js_rows(a_t, a_s), js_rows_reference(b_t, b_s), atol=1e-12)
    # the plain form's gradient is NaN where a probability is 0 on both sides (or, for the teacher, on its side):
    # those terms are constant 0, and the written-out gradient says 0 there
    for new, old in ((a_s.grad, b_s.grad), (a_t.grad, b_t.grad)):
        finite = torch.isfinite(old)
        assert torch.isfinite(new).all() and torch.allclose(new[finite], old[finite], atol=1e-12)
        assert (new[~finite] == 0).all() and (~finite).any()
    x_t, x_s = (
        torch.log_softmax(torch.randn(3, 5, dtype=torch.float64, generator=g), -1),
        torch.randn(3, 5, dtype=torch.float64, generator=g),
    )
    assert torch.autograd.gradcheck(lambda z: js_rows(x_t, torch.log_softmax(z, -1)), (x_s.requires_grad_(True),))


@pytest.mark.parametrize("first", ["columns", "rows"])
def test_written_out_sinkhorn_gradient_equals_autograd_through_the_loop(first):
    """The scaling-domain plan with its hand-written backward (NumPy on CPU) against autograd through the plain
    loop: 3 groups, 16×12 plans (n ≠ m), a random upstream gradient, float64."""
    from kd_analysis.losses.sinkhorn import sinkhorn_iterations

    g = torch.Generator().manual_seed(5)
    p = torch.softmax(torch.randn(3, 16, 10, generator=g, dtype=torch.float64), -1)
    q = torch.softmax(torch.randn(3, 12, 10, generator=g, dtype=torch.float64), -1)
    up = torch.rand(3, 16, 12, generator=g, dtype=torch.float64)
    c0 = torch.cdist(p, q, p=1)
    plans, grads = [], []
    for autograd in (True, False):
        c = c0.clone().requires_grad_(True)
        plan = sinkhorn_iterations(c, 0.1, 20, "scaling", first=first, autograd=autograd)
        (plan * up).sum().backward()
        plans.append(plan.detach())
        grads.append(c.grad)
    torch.testing.assert_close(plans[1], plans[0], rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-14)
    assert float(grads[0].abs().max()) > 1e-3  # a gradient that says something


def test_written_out_sinkhorn_runs_the_same_on_torch_tensors():
    """What a GPU runs (the same steps on torch tensors) equals the CPU's NumPy run."""
    from kd_analysis.losses.sinkhorn import _scaling_backward, _scaling_steps

    g = torch.Generator().manual_seed(6)
    K = torch.exp(-torch.rand(2, 8, 5, generator=g, dtype=torch.float64) / 0.1)
    up = torch.rand(2, 8, 5, generator=g, dtype=torch.float64)
    us_t, vs_t = _scaling_steps(K, 7)
    us_n, vs_n = _scaling_steps(K.numpy(), 7)
    torch.testing.assert_close(torch.from_numpy(us_n[-1]), us_t[-1])
    got = _scaling_backward(up, K, us_t, vs_t, 0.1)
    want = torch.from_numpy(_scaling_backward(up.numpy(), K.numpy(), us_n, vs_n, 0.1))
    assert isinstance(got, torch.Tensor)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)
