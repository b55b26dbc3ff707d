"""Backfilled per-example records: a run's records rebuilt from its checkpoint equal the ones training wrote,
the backfill refuses what it cannot rebuild faithfully, and the shipped reference runs carry records that agree
with their own metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kd_analysis.error_analysis.backfill import BackfillMismatch, backfill_run
from kd_analysis.exceptions import KDLensError
from kd_analysis.fileio import read_jsonl
from kd_analysis.runs import RunStore
from kd_analysis.runs.records import PREDICTIONS
from tests.helpers.runs import backfill_configs, finished_run, tamper, train_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "kind",
    [
        "mc-full-checkpoint",
        "mc-teacher-full-checkpoint",
        "mc-teacher-lora",
        "mc-rationale-append",
        "priming-lora-generation",
    ],
)
def test_backfill_rebuilds_the_records_training_wrote(tiny_dir, tmp_path, kind):
    store = RunStore(tmp_path / "runs")
    run = finished_run(store, kind, backfill_configs(tiny_dir, tmp_path)[kind])
    original = read_jsonl(run.path / PREDICTIONS)
    others = {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file() and p.name != PREDICTIONS}
    (run.path / PREDICTIONS).unlink()

    res = backfill_run(store, kind)
    rebuilt = read_jsonl(run.path / PREDICTIONS)
    assert res.written and res.matches and res.difference <= 1e-9
    assert res.records_value == pytest.approx(res.run_value, abs=1e-9)
    if kind.startswith("priming"):  # answer NLL, a far finer fingerprint of the weights than exact match
        assert {"eval_answer_nll", "teacher_answer_nll"} <= set(res.other_metrics)
        assert all(abs(logged - rebuilt) < 1e-6 for logged, rebuilt in res.other_metrics.values())
    assert all(r["backfilled"] is True for r in rebuilt) and len(rebuilt) == len(original)
    key = lambda r: (r["role"], r["step"], r["example_id"])  # noqa: E731
    assert sorted(map(key, rebuilt)) == sorted(map(key, original))
    was = {key(r): r for r in original}
    for r in rebuilt:
        o = was[key(r)]
        assert r["correct"] == o["correct"] and r["prediction"] == o["prediction"], r["example_id"]
        assert (r["text"], r["text_tokens"], r["run_id"], r["data"]) == (
            o["text"],
            o["text_tokens"],
            o["run_id"],
            o["data"],
        )
        assert r.get("generated") == o.get("generated")
        if o["probs"] is not None:
            assert r["probs"] == pytest.approx(o["probs"], abs=1e-5)
        for f in ("kl", "ce", "entropy", "p_gold"):
            assert (r[f] is None) == (o[f] is None) and (o[f] is None or abs(r[f] - o[f]) < 1e-5), f
    assert {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file() and p.name != PREDICTIONS} == others
    assert not [p for p in run.path.iterdir() if p.name.startswith(".")]  # no temp file left behind
    roles = {r["role"] for r in rebuilt}
    assert roles == ({"teacher"} if kind.startswith("mc-teacher") else {"teacher", "student"})


def test_refusals_and_force(tiny_dir, tmp_path):
    store = RunStore(tmp_path / "runs")
    cfg = train_config(tiny_dir, tmp_path, steps=2, eval_every=2)
    job = store.create("rationales", {"name": "a job"}, run_id="a-job", state="finished")
    with pytest.raises(KDLensError, match="a-job is a rationales run, not a training run"):
        backfill_run(store, job.run_id)
    store.create("train", cfg.to_dict(), run_id="running", state="running")
    with pytest.raises(KDLensError, match="running is running, not finished"):
        backfill_run(store, "running")
    store.create("train", cfg.to_dict(), run_id="weightless", state="finished")
    with pytest.raises(KDLensError, match="weightless has no saved checkpoint"):
        backfill_run(store, "weightless")

    run = finished_run(store, "done", cfg)
    before = read_jsonl(run.path / PREDICTIONS)
    with pytest.raises(KDLensError, match="already has predictions.jsonl; rebuild it with force"):
        backfill_run(store, "done")
    assert read_jsonl(run.path / PREDICTIONS) == before
    res = backfill_run(store, "done", force=True)  # replaces the file: never a second copy of each line
    after = read_jsonl(run.path / PREDICTIONS)
    assert res.written and len(after) == len(before) and all(r["backfilled"] for r in after)
    res = backfill_run(store, "done", force=True)
    assert len(read_jsonl(run.path / PREDICTIONS)) == len(before)


def test_records_that_do_not_reproduce_the_run_are_not_written(tiny_dir, tmp_path):
    store = RunStore(tmp_path / "runs")
    run = finished_run(store, "run", train_config(tiny_dir, tmp_path, steps=2, eval_every=2))
    (run.path / PREDICTIONS).unlink()
    lines = (run.path / "metrics.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    last["eval_accuracy"] = round(last["eval_accuracy"] + (0.25 if last["eval_accuracy"] < 0.5 else -0.25), 6)
    (run.path / "metrics.jsonl").write_text("\n".join(lines[:-1] + [json.dumps(last)]) + "\n")
    with pytest.raises(
        BackfillMismatch, match=r"not reproduced: accuracy .* \(off by 0\.25\); nothing was written"
    ) as err:
        backfill_run(store, "run")
    assert not err.value.result.matches and not err.value.result.written
    assert err.value.result.difference == pytest.approx(0.25)
    assert not (run.path / PREDICTIONS).exists()


def test_retrain_rebuilds_the_records_of_a_run_without_checkpoint(tiny_dir, tmp_path):
    store = RunStore(tmp_path / "runs")
    run = finished_run(store, "weightless", train_config(tiny_dir, tmp_path, steps=4, eval_every=2))
    original = read_jsonl(run.path / PREDICTIONS)
    shutil.rmtree(run.path / "checkpoint")
    (run.path / PREDICTIONS).unlink()
    others = {p.name: p.read_bytes() for p in run.path.iterdir()}
    with pytest.raises(KDLensError, match="has no saved checkpoint.*retrain it"):
        backfill_run(store, "weightless")

    res = backfill_run(store, "weightless", retrain=True)
    assert res.written and res.matches and res.retrained and res.difference <= 1e-9
    assert res.eval_values_compared >= 4 and res.max_eval_difference <= 1e-9  # teacher, steps 0, 2 and 4
    assert res.losses_compared == 4 and res.max_loss_difference <= 1e-5
    rebuilt = read_jsonl(run.path / PREDICTIONS)
    assert all(r["backfilled"] is True and r["retrained"] is True for r in rebuilt)
    strip = lambda r: {k: v for k, v in r.items() if k not in ("backfilled", "retrained")}  # noqa: E731
    key = lambda r: (r["role"], r["step"], r["example_id"])  # noqa: E731
    assert sorted(map(key, rebuilt)) == sorted(map(key, original))
    was = {key(r): r for r in original}
    for r in map(strip, rebuilt):
        o = was[key(r)]
        assert {k: v for k, v in r.items() if k not in ("probs", "kl", "ce", "entropy", "p_gold")} == {
            k: v for k, v in o.items() if k not in ("probs", "kl", "ce", "entropy", "p_gold")
        }
        if o["probs"] is not None:
            assert r["probs"] == pytest.approx(o["probs"], abs=1e-5)
        for f in ("kl", "ce", "entropy", "p_gold"):
            assert (r[f] is None) == (o[f] is None) and (o[f] is None or abs(r[f] - o[f]) < 1e-5), f
    # nothing but the records was added to the run folder: no checkpoint, no temp file, no rationale cache
    assert {p.name: p.read_bytes() for p in run.path.iterdir() if p.name != PREDICTIONS} == others


@pytest.mark.parametrize(
    "step,name,change,match",
    [
        (
            2,
            "eval_accuracy",
            lambda v: round(v + (0.25 if v < 0.5 else -0.25), 6),
            r"eval_accuracy at step 2 is off by 0\.25",
        ),
        (0, "teacher_accuracy", lambda v: round(v + (0.125 if v < 0.5 else -0.125), 6), r"teacher_accuracy at step 0"),
        (3, "loss", lambda v: v + 1e-3, r"the loss at step 3 is off by 0\.001"),
    ],
)
def test_retrain_refuses_a_run_it_does_not_reproduce(tiny_dir, tmp_path, step, name, change, match):
    store = RunStore(tmp_path / "runs")
    run = finished_run(store, "run", train_config(tiny_dir, tmp_path, steps=4, eval_every=2))
    shutil.rmtree(run.path / "checkpoint")
    (run.path / PREDICTIONS).unlink()
    tamper(run, step, name, change)  # an intermediate evaluation, not the final one the records describe
    others = {p.name: p.read_bytes() for p in run.path.iterdir()}
    with pytest.raises(BackfillMismatch, match=f"not reproduced by retraining: {match}.*; nothing was written") as err:
        backfill_run(store, "run", retrain=True)
    assert err.value.result.retrained and not err.value.result.matches and not err.value.result.written
    assert {p.name: p.read_bytes() for p in run.path.iterdir()} == others


# shipped runs without checkpoint or records that retraining could not reproduce: {run id: why}. Every eval and
# teacher value was reproduced exactly; a per-step loss drifted past the 1e-5 tolerance (float32 rounding on
# another machine, compounding over the steps), so their records are not written.
NOT_REPRODUCED: dict[str, str] = {}  # shipped runs whose records could not be rebuilt (none today)


def _reference_train_runs() -> list[str]:
    runs = sorted((ROOT / "cached_runs").glob("reference-*"))
    return [
        p.name
        for p in runs
        if (p / "config.json").exists() and json.loads((p / "config.json").read_text()).get("kind") == "train"
    ]


@pytest.mark.parametrize("run_id", _reference_train_runs())
def test_shipped_reference_runs_have_records_that_match_their_metrics(run_id):
    """The demo opens on these records: each live-model record set must be the run's final evaluation."""
    run = RunStore(ROOT / "cached_runs").get(run_id)
    if not (run.path / PREDICTIONS).exists():
        if run_id in NOT_REPRODUCED:
            pytest.xfail(
                f"shipped without a checkpoint or records, and retraining did not reproduce it: "
                f"{NOT_REPRODUCED[run_id]}"
            )
        how = "" if (run.path / "checkpoint").is_dir() else " with retrain=True (it has no checkpoint)"
        pytest.fail(f"{run_id} has no {PREDICTIONS}: run kd_analysis.error_analysis.backfill on it{how}")
    cfg = run.config()
    rows = read_jsonl(run.path / PREDICTIONS)
    metrics = run.metrics()
    metric = "accuracy" if any("eval_accuracy" in m for m in metrics) else "exact_match"
    final = [m for m in metrics if f"eval_{metric}" in m][-1]
    held_out = next((m["held_out"] for m in metrics if "held_out" in m), None)  # older runs did not log it
    live = [
        r
        for r in rows
        if r["role"] == ("teacher" if cfg.get("train_teacher") else "student") and r["step"] == final["step"]
    ]
    assert live and len(live) == len({r["example_id"] for r in live}) == (held_out or len(live))
    assert abs(sum(bool(r["correct"]) for r in live) / len(live) - final[f"eval_{metric}"]) <= 1e-9
    if not cfg.get("train_teacher"):
        teacher = [r for r in rows if r["role"] == "teacher" and r["step"] == 0]
        t_metric = next(m[f"teacher_{metric}"] for m in metrics if f"teacher_{metric}" in m)
        assert sorted(r["example_id"] for r in teacher) == sorted(r["example_id"] for r in live)
        assert abs(sum(bool(r["correct"]) for r in teacher) / len(teacher) - t_metric) <= 1e-9
