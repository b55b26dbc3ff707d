"""The error-analysis workspace through the CLI, on real runs of tiny checkpoints (records written by train())."""

from __future__ import annotations

import json

import pytest

from kd_analysis import cli
from kd_analysis.runs import RunStore
from kd_analysis.training.loop import train
from tests.helpers.runs import mc_file, train_config


@pytest.fixture(scope="module")
def store(tiny_dir, tmp_path_factory):
    """Two finished runs on the same data and split, each with its predictions.jsonl."""
    tmp = tmp_path_factory.mktemp("errors")
    store = RunStore(tmp / "runs")
    data = str(mc_file(tmp / "mc120.jsonl", 120))
    for rid, lr in (("run-a", 1e-3), ("run-b", 1e-2)):  # same split (seed), different students
        cfg = train_config(tiny_dir, tmp, steps=4, eval_every=4, eval_size=24, data=data, lr=lr)
        run = store.create("train", cfg.to_dict(), run_id=rid)
        res = train(cfg, out_dir=run.path, on_metrics=run.append_metrics)
        run.set_status("finished")
        run.write_json("result.json", res.to_dict())
    no_records = store.create("train", {"name": "old"}, run_id="no-records")
    no_records.set_status("finished")
    return store


def _json(capsys, *argv) -> object:
    assert cli.main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_matrix_agrees_with_the_runs_own_accuracies(store, capsys):
    m = _json(capsys, "errors", "matrix", "run-a", "--root", str(store.root))
    metrics = store.get("run-a").metrics()
    teacher_acc = next(r["teacher_accuracy"] for r in metrics if "teacher_accuracy" in r)
    student_acc = [r["eval_accuracy"] for r in metrics if "eval_accuracy" in r][-1]
    assert m["examples"] == 24 == m["both_right"] + m["teacher_only"] + m["student_only"] + m["both_wrong"]
    assert (m["both_right"] + m["teacher_only"]) / 24 == pytest.approx(teacher_acc)
    assert (m["both_right"] + m["student_only"]) / 24 == pytest.approx(student_acc)
    assert 0 < m["mcnemar_p"] <= 1


def test_examples_of_a_cell_filtered_and_sorted(store, capsys):
    m = _json(capsys, "errors", "matrix", "run-a", "--root", str(store.root))
    rows = _json(capsys, "errors", "examples", "run-a", "--slice", "teacher_only", "--root", str(store.root))
    assert len(rows) == m["teacher_only"] and all(r["cell"] == "teacher_only" for r in rows)
    rows = _json(capsys, "errors", "examples", "run-a", "--where", "kl >= 0", "--sort", "kl", "--root", str(store.root))
    kls = [r["kl"] for r in rows]
    assert len(rows) == 24 and kls == sorted(kls, reverse=True)


def test_flips_between_two_runs(store, capsys):
    f = _json(capsys, "errors", "matrix", "run-a", "--against", "run-b", "--root", str(store.root))
    assert f["against"] == "run-b" and set(f) >= {"mcnemar_p"}


def test_slice_finder_rows_carry_a_reusable_filter(store, capsys):
    rows = _json(capsys, "errors", "slices", "run-a", "--min-n", "5", "--root", str(store.root))
    assert isinstance(rows, list)
    for r in rows[:3]:
        picked = _json(capsys, "errors", "examples", "run-a", "--where", r["expr"], "--root", str(store.root))
        assert len(picked) == r["n"]


def test_notes_and_tags_follow_the_data_set(store, capsys):
    _json(
        capsys,
        "errors",
        "note",
        "run-a",
        "q3",
        "--text",
        "distractor wins",
        "--tag",
        "hard",
        "--tag",
        "numbers",
        "--author",
        "ana",
        "--root",
        str(store.root),
    )
    shown = _json(capsys, "errors", "notes", "run-b", "--root", str(store.root))  # same data, another run
    assert [n["text"] for n in shown["notes"]] == ["distractor wins"] and shown["tags"]["q3"] == ["hard", "numbers"]


@pytest.mark.parametrize(
    "argv, words",
    [
        (["errors", "matrix", "nope"], "no run"),
        (["errors", "matrix", "no-records"], "no per-example records"),
        (["errors", "examples", "run-a", "--where", "__import__('os')"], "error: "),
        (["errors", "examples", "run-a", "--where", "nosuchcol > 1"], "unknown column"),
        (["errors", "note", "run-a", "no-such-example", "--text", "x"], "run run-a has no example 'no-such-example'"),
        (["errors", "note", "run-a", "q3"], "give the note's text, a --tag, or both"),
    ],
)
def test_bad_input_is_one_line(store, capsys, argv, words):
    assert cli.main([*argv, "--root", str(store.root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1
