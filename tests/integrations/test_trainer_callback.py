"""A transformers Trainer with KDLensCallback writes a kd-lens run: live status, every logged metric, and kd-lens's
own per-example records, read by `runs list`, `runs show` and `errors matrix` like a run kd-lens trained."""

from __future__ import annotations

import json

import pytest

from kd_analysis.runs import RunStore
from tests.helpers.cli import cli
from tests.helpers.outside import classification_trainer, perturbed

EXAMPLES = slice(64, 80)  # held-out sentiment examples (training reads the first 32)


@pytest.fixture(scope="module")
def trained(tiny_dir, tmp_path_factory):
    """Three steps of a plain Trainer with the callback and a teacher; the final student saved beside."""
    from transformers import AutoModelForSequenceClassification

    from kd_analysis.data.sources import load_dataset
    from kd_analysis.integrations import KDLensCallback

    base = tmp_path_factory.mktemp("callback")
    examples = load_dataset("demo:sentiment").examples[EXAMPLES]
    teacher = perturbed(AutoModelForSequenceClassification.from_pretrained(tiny_dir / "bert", num_labels=2))
    callback = KDLensCallback(
        base / "runs", name="tiny CE", eval_examples=examples, teacher=teacher, data_name="demo:sentiment"
    )
    trainer = classification_trainer(tiny_dir / "bert", base / "out", [callback])
    trainer.train()
    trainer.save_model(str(base / "final"))
    teacher.save_pretrained(base / "teacher")
    trainer.processing_class.save_pretrained(base / "teacher")
    return base, callback.run_id, examples


def test_the_callback_writes_a_finished_run_with_metrics_and_records(trained):
    base, run_id, examples = trained
    run = RunStore(base / "runs").get(run_id)
    status, config = run.status(), run.config()
    assert status["state"] == "finished" and status["pid"] and status["heartbeat"]
    assert config["origin"]["kind"] == "callback" and config["name"] == "tiny CE"
    assert config["training"]["max_steps"] == 3 and config["models"]["student"]["parameters"] > 0
    steps = [m["step"] for m in run.metrics() if "loss" in m]
    assert steps == [1, 2, 3]
    evals = {m["step"]: m for m in run.metrics() if "eval_accuracy" in m}
    assert set(evals) == {0, 3} and evals[0]["held_out"] == len(examples)
    assert any("teacher_accuracy" in m for m in run.metrics())
    lines = [json.loads(x) for x in (run.path / "predictions.jsonl").read_text().splitlines()]
    by_role = {(r["role"], r["step"]) for r in lines}
    assert by_role == {("teacher", 0), ("student", 0), ("student", 3)}
    assert all(r["kl"] is not None and r["kl"] >= 0 for r in lines if r["role"] == "student")


def test_commands_read_a_callback_run_as_their_own(trained):
    base, run_id, examples = trained
    root = str(base / "runs")
    listed = cli("runs", "list", "--root", root, "--json")
    assert listed.returncode == 0 and any(r["run_id"] == run_id for r in json.loads(listed.stdout))
    shown = cli("runs", "show", run_id, "--root", root)
    assert shown.returncode == 0 and "callback" in shown.stdout
    matrix = cli("errors", "matrix", run_id, "--root", root, "--json")
    assert matrix.returncode == 0, matrix.stderr
    assert json.loads(matrix.stdout)["examples"] == len(examples)


def test_callback_records_equal_kd_lens_evaluation_of_the_saved_student(trained):
    """The records written while training are what kd-lens's evaluation of the saved checkpoint gives on the
    same examples: same predictions, and probabilities within 1e-6 (the same float32 weights and kernels; the
    records round probabilities to 1e-6)."""
    from kd_analysis.integrations.evaluation import EvalSettings, evaluate_model
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.specs import ModelSpec

    base, run_id, examples = trained
    settings = EvalSettings()
    teacher = evaluate_model(load_model(ModelSpec(str(base / "teacher"), task="classification")), examples, settings)
    own = evaluate_model(
        load_model(ModelSpec(str(base / "final"), task="classification")), examples, settings, teacher=teacher
    )
    lines = [json.loads(x) for x in (RunStore(base / "runs").get(run_id).path / "predictions.jsonl").open()]
    written = {r["example_id"]: r for r in lines if r["role"] == "student" and r["step"] == 3}
    assert len(written) == len(own.records)
    for rec in own.records:
        row = written[rec.example_id]
        assert row["prediction"] == rec.prediction and row["correct"] == rec.correct
        assert row["p_gold"] == pytest.approx(rec.p_gold, abs=1e-6)
        assert row["probs"] == pytest.approx(rec.probs, abs=1e-6)
        assert row["kl"] == pytest.approx(rec.kl, abs=1e-6)


def test_cancel_on_the_runs_page_stops_the_trainer(tiny_dir, tmp_path, monkeypatch):
    """A cancel request (the Runs page's Cancel, `runs cancel`) stops the user's Trainer within a heartbeat and a
    step, and the run reads as cancelled."""
    import time

    from transformers import TrainerCallback

    import kd_analysis.integrations.outside_run as outside_run
    from kd_analysis.integrations import KDLensCallback

    monkeypatch.setattr(outside_run, "HEARTBEAT_S", 0.05)

    callback = KDLensCallback(tmp_path / "runs", name="to cancel")

    class PressCancel(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                RunStore(tmp_path / "runs").get(callback.run_id).request_cancel()
                time.sleep(0.5)  # a few beats: the heartbeat turns the request into the flag the callback reads

    trainer = classification_trainer(tiny_dir / "bert", tmp_path / "out", [PressCancel(), callback], steps=50)
    trainer.train()
    run = RunStore(tmp_path / "runs").get(callback.run_id)
    assert run.status()["state"] == "cancelled"
    assert max(m["step"] for m in run.metrics()) <= 3


@pytest.mark.slow
def test_under_accelerate_launch_only_the_main_process_writes(tiny_dir, tmp_path):
    """Two CPU processes train under `accelerate launch`: one run folder, finished, each record written once."""
    import os
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            from kd_analysis.data.sources import load_dataset
            from kd_analysis.integrations import KDLensCallback
            from tests.helpers.outside import classification_trainer

            examples = load_dataset("demo:sentiment").examples[64:72]
            callback = KDLensCallback({str(tmp_path / "runs")!r}, name="two ranks", eval_examples=examples)
            classification_trainer(Path({str(tiny_dir / "bert")!r}), Path({str(tmp_path / "out")!r}), [callback]).train()
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", str(script)],
        cwd=root, capture_output=True, text=True, timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(root)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    [summary] = RunStore(tmp_path / "runs").list()
    assert summary.state == "finished"
    lines = (RunStore(tmp_path / "runs").get(summary.run_id).path / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 8  # the student at step 0 and at the end, on 8 examples, from rank 0 only
