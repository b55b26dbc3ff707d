"""`runs import DIR`: a finished Trainer folder becomes a run: its log history as metrics, and with --evaluate
kd-lens's records of its newest checkpoint; a folder that is no Trainer's gets one sentence, exit 2."""

from __future__ import annotations

import json

from kd_analysis.runs import RunStore
from tests.helpers.cli import assert_clean_error, cli
from tests.helpers.outside import classification_trainer


def test_import_reads_the_log_history_and_evaluates_the_newest_checkpoint(tiny_dir, tmp_path):
    classification_trainer(
        tiny_dir / "bert", tmp_path / "out", [], steps=4, save_strategy="steps", save_steps=2
    ).train()
    root = str(tmp_path / "runs")
    done = cli(
        "runs", "import", str(tmp_path / "out"), "--root", root, "--evaluate", "demo:sentiment", "--limit", "12",
        "--teacher", str(tiny_dir / "bert"), "--task", "classification", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = RunStore(root).get(json.loads(done.stdout)["run_id"])
    assert run.status()["state"] == "finished" and run.config()["origin"]["kind"] == "import"
    assert run.config()["student"]["model"]["source"].endswith("checkpoint-4")
    assert [m["step"] for m in run.metrics() if "loss" in m] == [1, 2, 3, 4]
    records = [json.loads(x) for x in (run.path / "predictions.jsonl").read_text().splitlines()]
    assert {(r["role"], r["step"]) for r in records} == {("teacher", 0), ("student", 4)}
    assert len(records) == 24
    matrix = cli("errors", "matrix", run.run_id, "--root", root)
    assert matrix.returncode == 0 and "12 examples" in matrix.stdout


def test_a_folder_without_trainer_state_is_refused_in_one_sentence(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_clean_error(
        cli("runs", "import", str(tmp_path / "empty"), "--root", str(tmp_path / "runs")), "trainer_state.json"
    )


def test_an_imported_run_is_explained_from_its_checkpoint_and_teacher(tiny_dir, tmp_path):
    """Explanations (attributions of both models over one example) load an imported run's evaluated checkpoint
    and its teacher by name, as they load kd-lens's own runs' weights."""
    from kd_analysis.error_analysis.explain import explain

    classification_trainer(
        tiny_dir / "bert", tmp_path / "out", [], steps=2, save_strategy="steps", save_steps=2
    ).train()
    root = tmp_path / "runs"
    done = cli(
        "runs", "import", str(tmp_path / "out"), "--root", str(root), "--evaluate", "demo:sentiment", "--limit", "4",
        "--teacher", str(tiny_dir / "bert"), "--task", "classification", "--json",
    )  # fmt: skip
    run_id = json.loads(done.stdout)["run_id"]
    example = json.loads((root / run_id / "predictions.jsonl").read_text().splitlines()[0])["example_id"]
    [found] = explain(RunStore(root), run_id, [example], method="saliency")
    assert set(found.attributions) == {"teacher", "student"}
