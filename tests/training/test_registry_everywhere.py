"""Adding a loss is one decorated function: a loss registered here (with a parameter) reaches the toy, the pair
explorer, the run form and the training loop, with its parameter, and nothing else is edited."""

from __future__ import annotations

import json

import pytest
import torch

from kd_analysis.data import Example
from kd_analysis.losses.registry import LOSSES, Param

NAME = "test_lp"


def _lp_rows(lt: torch.Tensor, ls: torch.Tensor, power: int = 2) -> torch.Tensor:
    """Σ |p_t − p_s|^power per row."""
    return (lt.exp() - ls.exp()).abs().pow(power).sum(-1)


@pytest.fixture
def extra_loss():
    from kd_analysis.losses.divergences import register_divergence

    register_divergence(
        NAME,
        title="L_p between probabilities (test)",
        description="a loss registered by a test",
        symmetric=True,
        params=(Param("power", 2, 1, 4, "the exponent p"),),
    )(_lp_rows)
    try:
        yield LOSSES[NAME]
    finally:
        LOSSES.pop(NAME)


def test_a_registered_loss_is_fitted_by_the_toy_with_its_parameter(extra_loss):
    from kd_analysis.loss_explorer.toy import ToyConfig, fit_toy, teacher_distribution

    assert NAME in ToyConfig().losses  # every loss registered by now, without naming it
    cfg = ToyConfig(losses=(NAME,), params={"power": 3})
    fit = fit_toy(cfg).fits[NAME]
    teacher = teacher_distribution(cfg)
    direct = float((torch.tensor(fit.probs, dtype=torch.float64) - teacher).abs().pow(3).sum())
    assert fit.final_loss == pytest.approx(direct, rel=1e-6)  # power 3 reached the loss (power 2 would differ)
    assert direct != pytest.approx(
        float((torch.tensor(fit.probs, dtype=torch.float64) - teacher).abs().pow(2).sum()), rel=1e-3
    )


def test_a_registered_loss_appears_in_the_pair_explorer(extra_loss, tiny_dir):
    from kd_analysis.loss_explorer.real_pair import ExplorerSettings, explore_pair
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.scoring import class_logits
    from kd_analysis.models.specs import ModelSpec, StudentSpec
    from kd_analysis.models.students import derive_student

    t = load_model(ModelSpec(str(tiny_dir / "bert")))
    s = derive_student(t, StudentSpec(num_layers=1))
    ex = [Example(str(i), f"the cat sat {i}", label=i % 2) for i in range(4)]
    values = {power: explore_pair(t, s, ex, ExplorerSettings(params={"power": power})).values[NAME] for power in (1, 3)}
    ts, ss = class_logits(t, ex), class_logits(s, ex)
    for power, value in values.items():
        direct = _lp_rows(torch.log_softmax(ts / 2.0, -1), torch.log_softmax(ss / 2.0, -1), power).mean()
        assert value == pytest.approx(float(direct), rel=1e-5)


def test_a_registered_loss_has_a_weight_and_its_parameter_in_the_run_form(extra_loss, tiny_dir, run_root):
    from tests.helpers.pages import RUNS_PAGE, open_with

    at = open_with(tiny_dir / "gpt2", "multiple_choice", RUNS_PAGE, layers=1)
    assert not at.exception, [e.value for e in at.exception]
    labels = [n.label for n in at.number_input]
    assert NAME in labels and "power" in labels  # its weight, and its parameter with the registry's range
    power = next(n for n in at.number_input if n.label == "power")
    assert (power.value, power.min, power.max) == (2, 1, 4)


def test_a_registered_loss_trains_in_the_loop_with_its_parameter(extra_loss, tiny_dir, tmp_path):
    from kd_analysis.models.specs import ModelSpec, StudentSpec
    from kd_analysis.training.config import LossTerm, TrainConfig
    from kd_analysis.training.loop import train

    data = tmp_path / "mc.jsonl"
    rows = [
        {
            "id": f"q{i}",
            "question": f"what is {i} plus one",
            "answerKey": "A",
            "choices": {"label": ["A", "B"], "text": [str(i + 1), str(i + 7)]},
        }
        for i in range(16)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = TrainConfig(
        teacher=ModelSpec(str(tiny_dir / "gpt2"), task="multiple_choice"),
        student=StudentSpec(num_layers=1),
        data=str(data),
        losses=[LossTerm("ce", 0.5), LossTerm(NAME, 0.5, {"power": 3})],
        steps=2,
        eval_every=2,
        eval_size=4,
        batch_size=4,
    )
    cfg.validate()
    seen: list[dict] = []
    result = train(cfg, out_dir=tmp_path / "out", on_metrics=seen.append)
    assert result.state == "finished"
    assert all(m[f"loss_{NAME}"] >= 0 for m in seen if "loss" in m) and any(f"loss_{NAME}" in m for m in seen)


def test_the_registry_keeps_one_order_whichever_module_registered_first():
    """The app imports modules from two threads; a Sinkhorn registered before the objectives must not move the
    run form's columns: divergences, objectives, Sinkhorn, each module's losses in their registration order."""
    from kd_analysis.losses import LOSSES, canonical_order

    want, original = list(LOSSES), dict(LOSSES)
    scrambled = ["sinkhorn", *reversed(want[:-1])]  # Sinkhorn first, every module's losses reversed
    try:
        LOSSES.clear()
        LOSSES.update({name: original[name] for name in scrambled})
        canonical_order()
        got = list(LOSSES)
        assert got[-1] == "sinkhorn" and got.index("akl") > got.index("soft_ce")
        assert got[:6] == want[:6][::-1]  # the sort groups modules and keeps the order within each
    finally:
        LOSSES.clear()
        LOSSES.update(original)
    assert list(LOSSES) == want
