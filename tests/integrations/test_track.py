"""kd_analysis.track: a custom loop's metrics and records as a kd-lens run; a killed loop reads as failed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from kd_analysis import track
from kd_analysis.runs import RunStore, reconcile


def _lines(run) -> list[dict]:
    return [json.loads(x) for x in (run.path / "predictions.jsonl").read_text().splitlines()]


def test_a_loop_logs_metrics_and_records_from_its_own_outputs(tmp_path):
    """`log` keeps finite numbers only (a NaN loss is left out and the log says so); `log_outputs` writes the
    records kd-lens writes for the same scores, with KL(teacher ‖ student) from the teacher's."""
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.training.choice_records import choice_records

    examples = load_dataset("demo:sentiment").examples[:6]
    student, teacher = torch.randn(6, 2, generator=torch.Generator().manual_seed(0)), torch.randn(6, 2)
    with track.start("my loop", teacher="t", student="s", settings={"lr": 1e-4}, root=tmp_path) as run:
        run.log(1, loss=0.5, kl=float("nan"), note="text")
        run.log(2, {"loss": torch.tensor(0.25)})
        written = run.log_outputs(2, examples, student, teacher_logits=teacher, data_name="demo:sentiment")
    stored = RunStore(tmp_path).get(run.run_id)
    assert stored.status()["state"] == "finished" and stored.config()["origin"] == {"kind": "track"}
    assert [(m["step"], m.get("loss"), "kl" in m) for m in stored.metrics()] == [(1, 0.5, False), (2, 0.25, False)]
    assert "kl, note" in stored.log_tail()
    assert written == 12
    expected = choice_records(examples, student, {r.example_id: r.probs for r in choice_records(examples, teacher)})
    rows = [r for r in _lines(stored) if r["role"] == "student"]
    assert [r["kl"] for r in rows] == pytest.approx([r.kl for r in expected], abs=1e-9)


def test_an_exception_in_the_loop_marks_the_run_failed_with_its_reason(tmp_path):
    with pytest.raises(ZeroDivisionError), track.start("breaks", root=tmp_path) as run:
        run.log(1, loss=1.0)
        run.log(2, loss=1.0 / 0)
    status = RunStore(tmp_path).get(run.run_id).status()
    assert status["state"] == "failed" and "ZeroDivisionError" in status["reason"]


def test_evaluate_writes_the_records_of_kd_lens_evaluation(tmp_path, mc_head):
    """`evaluate` on a model the loop holds: eval metrics at the step, records for teacher and student."""
    from kd_analysis.data.sources import load_dataset

    examples = load_dataset("demo:mcq").examples[:5]
    with track.start("mc", root=tmp_path) as run:
        got = run.evaluate(3, mc_head.model, mc_head.tokenizer, examples, teacher=mc_head.model, data_name="demo:mcq")
    stored = RunStore(tmp_path).get(run.run_id)
    assert set(got) == {"accuracy"}
    assert any(m.get("eval_accuracy") == got["accuracy"] and m["step"] == 3 for m in stored.metrics())
    roles = {(r["role"], r["step"]) for r in _lines(stored)}
    assert roles == {("teacher", 0), ("student", 3)}
    assert all(r["kl"] == pytest.approx(0.0, abs=1e-6) for r in _lines(stored) if r["role"] == "student")


def test_a_killed_training_process_is_listed_as_failed(tmp_path):
    """kill -9 leaves no chance to say anything: the heartbeat stops with the process, and the next look at the
    store (any page, `runs list`) marks the run failed, keeping what it logged."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from kd_analysis import track
        run = track.start("doomed", root={str(tmp_path)!r})
        run.log(1, loss=1.0)
        print(run.run_id, flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        run_id = proc.stdout.readline().strip()
        store = RunStore(tmp_path)
        assert store.get(run_id).status()["state"] == "running"
        assert reconcile(store) == []  # alive and beating: left alone
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and reconcile(store) != [run_id]:
        time.sleep(0.2)
    run = store.get(run_id)
    assert run.status()["state"] == "failed" and "killed or crashed" in run.status()["reason"]
    assert [m["step"] for m in run.metrics()] == [1]
