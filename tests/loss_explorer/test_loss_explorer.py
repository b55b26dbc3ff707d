"""Toy and real-pair explorers, their figures, and the loss CLI."""

from __future__ import annotations

import json

import plotly.graph_objects as go
import pytest
import torch

from kd_analysis.data import Example
from kd_analysis.exceptions import KDLensError
from kd_analysis.loss_explorer.real_pair import ExplorerSettings, explore_pair
from kd_analysis.loss_explorer.toy import ToyConfig, class_sinkhorn, fit_toy
from kd_analysis.losses import LOSSES
from kd_analysis.models import ModelSpec, StudentSpec
from kd_analysis.models.loading import load_model
from kd_analysis.models.pair import check_pair
from kd_analysis.models.students import derive_student
from kd_analysis.plots import losses as plots
from tests.helpers.cli import assert_clean_error, cli


@pytest.fixture(scope="module")
def toy():
    return fit_toy(ToyConfig())


def test_toy_shows_each_losss_character(toy):
    f = toy.fits
    # forward KL covers both main modes (6 and 16): wide and in between
    assert 8 < f["kl"].mu < 12 and f["kl"].sigma > 5
    # reverse KL settles on the nearest mode and drops the rare one
    assert abs(f["rkl"].mu - 6) < 0.5 and f["rkl"].sigma < 2.5 and f["rkl"].rare_mass < 0.01
    # KL keeps much more of the rare mode than RKL; every fit lowered its loss
    assert f["kl"].rare_mass > 10 * f["rkl"].rare_mass + 0.01
    for fit in f.values():
        assert fit.path[-1]["loss"] <= fit.path[0]["loss"] + 1e-9
        assert abs(sum(fit.probs) - 1) < 1e-9


def test_class_sinkhorn_matches_pot_emd_for_small_eps():
    import numpy as np
    import ot

    p = torch.tensor([0.5, 0.0 + 1e-9, 0.5 - 1e-9], dtype=torch.float64)
    q = torch.tensor([0.0 + 1e-9, 0.5, 0.5 - 1e-9], dtype=torch.float64)
    k = np.arange(3)
    exact = ot.emd2(p.numpy(), q.numpy(), np.abs(k[:, None] - k[None, :]) / 2)
    assert class_sinkhorn(p, q, eps=0.002, iters=3000).item() == pytest.approx(exact, abs=2e-3)


def test_toy_bad_parameters():
    with pytest.raises(KDLensError):
        fit_toy(ToyConfig(tau=0))


def _pair(tiny_dir, family, task=None):
    t = load_model(ModelSpec(str(tiny_dir / family), task=task))
    s = derive_student(t, StudentSpec(num_layers=1))
    return t, s, check_pair(t, s)


def test_explorer_multiple_choice(tiny_dir):
    t, s, r = _pair(tiny_dir, "gpt2", "multiple_choice")  # choices scored by the LM's log-likelihood
    ex = [Example(str(i), f"what is {i} plus three", choices=["a", "b", "c"], label=i % 3) for i in range(6)]
    rep = explore_pair(t, s, ex, ExplorerSettings(), r.aligned_outputs)
    assert rep.kind == "choices" and set(rep.values) == set(LOSSES)
    assert len(rep.plan) == 6 and abs(sum(map(sum, rep.plan)) - 1) < 1e-5
    assert all(len(v) == 6 for v in rep.per_example.values())
    assert rep.columns[0] == ["a", "b", "c"] and all(g > 0 for g in rep.grad_norms.values())
    assert sum(rep.per_example["sinkhorn"]) == pytest.approx(rep.values["sinkhorn"], rel=1e-5)
    assert len(rep.table()) == 6


def test_explorer_gradient_norm_is_the_logit_gradient(tiny_dir):
    t, s, _r = _pair(tiny_dir, "bert")
    ex = [Example(str(i), f"the cat sat {i}", label=i % 2) for i in range(4)]
    rep = explore_pair(t, s, ex, ExplorerSettings(losses=("kl",)))
    from kd_analysis.models.scoring import class_logits

    ts, ss = class_logits(t, ex), class_logits(s, ex).requires_grad_(True)
    (g,) = torch.autograd.grad(LOSSES["kl"](ss, ts, tau=2.0), ss)
    assert rep.grad_norms["kl"] == pytest.approx(g.norm().item(), rel=1e-5)
    assert rep.kind == "labels"


def test_explorer_language_model_per_token(tiny_dir):
    t, s, r = _pair(tiny_dir, "llama")
    ex = [Example(str(i), f"Tom has {i} apples", answer=str(i + 1)) for i in range(4)]
    rep = explore_pair(t, s, ex, ExplorerSettings(topk=16), r.aligned_outputs)
    assert rep.kind == "tokens" and len(rep.per_token) == 4
    tokens = rep.per_token["0"]
    assert len(tokens) >= 3 and all(v >= 0 for _, v in tokens)
    assert len(rep.columns[0]) == 10


def test_explorer_bad_input(tiny_dir):
    t, s, _ = _pair(tiny_dir, "bert", "multiple_choice")
    with pytest.raises(KDLensError, match="at least 2"):
        explore_pair(t, s, [Example("1", "q", choices=["a", "b"], label=0)])
    with pytest.raises(KDLensError, match="choices"):
        explore_pair(t, s, [Example("1", "q"), Example("2", "r")])


def test_figures_are_built_from_data(toy):
    fig = plots.toy_fits(toy.teacher, {k: v.probs for k, v in toy.fits.items()})
    assert isinstance(fig, go.Figure) and len(fig.data) == 2 * len(toy.fits)
    assert list(fig.data[1].y) == toy.fits["kl"].probs
    paths = plots.toy_paths({k: v.path for k, v in toy.fits.items()})
    assert len(paths.data) == 2 * len(toy.fits)
    plan = plots.transport_plan([[0.5, 0.0], [0.0, 0.5]], ["<b>x</b>", "y"])
    assert plan.data[0].x[0] == "&lt;b&gt;x&lt;/b&gt;"  # token text is escaped, never rendered as markup
    bars = plots.probability_bars(["a", "b"], [0.7, 0.3], [0.4, 0.6], gold=0)
    assert bars.data[0].x[0].endswith("✓") and list(bars.data[1].y) == [0.4, 0.6]
    lg = plots.loss_and_gradients({"kl": 1.0, "sinkhorn": 0.2}, {"kl": 0.5, "sinkhorn": 3.0})
    assert list(lg.data[1].y) == [0.5, 3.0]


def test_cli_losses_toy_json():
    proc = cli("losses", "toy", "--json", "--steps", "40")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out["fits"]) == set(LOSSES) and len(out["teacher"]) == 24


@pytest.mark.slow
def test_cli_losses_pair_json(tiny_dir, tmp_path):
    data = tmp_path / "mc.jsonl"
    data.write_text(
        "".join(
            json.dumps({"question": f"q{i}", "choices": {"label": ["A", "B"], "text": ["x", "y"]}, "answerKey": "A"})
            + "\n"
            for i in range(8)
        )
    )
    proc = cli(
        "losses",
        "pair",
        "--teacher",
        str(tiny_dir / "bert"),
        "--layers",
        "1",
        "--task",
        "multiple_choice",
        "--data",
        str(data),
        "--batch",
        "4",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out["values"]) == set(LOSSES) and len(out["plan"]) == 4
    assert_clean_error(
        cli(
            "losses",
            "pair",
            "--teacher",
            str(tiny_dir / "bert"),
            "--layers",
            "1",
            "--task",
            "multiple_choice",
            "--data",
            str(data),
            "--batch",
            "1",
        ),
        "at least 2",
    )


def test_row_shuffle_moves_row_wise_losses_but_not_sinkhorn():
    from kd_analysis.loss_explorer.toy import shuffle_demo

    demo = shuffle_demo(rows=6, classes=5, seed=3)
    assert demo.shuffled["sinkhorn"] == pytest.approx(demo.aligned["sinkhorn"], rel=1e-9)
    for name in ("kl", "rkl", "js", "tvd"):
        assert demo.shuffled[name] > 3 * demo.aligned[name]  # the mix-up is plain to every row-wise loss


def test_lm_view_reports_the_cached_top_k_and_tail_mass(tiny_dir):
    from kd_analysis.loss_explorer.real_pair import cached_topk_view
    from kd_analysis.losses import LOSSES, sparse_kd, teacher_topk_logprobs

    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 30, generator=g), torch.randn(4, 30, generator=g)
    values, t_tail, s_tail = cached_topk_view(s, t, ExplorerSettings(tau=2.0, cache_k=5))
    lp, idx = teacher_topk_logprobs(t, 5, tau=2.0)
    assert values["kl"] == pytest.approx(sparse_kd("kl", s, lp, idx, tau=2.0).item(), rel=1e-6)
    # every row-wise loss with a bucketed form; ULD ranks tokens, so it has none and is left out
    assert "sinkhorn" not in values and "uld" not in values
    assert set(values) == {n for n in LOSSES if LOSSES[n].rows is not None and LOSSES[n].bucketed != "none"}
    p_t = torch.softmax(t / 2, -1)
    assert t_tail == pytest.approx((1 - p_t.gather(-1, idx).sum(-1)).tolist(), rel=1e-5)
    assert all(0 < v < 1 for v in s_tail)
    full, _, _ = cached_topk_view(s, t, ExplorerSettings(tau=2.0, cache_k=30))
    assert full["kl"] == pytest.approx(LOSSES["kl"](s, t, tau=2.0).item(), rel=1e-5)
