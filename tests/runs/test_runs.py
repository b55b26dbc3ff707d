"""Run store: folders, atomic status, tolerant metrics, listing."""

from __future__ import annotations

import json
import os

import pytest

from kd_analysis.exceptions import RunStoreError
from kd_analysis.fileio import atomic_write_json
from kd_analysis.runs import RunStore


def test_create_status_metrics_and_show(run_root):
    store = RunStore()
    assert store.root == run_root
    run = store.create("train", {"lr": 1e-3, "name": "demo"})
    assert run.status()["state"] == "queued" and run.config() == {"kind": "train", "lr": 1e-3, "name": "demo"}
    run.set_status("running", pid=123)
    for step in range(3):
        run.append_metrics({"step": step + 1, "loss": 1.0 / (step + 1)})
    run.write_json("results/table.json", {"acc": 0.5})
    run.log("hello")
    run.set_status("finished", reason="done")
    shown = store.show(run.run_id)
    assert shown["status"]["state"] == "finished" and shown["status"]["pid"] == 123
    assert [m["step"] for m in shown["metrics"]] == [1, 2, 3]
    assert "results/table.json" in shown["artefacts"] and "log.txt" in shown["artefacts"]
    [summary] = store.list()
    assert summary.steps == 3 and summary.name == "demo" and summary.last_metrics["loss"] == pytest.approx(1 / 3)


def test_torn_metrics_line_is_skipped(run_root):
    run = RunStore().create("train", {})
    run.append_metrics({"step": 1, "loss": 2.0})
    with open(run.path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 2, "lo')  # a crash mid-write
    assert [m["step"] for m in run.metrics()] == [1]


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "status.json"
    atomic_write_json(target, {"state": "running"})

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_json(target, {"state": "finished"})
    assert json.loads(target.read_text()) == {"state": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"], "no temp file left behind"


def test_never_overwrites_and_validates_ids(run_root):
    store = RunStore()
    store.create("x", {}, run_id="same")
    with pytest.raises(RunStoreError, match="already exists"):
        store.create("x", {}, run_id="same")
    with pytest.raises(RunStoreError, match="invalid run id"):
        store.get("../etc")
    with pytest.raises(RunStoreError, match="no run"):
        store.get("missing")
    with pytest.raises(RunStoreError, match="leaves the run folder"):
        store.get("same").write_json("../escape.json", {})


def test_list_is_newest_first_filters_and_survives_damage(run_root):
    store = RunStore()
    a = store.create("train", {}, run_id="a-run")
    store.create("prime", {}, run_id="b-run")
    (a.path / "status.json").write_text("{not json")
    runs = store.list()
    assert {r.run_id for r in runs} == {"a-run", "b-run"}
    assert next(r for r in runs if r.run_id == "a-run").state == "damaged"
    assert [r.run_id for r in store.list(kind="prime")] == ["b-run"]


def test_unknown_state_rejected(run_root):
    with pytest.raises(ValueError):
        RunStore().create("x", {}).set_status("exploded")


def test_every_job_kind_names_code_that_exists():
    """A kind's code is named as text (imported on use), so no import check sees a typo there: this does."""
    import importlib

    from kd_analysis.runs.kinds import JOB_KINDS, exclusive_kinds

    assert {"train", "rationales", "attention", "teacher_outputs", "explanations", "size_speed"} <= set(JOB_KINDS)
    for kind in JOB_KINDS.values():
        module, _, name = kind.entry.partition(":")
        assert callable(getattr(importlib.import_module(module), name)), kind
    assert exclusive_kinds() == {"size_speed"}  # it times inference, so a plan runs it alone
