"""Loss explorer page (AppTest): only the chosen view runs, the toy answers its sliders from the fast fit
with words computed from it, the pair view explains its plan and its bars, and results are kept by inputs."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers.pages import HOME, LOSS_PAGE, TIMEOUT

PAIR = "Your teacher and student"


def _open(monkeypatch, calls: dict) -> AppTest:
    """The loss page through app.py, with the pair's expensive functions counted (their last result kept under
    "<name> result") and the server's shared pair results emptied."""
    import app_ui.resources
    import app_ui.shared_results as shared
    import kd_analysis.loss_explorer.real_pair as explorer

    monkeypatch.setattr(shared, "PAIR_OUTPUTS", shared.SharedResults(max_entries=2))
    monkeypatch.setattr(shared, "PAIR_LOSSES", shared.SharedResults(max_entries=32))
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    for module, name in ((app_ui.resources, "load_pair"), (explorer, "pair_outputs"), (explorer, "explore_pair")):
        real = getattr(module, name)

        def counted(*a, _real=real, _name=name, **kw):
            calls[_name] = calls.get(_name, 0) + 1
            calls[f"{_name} result"] = out = _real(*a, **kw)
            return out

        monkeypatch.setattr(module, name, counted)
    at.switch_page(LOSS_PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _view(at: AppTest, view: str) -> AppTest:
    at.segmented_control(key="loss_view").set_value(view).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _fit_words(at: AppTest) -> str:
    return next(m.value for m in at.markdown if "What each fit did" in m.value)


def test_page_opens_on_the_toy_and_runs_nothing_of_the_pair(monkeypatch):
    calls: dict = {}
    at = _open(monkeypatch, calls)
    assert calls == {}  # no model loaded, no forward pass, no loss on the pair
    assert at.segmented_control(key="loss_view").value == "toy"
    assert PAIR in at.segmented_control(key="loss_view").options
    assert any("mass on the rare mode" in df.value.columns for df in at.dataframe)
    assert not any("gradient norm" in df.value.columns for df in at.dataframe)
    assert "- Forward KL spreads the student over the modes" in _fit_words(at)
    assert len(at.get("plotly_chart")) == 4  # the fits, their paths, the α-β plane and the fit at its point
    # a slider of the toy still runs nothing of the pair
    next(s for s in at.slider if s.label == "Temperature τ").set_value(2.0).run()
    assert calls == {}


def test_toy_words_follow_the_temperature(monkeypatch):
    at = _open(monkeypatch, {})
    words = _fit_words(at)
    assert "Reverse KL settles on the main mode" in words
    next(s for s in at.slider if s.label == "Temperature τ").set_value(3.0).run()
    words = _fit_words(at)
    rkl = next(line for line in words.splitlines() if line.startswith("- Reverse KL"))
    assert "settles" not in rkl and "leaves the rest" not in rkl and "spreads the student" in rkl
    table = next(df.value for df in at.dataframe if "what it did" in df.value.columns).set_index("loss")
    assert table.loc["Reverse KL", "what it did"] == "mass-covering"


def test_pair_view_runs_on_selection_explains_plan_and_bars_and_keeps_results(monkeypatch):
    calls: dict = {}
    at = _view(_open(monkeypatch, calls), "pair")
    assert calls.get("pair_outputs") == 1 and calls.get("explore_pair") == 1
    assert any("Balance loss weights by gradient norm" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) >= 4  # losses/gradients, plan, cost, probability bars
    assert any("A good plan puts its mass on the diagonal" in m.value for m in at.markdown)
    from kd_analysis.losses.transport_plans import summarise_plan

    note = summarise_plan(calls["explore_pair result"].plan).note  # the page's words come from the plan it drew
    assert any(c.value.startswith(note) for c in at.caption)
    bars = next(c.value for c in at.caption if c.value.startswith("The bars show"))
    assert "example" in bars and "answer choices" in bars
    summary = next(df.value for df in at.dataframe if "gradient norm" in df.value.columns)
    from kd_analysis.losses import LOSSES

    assert len(summary) == len(LOSSES)
    # the pair's sliders survive a visit to the toy, and coming back computes nothing again
    next(s for s in at.slider if s.label == "τ").set_value(4.0).run()
    assert calls["explore_pair"] == 2
    _view(at, "toy")
    assert not any("gradient norm" in df.value.columns for df in at.dataframe)
    _view(at, "pair")
    assert next(s for s in at.slider if s.label == "τ").value == 4.0
    assert calls["explore_pair"] == 2 and calls["pair_outputs"] == 1


def test_toy_sliders_survive_a_visit_to_the_pair(monkeypatch):
    at = _open(monkeypatch, {})
    next(s for s in at.slider if s.label == "Sinkhorn ε").set_value(0.5).run()
    _view(at, "pair")
    _view(at, "toy")
    assert next(s for s in at.slider if s.label == "Sinkhorn ε").value == pytest.approx(0.5)


def test_a_language_model_pair_shows_what_the_top_k_cache_computes_per_loss(tiny_dir):
    """A causal LM pair: the table of full-vocabulary vs top-k + tail values says how each loss behaves on the
    buckets, and ULD, which has no bucketed form, has no bucketed value."""
    from tests.helpers.pages import open_with

    at = open_with(tiny_dir / "llama", "causal_lm", LOSS_PAGE, layers=1)
    at = _view(at, "pair")
    table = next(df.value for df in at.dataframe if "on the buckets" in df.value.columns).set_index("loss")
    assert table.loc["Reverse KL", "on the buckets"] == "at most the full value"
    assert table.loc["Adaptive KL (AKL)", "on the buckets"] == "approximation"
    assert table.loc["ULD (sorted probabilities)", "on the buckets"] == "no form"
    bucket_col = next(c for c in table.columns if c.endswith("+ tail bucket"))
    assert table[bucket_col].isna()["ULD (sorted probabilities)"] and table[bucket_col].notna()["Reverse KL"]
    assert any("can only lower an f-divergence" in c.value for c in at.caption)
