"""Loss explorer library: the fast toy fit (Newton) against a slow plain-gradient reference, words
computed from the fits, the transport plan relative to uniform, visible student bars, what the bars show."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kd_analysis.loss_explorer.toy import (
    COVERING,
    SEEKING,
    ToyConfig,
    class_sinkhorn,
    class_sinkhorn_rows,
    describe_fits,
    fit_behaviour,
    fit_toy,
    newton,
    teacher_modes,
)
from kd_analysis.losses.transport_plans import UNIFORM_TOLERANCE, summarise_plan
from kd_analysis.plots import losses as plots

pytestmark = pytest.mark.numeric  # floats compared across computation orders: rerun on other kernels

BIMODAL = ((6.0, 1.5, 0.6), (16.0, 2.0, 0.4))  # two modes, the second one 16 classes away


def _fit(loss: str, **kw):
    return fit_toy(ToyConfig(losses=(loss,), snapshot_every=10**9, **kw)).fits[loss]


# (teacher, τ, loss, learning rate, steps) of the slow reference: plain gradient descent from the same start
# (μ 8, σ 1.5) with a fixed step, long enough that its gradient norm ends below 1e-5 (checked below)
REFERENCE = [
    (BIMODAL, 1.0, "kl", 0.2, 5000),
    (BIMODAL, 1.0, "rkl", 0.2, 2000),
    (BIMODAL, 1.0, "js", 3.0, 2000),
    (BIMODAL, 1.0, "skew_kl", 1.0, 2000),
    (BIMODAL, 1.0, "soft_ce", 0.2, 3000),
    (BIMODAL, 1.0, "sinkhorn", 5.0, 600),
    (ToyConfig().modes, 3.0, "rkl", 1.8, 2500),  # reverse KL at τ = 3: it covers, it does not seek (see below)
]


@pytest.mark.parametrize(
    "modes, tau, loss, lr, steps", REFERENCE, ids=[f"{len(m)}modes-tau{t:g}-{n}" for m, t, n, _, _ in REFERENCE]
)
def test_fast_fit_reaches_the_optimum_of_a_long_plain_gradient_descent(modes, tau, loss, lr, steps):
    """Tolerance: μ and σ within 0.01 class, the loss within 1e-9 (relative), from a few tens of Newton
    iterations instead of thousands of gradient steps."""
    fast = _fit(loss, modes=modes, tau=tau)
    slow = _fit(loss, modes=modes, tau=tau, method="gd", lr=lr, steps=steps)
    assert slow.grad_norm < 1e-5, "the reference itself has not converged"
    assert fast.converged and fast.grad_norm < 1e-6 and fast.iterations <= 60
    assert fast.mu == pytest.approx(slow.mu, abs=0.01)
    assert fast.sigma == pytest.approx(slow.sigma, abs=0.01)
    assert fast.final_loss == pytest.approx(slow.final_loss, rel=1e-9, abs=1e-12)


def test_fast_fit_of_tvd_matches_gradient_descent_despite_its_kinks():
    """TVD is not smooth, so plain gradient descent zigzags across its kinks and never gets a small gradient: the
    fast fit must land where the descent ends (within 0.02 class) with a loss no higher (1e-6)."""
    fast = _fit("tvd", tau=1.0)
    slow = _fit("tvd", tau=1.0, method="gd", lr=0.05, steps=5000)
    assert fast.converged
    assert fast.mu == pytest.approx(slow.mu, abs=0.02) and fast.sigma == pytest.approx(slow.sigma, abs=0.02)
    assert fast.final_loss <= slow.final_loss + 1e-6


def test_the_losses_differ_on_these_settings():
    """The reference comparisons above are not trivial: forward and reverse KL end far apart."""
    kl, rkl = _fit("kl", modes=BIMODAL, tau=1.0), _fit("rkl", modes=BIMODAL, tau=1.0)
    assert abs(kl.mu - rkl.mu) > 3 and kl.sigma > 2.5 * rkl.sigma


def test_forward_kl_covers_and_reverse_kl_seeks_on_a_bimodal_teacher_at_tau_1():
    res = fit_toy(ToyConfig(modes=BIMODAL, tau=1.0, losses=("kl", "rkl")))
    t_mass = [m["mass"] for m in res.modes]
    assert len(res.modes) == 2 and res.teacher_outside_main == pytest.approx(0.4, abs=0.01)
    kl, rkl = res.fits["kl"], res.fits["rkl"]
    # forward KL puts at least the teacher's share outside the main mode; reverse KL almost none
    assert kl.outside_main >= 0.9 * res.teacher_outside_main and kl.sigma > 4
    assert rkl.outside_main < 0.01 and rkl.sigma < 2 and abs(rkl.mu - 6) < 0.5
    assert fit_behaviour(kl.mode_mass, t_mass, res.main)[0] == COVERING
    assert fit_behaviour(rkl.mode_mass, t_mass, res.main) == (SEEKING, res.main)


def test_the_fit_is_fast_in_work_not_just_in_seconds():
    """Every loss converges in at most 60 Newton iterations on settings across the sliders' ranges (200 Adam steps
    per loss before, not converged)."""
    for tau, eps, alpha in [(0.5, 0.05, 0.1), (1.25, 0.05, 0.1), (3.0, 0.01, 0.1), (4.5, 0.05, 0.1), (5.0, 1.0, 0.9)]:
        res = fit_toy(ToyConfig(tau=tau, eps=eps, alpha=alpha, snapshot_every=10**9))
        for name, fit in res.fits.items():
            assert fit.converged and fit.iterations <= 80, (tau, eps, alpha, name, fit.iterations)
            assert fit.final_loss <= fit.path[0]["loss"] + 1e-12


def test_newton_finds_the_rosenbrock_minimum():
    def grad_hessian(x):
        a, b = x
        f = (1 - a) ** 2 + 100 * (b - a * a) ** 2
        g = np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])
        H = np.array([[2 - 400 * (b - 3 * a * a), -400 * a], [-400 * a, 200.0]])
        return f, g, H

    def values(X):
        return (1 - X[:, 0]) ** 2 + 100 * (X[:, 1] - X[:, 0] ** 2) ** 2

    res = newton(grad_hessian, values, [-1.2, 1.0], max_iter=200, gtol=1e-10)
    assert res.converged and np.allclose(res.x, [1.0, 1.0], atol=1e-6)


def test_batched_class_sinkhorn_is_the_one_row_version_row_by_row():
    g = torch.Generator().manual_seed(0)
    s = torch.softmax(torch.randn(4, 24, generator=g, dtype=torch.float64), -1)
    t = torch.softmax(torch.randn(4, 24, generator=g, dtype=torch.float64), -1)
    for eps in (0.05, 0.01):  # scaling and log domain
        rows = class_sinkhorn_rows(s, t, eps)
        assert torch.allclose(rows, torch.stack([class_sinkhorn(s[i], t[i], eps) for i in range(4)]), rtol=1e-12)


def test_teacher_modes_split_at_the_valleys():
    res = fit_toy(ToyConfig(losses=("rkl",)))
    assert [m["peak"] for m in res.modes] == [6, 16, 22]
    assert res.modes[0]["lo"] == 0 and res.modes[-1]["hi"] == 23
    assert all(a["hi"] + 1 == b["lo"] for a, b in zip(res.modes, res.modes[1:]))
    assert sum(m["mass"] for m in res.modes) == pytest.approx(1.0) and res.main == 0
    assert teacher_modes([0.1, 0.2, 0.4, 0.2, 0.1]) == [{"lo": 0, "peak": 2, "hi": 4, "mass": pytest.approx(1.0)}]


# ---------------------------------------------------------------------------------------------------------------
# The words under the toy are computed from the fits


def _sentence(sentences: list[str], start: str) -> str:
    return next(s for s in sentences if s.startswith(start))


def test_words_follow_the_fits_at_tau_1_and_tau_3():
    at1 = describe_fits(fit_toy(ToyConfig(tau=1.0)))
    rkl1 = _sentence(at1, "Reverse KL")
    assert "settles on the main mode" in rkl1 and "mode-seeking" in rkl1
    assert _sentence(at1, "Forward KL").startswith("Forward KL spreads the student")
    res3 = fit_toy(ToyConfig(tau=3.0))
    rkl3 = _sentence(describe_fits(res3), "Reverse KL")
    # at τ = 3 reverse KL covers the modes: no word of settling or leaving the rest, and the measured share
    assert "settles" not in rkl3 and "leaves the rest" not in rkl3 and "almost nothing" not in rkl3
    assert "spreads the student over the modes" in rkl3
    assert f"{res3.fits['rkl'].outside_main:.0%} of its mass lies outside the main mode" in rkl3
    assert res3.fits["rkl"].outside_main > res3.teacher_outside_main


def test_words_are_a_pure_function_of_the_numbers():
    res = fit_toy(ToyConfig(tau=1.0, losses=("rkl",))).to_dict()
    before = describe_fits(res)
    fit = res["fits"]["rkl"]
    # the same fit, now with half its mass on the second mode: the words must change with it
    fit["mode_mass"], fit["outside_main"], fit["rare_mass"] = [0.5, 0.45, 0.05], 0.5, 0.05
    after = describe_fits(res)
    assert describe_fits(fit_toy(ToyConfig(tau=1.0, losses=("rkl",))).to_dict()) == before  # deterministic
    assert "settles on the main mode" in before[1] and "settles" not in after[1]
    assert "spreads the student over the modes" in after[1] and "50% of its mass" in after[1]
    # a student sitting on the second mode is mode-seeking there, not mass-covering
    fit["mode_mass"], fit["outside_main"] = [0.0, 0.999, 0.001], 1.0
    assert "settles on the mode around class 16" in describe_fits(res)[1]
    # a collapsed and an unconverged fit say so
    fit["sigma"], fit["converged"], fit["iterations"] = 0.2, False, 200
    text = describe_fits(res)[1]
    assert "under half a class" in text and "Not converged after 200 iterations" in text
    assert describe_fits(res)[0].startswith("The teacher has 3 modes")


def test_sinkhorn_at_large_eps_collapses_and_the_words_say_so():
    res = fit_toy(ToyConfig(tau=1.0, eps=1.0, losses=("sinkhorn",)))
    fit = res.fits["sinkhorn"]
    assert fit.converged and fit.sigma < 0.5
    assert "under half a class" in _sentence(describe_fits(res), "Sinkhorn")


# ---------------------------------------------------------------------------------------------------------------
# Transport plan relative to the uniform plan


def test_uniform_plan_with_noise_is_drawn_uniform_with_its_note():
    b = 8
    rng = np.random.default_rng(0)
    plan = (np.full((b, b), 1 / b**2) * (1 + 1e-8 * rng.standard_normal((b, b)))).tolist()
    summary = summarise_plan(plan)
    assert summary.uniform and summary.max_deviation < 1e-6
    assert "uniform (every pair gets 1/B²" in summary.note and "does not distinguish the examples" in summary.note
    fig = plots.transport_plan(plan, [f"ex{i}" for i in range(b)])
    heat = fig.data[0]
    assert all(v == 1.0 for row in heat.z for v in row)  # constant: the noise is not stretched over the scale
    assert (heat.zmin, heat.zmax) == (0.0, 2.0)
    assert fig.layout.meta["uniform"] and fig.layout.meta["note"] == summary.note
    assert "does not distinguish the" in fig.layout.title.text  # the note is drawn with the plan
    assert heat.customdata[0][0] == pytest.approx(plan[0][0] * b * b)  # the true value stays in the hover


def test_diagonal_plan_is_high_on_the_diagonal():
    b = 5
    plan = (np.eye(b) / b).tolist()
    summary = summarise_plan(plan)
    assert not summary.uniform and summary.diagonal_mass == pytest.approx(1.0) and summary.matched == b
    assert "100% of the plan's mass is on the diagonal" in summary.note
    heat = plots.transport_plan(plan, list("abcde")).data[0]
    assert [heat.z[i][i] for i in range(b)] == pytest.approx([b] * b)  # B²·(1/B) = B
    assert all(heat.z[i][j] == 0 for i in range(b) for j in range(b) if i != j)
    assert heat.zmin == 0 and heat.zmax == pytest.approx(b)


def test_nearly_uniform_plan_keeps_a_range_around_1():
    b = 4
    plan = np.full((b, b), 1 / b**2)
    plan[0, 0] *= 1.05
    plan[0, 1] *= 0.95
    summary = summarise_plan(plan.tolist())
    assert not summary.uniform and summary.max_deviation == pytest.approx(0.05, rel=1e-6)
    heat = plots.transport_plan(plan.tolist(), list("abcd")).data[0]
    assert (heat.zmin, heat.zmax) == (0.0, 2.0)  # a 5% departure is not blown up to the whole colour scale
    assert summarise_plan(plan.tolist(), tolerance=0.1).uniform and UNIFORM_TOLERANCE < 0.05


def test_cost_matrix_figure():
    fig = plots.cost_matrix([[0.0, 1.5], [1.5, 0.0]], ["<i>a</i>", "b"])
    assert list(map(list, fig.data[0].z)) == [[0.0, 1.5], [1.5, 0.0]] and fig.data[0].x[0] == "&lt;i&gt;a&lt;/i&gt;"


# ---------------------------------------------------------------------------------------------------------------
# Teacher vs student bars


def test_student_bars_are_drawn_beside_the_teacher_bars_and_visible():
    fig = plots.probability_bars(["a", "b", "c"], [0.7, 0.2, 0.1], [0.001, 0.5, 0.499], title="example 3")
    teacher, student = fig.data
    assert (teacher.name, student.name) == ("teacher", "student")
    assert fig.layout.barmode == "group" and teacher.offsetgroup != student.offsetgroup  # side by side
    for bars in (teacher, student):
        assert bars.opacity == 1 and bars.marker.line.width > 0 and bars.marker.color
    assert list(student.y) == [0.001, 0.5, 0.499] and student.text[0] == "0.001"  # a tiny bar still shows its value
    assert fig.layout.title.text == "example 3"


def test_pair_report_says_what_the_bars_show(tiny_dir):
    from kd_analysis.data import Example
    from kd_analysis.loss_explorer.real_pair import ExplorerSettings, explore_pair
    from kd_analysis.models import ModelSpec, StudentSpec
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.pair import check_pair
    from kd_analysis.models.students import derive_student

    t = load_model(ModelSpec(str(tiny_dir / "llama")))
    s = derive_student(t, StudentSpec(num_layers=1))
    ex = [Example(str(i), f"Tom has {i} apples", answer=str(i + 1)) for i in range(3)]
    rep = explore_pair(t, s, ex, ExplorerSettings(topk=16, losses=("kl", "sinkhorn")), check_pair(t, s).aligned_outputs)
    assert len(rep.shown) == 3 and rep.shown[0].startswith("example 0: the next token after position")
    last = t.tokenizer.decode([t.tokenizer(f"{ex[0].text} {ex[0].answer}")["input_ids"][-1]])
    assert repr(last) in rep.shown[0] and "top 10 tokens" in rep.shown[0]
    assert all(0 < m <= 1 + 1e-6 for m in rep.shown_teacher_mass + rep.shown_student_mass)

    mc = load_model(ModelSpec(str(tiny_dir / "bert"), task="multiple_choice"))
    mcs = derive_student(mc, StudentSpec(num_layers=1))
    exs = [Example(str(i), f"q{i}", choices=["a", "b", "c"], label=0) for i in range(3)]
    rep = explore_pair(mc, mcs, exs, ExplorerSettings(losses=("kl", "sinkhorn")))
    assert rep.shown[1] == "example 1: its 3 answer choices"
    assert rep.shown_teacher_mass[0] == pytest.approx(1.0, abs=1e-5)
