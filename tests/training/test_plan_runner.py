"""`runs make-reference --jobs N`: dependencies read from configs, steps in parallel processes, speed jobs alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kd_analysis.logs import lines_to
from kd_analysis.models.specs import ModelSpec, StudentSpec
from kd_analysis.runs import RunStore
from kd_analysis.training.config import LossTerm, TrainConfig
from kd_analysis.training.plan_runner import EXCLUSIVE_KINDS, dependencies, run_plan


def test_dependencies_of_the_reference_plan(tmp_path):
    from kd_analysis.demo.reference import reference_plan

    plan = reference_plan(RunStore(tmp_path))
    needs = dependencies(plan)
    assert needs["reference-mcl-few-kl-s1"] == {"reference-minilm-mcl-teacher"}
    assert needs["reference-minilm-2l-kl"] == {"reference-minilm-mc-teacher"}
    assert needs["reference-smollm2-priming-heads"] == {
        f"reference-smollm2-priming-{s}" for s in ("none", "teacher", "ai_to_ai", "confidence", "gold", "cot")
    }
    assert "reference-minilm-2l-ce" in needs["reference-minilm-rationales-after-ce"]
    assert needs["reference-minilm-mcl-teacher"] == set() and needs["reference-smollm2-priming-none"] == set()
    # a step never waits for one planned after it (the serial order stays a valid order)
    order = {run_id: i for i, (run_id, _, _) in enumerate(plan)}
    assert all(order[dep] < order[run_id] for run_id, deps in needs.items() for dep in deps)


def test_an_id_that_prefixes_another_is_not_a_dependency():
    plan = [
        ("run-a", "train", {"name": "a"}),
        ("run-a-2", "train", {"teacher": {"source": "runs/run-a-2/ckpt"}}),
        ("b", "train", {"teacher": {"source": "runs/run-a/checkpoint"}, "models": [{"run": "run-a-2"}]}),
    ]
    needs = dependencies(plan)
    assert needs == {"run-a": set(), "run-a-2": set(), "b": {"run-a", "run-a-2"}}


def _mc(path: Path) -> str:
    rows = [
        {
            "id": f"q{i}",
            "question": f"what is {i} plus one",
            "answerKey": "AB"[i % 2],
            "choices": {"label": ["A", "B"], "text": [str(i + 1), str(i + 7)][:: 1 if i % 2 == 0 else -1]},
        }
        for i in range(24)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.slow
def test_a_teacher_and_two_students_run_in_parallel_processes(tiny_dir, tmp_path, jobs):
    store = RunStore(tmp_path / "runs")
    data = _mc(tmp_path / "mc.jsonl")
    common = dict(data=data, steps=2, eval_every=2, eval_size=6, batch_size=4, lr=1e-3, device="cpu")
    teacher = TrainConfig(
        name="teacher",
        teacher=ModelSpec(str(tiny_dir / "bert"), task="multiple_choice"),
        train_teacher=True,
        losses=[LossTerm("ce")],
        save_checkpoint=True,
        **common,
    )
    source = ModelSpec(str(store.root / "t" / "checkpoint"), task="multiple_choice")
    student = dict(teacher=source, student=StudentSpec(num_layers=1), **common)
    plan = [
        ("t", "train", teacher.to_dict()),
        ("s-kl", "train", TrainConfig(name="kl", losses=[LossTerm("ce"), LossTerm("kl")], **student).to_dict()),
        ("s-ce", "train", TrainConfig(name="ce", losses=[LossTerm("ce")], **student).to_dict()),
    ]
    lines = []
    with lines_to(lines.append):
        done = run_plan(store, plan, jobs=jobs)
    assert done[0] == "t" and sorted(done[1:]) == ["s-ce", "s-kl"]  # the teacher before the students it feeds
    for run_id in done:
        assert store.get(run_id).status()["state"] == "finished"
        assert not (store.root / f"{run_id}.new").exists()
        assert any("eval_accuracy" in m for m in store.get(run_id).metrics())
        assert "queued" not in (store.root / run_id / "log.txt").read_text()  # the plan holds the device queue
    assert lines[-1].startswith("3 steps in ") and lines[-1].endswith(f"({jobs} at a time)")


def test_a_failed_step_stops_the_plan_and_keeps_the_old_folder(tiny_dir, tmp_path):
    store = RunStore(tmp_path / "runs")
    old = store.create("train", {"name": "old"}, run_id="bad")
    (old.path / "keep.txt").write_text("the shipped run")
    broken = TrainConfig(
        name="bad",
        teacher=ModelSpec(str(tmp_path / "no-such-model"), task="multiple_choice"),
        data=_mc(tmp_path / "mc.jsonl"),
        steps=1,
        device="cpu",
    ).to_dict()
    after = dict(broken, name="after", teacher={**broken["teacher"], "source": str(store.root / "bad" / "ckpt")})
    with pytest.raises(RuntimeError, match="bad did not finish"):
        run_plan(store, [("bad", "train", broken), ("after", "train", after)], jobs=2)
    assert (store.root / "bad" / "keep.txt").read_text() == "the shipped run"
    assert not (store.root / "after").exists() and not (store.root / "after.new").exists()


def test_speed_measurements_run_last_and_alone(tmp_path, monkeypatch):
    """A size-and-speed step starts only after every other step has ended, in this process."""
    import kd_analysis.training.plan_runner as runner

    events = []

    def pool(store, plan, jobs):
        events.append(("pool", [step[0] for step in plan]))
        return [step[0] for step in plan]

    def alone(store, plan):
        events.extend(("alone", step[0]) for step in plan)
        return [step[0] for step in plan]

    monkeypatch.setattr(runner, "_parallel", pool)
    monkeypatch.setattr(runner, "_serial", alone)
    kind = next(iter(EXCLUSIVE_KINDS))
    plan = [("t", "train", {}), ("speed", kind, {}), ("a", "train", {}), ("b", "train", {})]
    assert run_plan(RunStore(tmp_path), plan, jobs=2) == ["t", "a", "b", "speed"]
    assert events == [("pool", ["t", "a", "b"]), ("alone", "speed")]


def test_steps_that_wait_for_each_other_are_refused_not_skipped(tmp_path):
    plan = [("a", "train", {"teacher": {"source": "runs/b/checkpoint"}}), ("b", "train", {"student": {"run": "a"}})]
    with pytest.raises(RuntimeError, match="wait for each other: a, b"):
        run_plan(RunStore(tmp_path / "runs"), plan, jobs=2)
    assert not (tmp_path / "runs" / "a.new").exists()


def test_shipped_teachers_lists_only_adapters_present_in_the_store(tmp_path):
    """A reference teacher whose adapter is missing (a run that failed, a half-copied store) is not offered."""
    from kd_analysis.demo.reference import SENTIMENT_TEACHER_RUN, TEACHER_RUN, shipped_teachers, teacher_source

    store = RunStore(tmp_path)
    assert shipped_teachers(store) == {}
    (tmp_path / TEACHER_RUN / "checkpoint").mkdir(parents=True)
    (tmp_path / SENTIMENT_TEACHER_RUN / "checkpoint").mkdir(parents=True)
    assert shipped_teachers(store) == {}  # folders alone are not adapters
    (tmp_path / TEACHER_RUN / "checkpoint" / "adapter_config.json").write_text("{}")
    assert list(shipped_teachers(store)) == [teacher_source(store)]
