"""The inside views of one run share one load of its models; opening another run lets the first one's go."""

from __future__ import annotations


def test_a_runs_models_load_once_and_only_the_latest_run_is_kept(tmp_path, monkeypatch):
    import kd_analysis.error_analysis.explain as explain
    from app_ui import resources
    from kd_analysis.runs import RunStore

    loads: list[str] = []
    monkeypatch.setattr(
        explain, "load_run_models", lambda store, run_id, progress=None: loads.append(run_id) or object()
    )
    store = RunStore(tmp_path)
    for rid in ("a", "b"):
        store.create("train", {"name": rid}, run_id=rid, state="finished")
    first = resources.run_models_quietly(store, "a")
    assert resources.run_models_quietly(store, "a") is first and loads == ["a"]
    resources.run_models_quietly(store, "b")
    assert sum(k.startswith("runmodels:") for k in resources._models().items) == 1
    assert resources.run_models_quietly(store, "a") is not first and loads == ["a", "b", "a"]
