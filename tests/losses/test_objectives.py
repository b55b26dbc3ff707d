"""AKL, the α-β divergence and generalised JSD against direct formulas written here in NumPy, their limits, and
gradchecks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kd_analysis.losses import LOSSES
from kd_analysis.losses.objectives import akl_weights
from kd_analysis.models.specs import ModelSpec

pytestmark = pytest.mark.numeric  # floats compared across computation orders: rerun on other kernels


def _pair(rows=5, cols=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    zs = torch.randn(rows, cols, generator=g, dtype=torch.float64) * 2
    zt = torch.randn(rows, cols, generator=g, dtype=torch.float64) * 2
    return zs, zt


def _probs(z, tau):
    e = np.exp(z.numpy() / tau - (z.numpy() / tau).max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _kl(p, q):
    return (p * (np.log(p) - np.log(q))).sum(-1)


def test_akl_equals_a_loop_over_the_teachers_ranked_tokens():
    zs, zt = _pair()
    tau, mu = 1.5, 0.5
    p, q = _probs(zt, tau), _probs(zs, tau)
    want = []
    for pr, qr in zip(p, q):
        g_head = g_tail = 0.0
        mass = 0.0
        for rank, j in enumerate(np.argsort(-pr)):
            mass += pr[j]
            if rank == 0 or mass <= mu:
                g_head += abs(pr[j] - qr[j])
            else:
                g_tail += abs(pr[j] - qr[j])
        w = g_head / (g_head + g_tail)
        want.append(w * _kl(pr, qr) + (1 - w) * _kl(qr, pr))
    got = LOSSES["akl"](zs, zt, tau=tau, mu=mu, reduction="none")
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    assert LOSSES["akl"](zt, zt).item() == pytest.approx(0.0, abs=1e-12)


def test_akl_head_search_equals_the_full_sort_where_the_head_is_wide():
    """The top-64 search against sorting every row, on rows whose head fits in the top 64 (peaked teachers) and on
    rows where it does not (flat teachers over 500 tokens: the sorted fallback), in one batch."""
    from kd_analysis.losses import objectives

    g = torch.Generator().manual_seed(8)
    peaked = torch.randn(6, 500, generator=g, dtype=torch.float64) * 4
    flat = torch.randn(6, 500, generator=g, dtype=torch.float64) * 0.1
    lt = torch.log_softmax(torch.cat([peaked, flat]), -1)
    ls = torch.log_softmax(torch.randn(12, 500, generator=g, dtype=torch.float64), -1)
    top_mass = lt.exp().topk(objectives.HEAD_SEARCH, -1).values.sum(-1)
    assert (top_mass[:6] > 0.5).all() and (top_mass[6:] <= 0.5).all()  # both paths are taken
    w_head, _ = akl_weights(lt, ls, 0.5)
    gap = (lt.exp() - ls.exp()).abs().sum(-1)
    want = objectives._head_gap_sorted(lt.exp(), ls.exp(), 0.5) / gap
    torch.testing.assert_close(w_head, want, rtol=1e-12, atol=1e-15)


def test_akl_gradient_holds_its_weights_constant():
    """As in the public AKL code the head/tail weights carry no gradient: AKL's gradient is that of
    w_head·KL + w_tail·RKL with the weights of the current point; gradcheck on that frozen form."""
    zs, zt = _pair(rows=4, cols=6, seed=3)
    lt = torch.log_softmax(zt, -1)
    w_head, w_tail = akl_weights(lt, torch.log_softmax(zs, -1))
    assert ((w_head > 0.05) & (w_tail > 0.05)).any()  # both parts matter somewhere

    def frozen(x):
        ls = torch.log_softmax(x, -1)
        return (w_head * LOSSES["kl"].rows(lt, ls) + w_tail * LOSSES["rkl"].rows(lt, ls)).mean()

    x = zs.clone().requires_grad_(True)
    (got,) = torch.autograd.grad(LOSSES["akl"](x, zt), x)
    x2 = zs.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(frozen(x2), x2)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    assert torch.autograd.gradcheck(frozen, (zs.clone().requires_grad_(True),))


def _ab_direct(p, q, a, b):
    s = a + b
    return -((p**a * q**b) - a / s * p**s - b / s * q**s).sum(-1) / (a * b)


def test_alpha_beta_general_points_and_its_named_limits():
    zs, zt = _pair(seed=1)
    p, q = _probs(zt, 2.0), _probs(zs, 2.0)

    def ab(a, b):
        return LOSSES["alpha_beta"](zs, zt, tau=2.0, ab_alpha=a, ab_beta=b, reduction="none").numpy()

    for a, b in ((0.3, 0.6), (1.2, 0.4), (0.5, 1.5)):
        np.testing.assert_allclose(ab(a, b), _ab_direct(p, q, a, b), rtol=1e-10)
    np.testing.assert_allclose(ab(1.0, 0.0), _kl(p, q), rtol=1e-12)  # forward KL
    np.testing.assert_allclose(ab(0.0, 1.0), _kl(q, p), rtol=1e-12)  # reverse KL
    np.testing.assert_allclose(ab(0.5, 0.5), 4 * (1 - np.sqrt(p * q).sum(-1)), rtol=1e-10)  # 4 × squared Hellinger
    np.testing.assert_allclose(ab(0.0, 0.0), 0.5 * ((np.log(p) - np.log(q)) ** 2).sum(-1), rtol=1e-12)
    # the special lines are the limits of the general formula (continuity of the parametrisation)
    np.testing.assert_allclose(_ab_direct(p, q, 0.7, 1e-6), ab(0.7, 0.0), rtol=1e-4)
    np.testing.assert_allclose(_ab_direct(p, q, 1e-6, 0.7), ab(0.0, 0.7), rtol=1e-4)
    np.testing.assert_allclose(_ab_direct(p, q, 1e-4, 1e-4), ab(0.0, 0.0), rtol=1e-3)
    assert (ab(0.3, 0.6) > 0).all()
    np.testing.assert_allclose(LOSSES["alpha_beta"](zt, zt, ab_alpha=0.3, ab_beta=0.6, reduction="none"), 0, atol=1e-12)


@pytest.mark.parametrize("point", [(1.0, 0.0), (0.0, 1.0), (0.0, 0.0), (0.4, 0.9)])
def test_alpha_beta_gradcheck_on_and_off_the_special_lines(point):
    zs, zt = _pair(rows=3, cols=5, seed=4)
    a, b = point
    assert torch.autograd.gradcheck(
        lambda x: LOSSES["alpha_beta"](x, zt, ab_alpha=a, ab_beta=b), (zs.clone().requires_grad_(True),)
    )


def test_generalised_jsd_is_js_at_one_half_and_tends_to_both_kls():
    zs, zt = _pair(seed=2)
    p, q = _probs(zt, 1.0), _probs(zs, 1.0)

    def gjsd(beta):
        return LOSSES["gjsd"](zs, zt, jsd_beta=beta, reduction="none").numpy()

    for beta in (0.2, 0.5, 0.9):
        m = beta * p + (1 - beta) * q
        np.testing.assert_allclose(gjsd(beta), beta * _kl(p, m) + (1 - beta) * _kl(q, m), rtol=1e-10)
    np.testing.assert_allclose(gjsd(0.5), LOSSES["js"](zs, zt, reduction="none").numpy(), rtol=1e-10)
    small = 1e-5
    np.testing.assert_allclose(gjsd(small) / small, _kl(p, q), rtol=1e-3)  # β → 0: forward KL(teacher‖student)
    np.testing.assert_allclose(gjsd(1 - small) / small, _kl(q, p), rtol=1e-3)  # β → 1: reverse KL
    # the endpoints, where the mixture formula is 0, are TRL's: β = 0 forward KL(teacher‖student), β = 1 reverse KL
    np.testing.assert_allclose(gjsd(0.0), _kl(p, q), rtol=1e-10)
    np.testing.assert_allclose(gjsd(1.0), _kl(q, p), rtol=1e-10)


def test_the_new_objectives_serve_the_top_k_teacher_path():
    """With k = V the bucketed value equals the dense one (no tail bucket), for each new objective."""
    from kd_analysis.losses import sparse_kd, teacher_topk_logprobs

    zs, zt = _pair(rows=4, cols=12, seed=5)
    lp, idx = teacher_topk_logprobs(zt, 12, tau=2.0)
    for name, kw in (
        ("akl", {"mu": 0.4}),
        ("alpha_beta", {"ab_alpha": 0.3, "ab_beta": 0.8}),
        ("gjsd", {"jsd_beta": 0.3}),
    ):
        dense = LOSSES[name](zs, zt, tau=2.0, **kw)
        assert sparse_kd(name, zs, lp, idx, tau=2.0, **kw).item() == pytest.approx(dense.item(), rel=1e-10)


def test_loss_parameter_names_are_unique_across_the_registry():
    """The toy and the explorer hand every loss one mapping of parameter values (`LossSpec.resolve`), so two losses
    with a parameter of the same name would silently share it."""
    names = [p.name for spec in LOSSES.values() for p in spec.params]
    assert len(names) == len(set(names)), names


def test_taid_is_cross_entropy_to_the_interpolated_target_and_soft_ce_at_t_one():
    zs, zt = _pair(seed=9)
    tau, t = 1.5, 0.3
    p, q = _probs(zt, tau), _probs(zs, tau)
    mix = np.exp((1 - t) * np.log(q) + t * np.log(p))
    target = mix / mix.sum(-1, keepdims=True)
    want = -(target * np.log(q)).sum(-1)
    got = LOSSES["taid"](zs, zt, tau=tau, taid_t=t, reduction="none").numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(
        LOSSES["taid"](zs, zt, taid_t=1.0, reduction="none"), LOSSES["soft_ce"](zs, zt, reduction="none"), rtol=1e-12
    )
    # without a t from the schedule the term uses t_start
    assert LOSSES["taid"](zs, zt, taid_t_start=0.3).item() == pytest.approx(LOSSES["taid"](zs, zt, taid_t=0.3).item())


def test_taid_gradient_treats_the_target_as_a_constant():
    zs, zt = _pair(rows=3, cols=5, seed=10)
    t = 0.6
    x = zs.clone().requires_grad_(True)
    (got,) = torch.autograd.grad(LOSSES["taid"](x, zt, taid_t=t), x)
    lt = torch.log_softmax(zt, -1)
    target = torch.softmax((1 - t) * torch.log_softmax(zs, -1) + t * lt, -1)

    def frozen(z):
        return -(target * torch.log_softmax(z, -1)).sum(-1).mean()

    x2 = zs.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(frozen(x2), x2)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    assert torch.autograd.gradcheck(frozen, (zs.clone().requires_grad_(True),))


def test_taid_schedule_follows_the_published_update():
    """t: max(linear ramp, t + α σ(m) (1 − t)), m the momentum of the loss's relative change, capped at t_end; the
    first step only records the loss. Recomputed here step by step from that rule."""
    from kd_analysis.training.taid import TaidSchedule

    s = TaidSchedule(t_start=0.4, t_end=0.9, alpha=0.2, beta=0.5)
    losses = [2.0, 1.0, 0.5, 0.45, 0.44, 0.44]
    t, m, prev = 0.4, 0.0, None
    for k, loss in enumerate(losses):
        got = s.update(loss, k, 10)
        if prev is not None:
            m = 0.5 * m + 0.5 * (prev - loss) / (prev + 1e-15)
            t = min(0.9, max(0.4 + 0.5 * k / 10, t + 0.2 / (1 + math.exp(-m)) * (1 - t)))
        prev = loss
        assert got == pytest.approx(t, abs=1e-15)
    assert s.t > 0.4 + 0.5 * 5 / 10  # a falling loss ran t ahead of the linear ramp
    late = TaidSchedule(t_start=0.4, t_end=0.9, alpha=0.0)
    for k in range(12):
        late.update(1.0, k, 10)
    assert late.t == 0.9  # the linear ramp reaches t_end and stays there


def test_training_with_taid_logs_t_and_refuses_a_bad_schedule(tiny_dir, tmp_path):
    from kd_analysis.exceptions import KDLensError
    from kd_analysis.training.config import LossTerm, StudentSpec, TrainConfig
    from kd_analysis.training.loop import train
    from tests.helpers.runs import mc_file

    base = dict(
        teacher=ModelSpec(str(tiny_dir / "gpt2"), task="multiple_choice"),
        student=StudentSpec(num_layers=1),
        data=str(mc_file(tmp_path / "mc.jsonl")),
        steps=5,
        eval_every=5,
        eval_size=8,
        batch_size=4,
        lr=1e-3,
        save_checkpoint=False,
    )
    seen: list = []
    cfg = TrainConfig(**base, losses=[LossTerm("ce", 0.5), LossTerm("taid", 0.5, {"taid_t_start": 0.2})])
    assert train(cfg, on_metrics=seen.append).state == "finished"
    ts = [m["taid_t"] for m in seen if "loss" in m]
    assert len(ts) == 5 and ts[0] == 0.2 and ts == sorted(ts) and ts[-1] >= 0.2 + 0.8 * 3 / 5
    bad = TrainConfig(**base, losses=[LossTerm("taid", 1.0, {"taid_t_start": 0.9, "taid_t_end": 0.5})])
    with pytest.raises(KDLensError, match="taid_t_start < taid_t_end"):
        train(bad)


def _taid_reference_ts(losses: list[float], accum: int, total: int, t_start: float, alpha: float, beta: float):
    """The t each micro-batch trains with under TAID's code (SakanaAI/TAID `update_t`, called after every forward):
    the first call records the loss; each later one moves the momentum of the relative change and sets
    t = min(t_end = 1, max(linear ramp at the global step, t + α σ(m) (1 − t))). The global step is the optimiser
    steps already taken, micro-batch i // accum."""
    ts, t, m, prev = [], t_start, 0.0, math.inf
    for i, loss in enumerate(losses):
        ts.append(t)
        if math.isinf(prev):
            prev = loss
            continue
        m = beta * m + (1 - beta) * (prev - loss) / (prev + 1e-15)
        ramp = t_start + (1.0 - t_start) * (i // accum) / total
        t = min(1.0, max(ramp, t + alpha / (1 + math.exp(-m)) * (1 - t)))
        prev = loss
    return ts


def test_taid_moves_t_on_every_micro_batch_under_gradient_accumulation(tiny_dir, tmp_path, monkeypatch):
    """Three optimiser steps of two micro-batches each: the t every micro-batch's TAID term used, against the
    reference schedule fed with every micro-batch's TAID value (a schedule fed once per step keeps t_start for
    the first four micro-batches)."""
    import dataclasses

    from kd_analysis.training.config import LossTerm, StudentSpec, TrainConfig
    from kd_analysis.training.loop import train
    from tests.helpers.runs import mc_file

    calls: list[tuple[float, float]] = []
    spec = LOSSES["taid"]

    def spy(student_logits, teacher_logits, **kw):
        value = spec.fn(student_logits, teacher_logits, **kw)
        calls.append((kw["taid_t"], float(value.detach())))
        return value

    monkeypatch.setitem(LOSSES, "taid", dataclasses.replace(spec, fn=spy))
    params = {"taid_t_start": 0.2, "taid_alpha": 0.3, "taid_beta": 0.5}
    cfg = TrainConfig(
        teacher=ModelSpec(str(tiny_dir / "gpt2"), task="multiple_choice"),
        student=StudentSpec(num_layers=1),
        data=str(mc_file(tmp_path / "mc.jsonl")),
        losses=[LossTerm("taid", 1.0, params)],
        steps=3,
        grad_accum=2,
        eval_every=3,
        eval_size=8,
        batch_size=2,
        lr=1e-3,
        save_checkpoint=False,
    )
    assert train(cfg).state == "finished"
    assert len(calls) == 6
    want = _taid_reference_ts([v for _, v in calls], 2, 3, 0.2, 0.3, 0.5)
    assert [t for t, _ in calls] == pytest.approx(want, rel=0, abs=1e-15)
    assert calls[2][0] > 0.2  # t already moved within the first optimiser step


def test_the_taid_chart_draws_t_over_steps():
    from kd_analysis.plots.runs import taid_curve

    fig = taid_curve([{"step": 1, "taid_t": 0.4, "loss": 1.0}, {"step": 2, "loss": 0.9}, {"step": 3, "taid_t": 0.52}])
    assert list(fig.data[0].x) == [1, 3] and list(fig.data[0].y) == [0.4, 0.52]


def test_generalised_jsd_endpoints_from_a_yaml_config_train_and_strings_are_refused(tiny_dir, tmp_path):
    """β = 0 written in a YAML config trains forward KL (a positive term, not the formula's identical 0); a β
    written as a string, or outside [0, 1], is refused in one sentence before anything loads."""
    import yaml

    from kd_analysis.exceptions import KDLensError
    from kd_analysis.training.config import TrainConfig
    from kd_analysis.training.loop import train
    from tests.helpers.lm_runs import arith_file

    data = arith_file(tmp_path / "a.jsonl")
    text = f"""
teacher: {tiny_dir / "llama"}
student: {{num_layers: 1}}
data: {data}
steps: 1
eval_every: 1
eval_size: 2
batch_size: 4
max_new_tokens: 2
save_checkpoint: false
tau: 1.0
losses:
  - {{name: gjsd, params: {{jsd_beta: 0}}}}
"""
    seen: list = []
    assert train(TrainConfig.from_dict(yaml.safe_load(text)), on_metrics=seen.append).state == "finished"
    assert next(m["loss_gjsd"] for m in seen if "loss" in m) > 1e-6  # the formula at β = 0 is exactly 0
    for bad in ('"0"', "1.5", "true"):
        with pytest.raises(KDLensError, match="jsd_beta must be a number in"):
            TrainConfig.from_dict(yaml.safe_load(text.replace("jsd_beta: 0", f"jsd_beta: {bad}"))).validate()


def test_objectives_train_at_their_references_temperature_unless_the_term_sets_its_own():
    """A YAML config with the run at τ 2 (Hinton's τ²): forward KL trains at τ 2 × 4, generalised JSD at β = 0
    (forward KL, TRL's endpoint) at its reference's τ 1 without τ², unless the term names its own τ or τ²; both
    checked against KL written out in NumPy. The run form's loss label and table say the same."""
    import yaml

    from kd_analysis.training.config import TrainConfig
    from kd_analysis.training.objective import kd_loss_terms
    from kd_analysis.training.presets import loss_rows
    from kd_analysis.training.progress import losses_label

    def kl(zs, zt, tau):
        return float(_kl(_probs(zt, tau), _probs(zs, tau)).mean())

    zs, zt = _pair(seed=21)
    text = """
teacher: x
tau: 2
losses:
  - {name: kl}
  - {name: gjsd, params: {jsd_beta: 0}}
"""
    for edit, tau, squared in [("", 1.0, False), ("tau: 2, ", 2.0, False), ("tau: 2, tau_squared: true, ", 2.0, True)]:
        cfg = TrainConfig.from_dict(yaml.safe_load(text.replace("{name: gjsd, ", "{name: gjsd, " + edit)))
        cfg.validate()
        terms = kd_loss_terms(cfg, zs, zt, None)
        assert terms["kl"].item() == pytest.approx(kl(zs, zt, 2.0) * 4, rel=1e-12)
        assert terms["gjsd"].item() == pytest.approx(kl(zs, zt, tau) * (tau**2 if squared else 1), rel=1e-12)
        row = next(r for r in loss_rows(cfg) if r["term"] == "gjsd")
        assert (row["τ"], row["τ²"]) == (tau, squared)
    assert losses_label(yaml.safe_load(text)) == "1·KL (τ = 2) + 1·gjsd (τ = 1)"
