"""The loss-balance monitor: gradient norms at the student's output against their closed forms, the imbalance
advice, and the monitor in train(), the CLI and the run page."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from kd_analysis.losses import LOSSES
from kd_analysis.models.specs import ModelSpec
from kd_analysis.training.balance import balance_report, balance_series, imbalance, term_grad_norms
from kd_analysis.training.config import LossTerm, StudentSpec, TrainConfig
from tests.helpers.lm_runs import arith_file, tiny_lm_config
from tests.helpers.runs import mc_file

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.numeric
def test_gradient_norms_at_the_output_match_their_closed_forms():
    """Mean CE over B rows: (softmax − one-hot)/B; KL at τ with τ²: τ (q − p)/B."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    zt = torch.randn(6, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    tau = 2.0
    terms = {
        "ce": torch.nn.functional.cross_entropy(z, y),
        "kl": LOSSES["kl"](z, zt, tau=tau, tau_squared=True),
        "fixed": torch.tensor(1.0),  # no gradient: left out
    }
    norms = term_grad_norms(terms, z)
    q, p = torch.softmax(z.detach(), -1), torch.softmax(zt, -1)
    ce_grad = (q - torch.nn.functional.one_hot(y, 5)) / 6
    kl_grad = tau * (torch.softmax(z.detach() / tau, -1) - torch.softmax(zt / tau, -1)) / 6
    assert set(norms) == {"ce", "kl"}
    assert norms["ce"] == pytest.approx(float(ce_grad.norm()), rel=1e-12)
    assert norms["kl"] == pytest.approx(float(kl_grad.norm()), rel=1e-12)
    assert float(p.sum()) == pytest.approx(6.0)


def test_imbalance_names_the_weak_term_and_the_weight_that_balances_it():
    weights = {"ce": 1.0, "kl": 0.5, "js": 0.0}
    found = imbalance({"ce": 0.3, "kl": 0.001, "js": 1e-9}, weights)  # js has weight 0: not compared
    assert found is not None and (found.strong, found.weak) == ("ce", "kl")
    assert found.ratio == pytest.approx(0.3 / 0.0005)
    assert found.weak_weight * 0.001 == pytest.approx(1.0 * 0.3)  # the suggested weight equalises the pulls
    assert found.strong_weight * 0.3 == pytest.approx(0.5 * 0.001)
    assert "kl barely trains the student" in found.message(weights) and "600×" in found.message(weights)
    assert imbalance({"ce": 0.3, "kl": 0.01}, weights) is None  # 60×: under the threshold
    assert imbalance({"ce": 0.3, "kl": 0.0}, weights) is None  # no gradient this step: nothing to compare
    assert imbalance({"ce": 0.3}, weights) is None


def test_training_logs_the_monitor_every_n_steps_and_warns_once(tiny_dir, tmp_path):
    from kd_analysis.training.loop import train

    cfg = TrainConfig(
        teacher=ModelSpec(str(tiny_dir / "gpt2"), task="multiple_choice"),
        student=StudentSpec(num_layers=1),
        data=str(mc_file(tmp_path / "mc.jsonl")),
        steps=5,
        eval_every=5,
        eval_size=8,
        batch_size=4,
        losses=[LossTerm("ce", 1.0), LossTerm("kl", 1e-6)],
        lr=1e-3,
        balance_every=2,
        save_checkpoint=False,
    )
    seen: list = []
    res = train(cfg, on_metrics=seen.append)
    steps = [m for m in seen if "loss" in m]
    monitored = [m["step"] for m in steps if "grad_norm_ce" in m]
    assert monitored == [1, 2, 4]
    assert all(m["grad_norm_ce"] > 0 and m["grad_norm_kl"] > 0 for m in steps if "grad_norm_ce" in m)
    assert sum("loss balance" in w for w in res.warnings) == 1 and "barely trains" in res.warnings[0]
    off = TrainConfig(**{**cfg.__dict__, "balance_every": 0, "steps": 2})
    seen_off: list = []
    train(off, on_metrics=seen_off.append)
    assert not any(k.startswith("grad_norm") for m in seen_off for k in m)
    with pytest.raises(Exception, match="balance_every"):
        TrainConfig.from_dict({"teacher": "x", "balance_every": -1})


@pytest.mark.numeric
def test_the_block_mode_reports_the_same_norms_as_full_logits(tiny_dir, tmp_path, monkeypatch):
    """First step (same weights in both runs): the exact online mode's per-term norms from its blocks equal the
    norms taken on the full logits."""
    from kd_analysis.training import loop, session

    cfg = tiny_lm_config(
        tiny_dir / "llama",
        arith_file(tmp_path / "a.jsonl"),
        steps=1,
        teacher_cache="none",
        tau=2.0,
        losses=[LossTerm("ce", 0.5), LossTerm("kl", 1.0), LossTerm("gjsd", 0.3)],
    )
    runs = []
    for blocks in (True, False):
        if not blocks:
            monkeypatch.setattr(session, "blockwise", lambda *a, **k: False)
        seen: list = []
        loop.train(cfg, on_metrics=seen.append)
        runs.append(next(m for m in seen if "grad_norm_ce" in m))
    for term in ("ce", "kl", "gjsd"):
        assert runs[0][f"grad_norm_{term}"] == pytest.approx(runs[1][f"grad_norm_{term}"], rel=1e-4)


def _monitored_run(store):
    run = store.create(
        "train",
        {"name": "imbalanced", "losses": [{"name": "ce", "weight": 1.0}, {"name": "kl", "weight": 0.01}]},
        run_id="imbalanced",
        state="finished",
    )
    for step, kl in ((1, 0.002), (10, 0.001)):
        run.append_metrics(
            {"step": step, "loss": 1.0, "loss_ce": 0.9, "loss_kl": 0.05, "grad_norm_ce": 0.3, "grad_norm_kl": kl}
        )
    run.append_metrics({"step": 15, "loss": 0.9, "loss_ce": 0.85, "loss_kl": 0.04})
    return run


def test_balance_report_cli_and_series(run_root, capsys):
    from kd_analysis.cli import main
    from kd_analysis.runs import RunStore

    run = _monitored_run(RunStore(run_root))
    report = balance_report(run.metrics(), run.config())
    assert report["monitored_steps"] == 2 and report["last"]["step"] == 10
    assert report["imbalance"]["step"] == 10 and "30,000×" in report["imbalance"]["message"]
    assert balance_series(run.metrics())["value"]["kl"] == [(1, 0.05), (10, 0.05)]  # values beside monitored steps
    main(["runs", "balance", "imbalanced", "--root", str(run_root)])
    out = capsys.readouterr().out
    assert (
        "2 monitored steps" in out
        and "A weight of 300 on kl" in out
        and not math.isnan(report["last"]["grad_norms"]["kl"])
    )


def test_the_run_page_plots_the_monitor_and_warns(run_root):
    from streamlit.testing.v1 import AppTest

    from kd_analysis.plots.runs import balance_curves
    from kd_analysis.runs import RunStore

    run = _monitored_run(RunStore(run_root))
    fig = balance_curves(balance_series(run.metrics()), {"ce": 1.0, "kl": 0.01})
    assert [t.name for t in fig.data] == ["ce", "ce", "kl", "kl"]
    assert list(fig.data[3].y) == pytest.approx([0.01 * 0.002, 0.01 * 0.001])  # weighted norms on the right
    # both log axes label ticks with full values (plotly's default "2, 5" between decades read as 2 and 5)
    axes = [fig.layout[k] for k in fig.layout if k.startswith("yaxis")]
    assert len(axes) == 2 and all(a.type == "log" and a.tickformat == "~g" for a in axes)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.query_params["watch"] = "imbalanced"
    at.switch_page("pages/distillation_runs.py").run()
    assert not at.exception
    assert any("kl barely trains the student" in w.value for w in at.warning)
