"""Run progress and comparison data (what the pages draw)."""

from __future__ import annotations

import pytest

from kd_analysis.plots.runs import metric_curves, run_losses
from kd_analysis.runs import RunStore
from kd_analysis.training.progress import config_diff, curves, final_table, metric_names, run_progress


@pytest.fixture
def store(run_root):
    store = RunStore(run_root)
    a = store.create("train", {"name": "A", "lr": 0.1, "losses": [{"name": "ce", "weight": 1}]}, run_id="a")
    b = store.create("train", {"name": "B", "lr": 0.2, "losses": [{"name": "ce", "weight": 1}]}, run_id="b")
    a.set_status("running")
    for s in range(1, 5):
        a.append_metrics(
            {"step": s, "total_steps": 8, "loss": 2.0 / s, "loss_ce": 2.0 / s, "eta_s": 8 - s, "elapsed_s": float(s)}
        )
    a.append_metrics({"step": 4, "eval_accuracy": 0.5})
    b.append_metrics({"step": 1, "total_steps": 1, "loss": 1.0})
    b.append_metrics({"step": 1, "eval_accuracy": 0.7})
    b.set_status("finished")
    return store


def test_progress_fraction_and_eta(store):
    p = run_progress(store.get("a"))
    assert (p.step, p.total, p.fraction, p.eta_s) == (4, 8, 0.5, 4)
    assert p.evals == {"accuracy": 0.5}
    assert run_progress(store.get("b")).fraction == 1.0


def test_progress_of_background_jobs_without_a_loss(store):
    """Rationale and attention jobs report progress records only; their config's `steps` means IG steps."""
    job = store.create("rationales", {"name": "R", "steps": 32, "method": "ig"}, run_id="job")
    job.set_status("running")
    for s in (1, 2, 3):
        job.append_metrics({"step": s, "total_steps": 10, "role": "teacher"})
    p = run_progress(store.get("job"))
    assert (p.step, p.total, p.fraction) == (3, 10, 0.3)
    fresh = store.create("rationales", {"name": "R", "steps": 32}, run_id="fresh")
    assert run_progress(fresh).total is None  # never mistake IG steps for progress


def test_compare_data(store):
    assert metric_names(store, ["a", "b"])[:2] == ["loss", "loss_ce"]
    c = curves(store, ["a", "b"], "loss")
    assert c["A"] == ([1, 2, 3, 4], [2.0, 1.0, 2 / 3, 0.5]) and c["B"] == ([1], [1.0])
    rows = {r["run"]: r for r in final_table(store, ["a", "b"])}
    assert rows["a"]["final accuracy"] == 0.5 and rows["b"]["best accuracy"] == 0.7
    gen = store.create("train", {"name": "G"}, run_id="g")
    for step, nll in ((0, 2.4), (10, 0.6), (20, 0.8), (30, None)):  # None: truncation left no target token
        gen.append_metrics({"step": step, "eval_exact_match": 0.1, "eval_answer_nll": nll})
    g = final_table(store, ["g"])[0]
    assert g["best answer_nll"] == 0.6 and g["best exact_match"] == 0.1  # lower is better for an NLL
    diff = {r["setting"]: r for r in config_diff(store, ["a", "b"])}
    assert set(diff) == {"lr", "name"} and diff["lr"]["a"] == "0.1"
    fig = metric_curves(c, "loss")
    assert [t.name for t in fig.data] == ["A", "B"]
    assert {t.name for t in run_losses(store.get("a").metrics()).data} == {"loss", "loss_ce"}
