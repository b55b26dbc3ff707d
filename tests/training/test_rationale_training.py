"""Students trained with the teacher's rationales: views, tag targets, the rationale cache and end-to-end runs."""

from __future__ import annotations

import json

import pytest

from kd_analysis.data.example import Example
from kd_analysis.exceptions import KDLensError
from kd_analysis.models.loading import load_model
from kd_analysis.models.specs import ModelSpec, StudentSpec
from kd_analysis.training import rationale_tasks
from kd_analysis.training.config import LossTerm, RationaleSettings, TrainConfig
from kd_analysis.training.loop import train
from tests.helpers.runs import train_config

EX = Example(id="q1", text="Where do fish swim freely", choices=["the river", "a desk"], label=0, answer="the river")


def test_label_views_per_mode():
    multi = rationale_tasks.label_view(EX, RationaleSettings(mode="multitask"), ["fish", "river"])
    assert multi.text == "[label] Where do fish swim freely" and multi.choices == EX.choices
    appended = rationale_tasks.label_view(EX, RationaleSettings(mode="append"), ["fish", "river"])
    assert appended.text.endswith("Rationale: fish river") and appended.label == 0
    assert rationale_tasks.label_view(EX, RationaleSettings(mode="append"), []).text.endswith("Rationale: (none)")


def test_tag_targets_mark_exactly_the_rationale_words(tiny_dir):
    tok = load_model(ModelSpec(str(tiny_dir / "bert"), task="multiple_choice")).tokenizer
    enc, targets, mask = rationale_tasks.tag_targets(tok, [EX], {"q1": ["fish", "river"]}, 64)
    words = rationale_tasks.rationale_input_words(EX)
    marked = {words[w] for c, w in enumerate(enc.word_ids(0)) if w is not None and targets[0, c] == 1}
    assert marked == {"fish", "river"}
    counted = {w for c, w in enumerate(enc.word_ids(0)) if mask[0, c]}
    assert counted == set(range(1, len(words)))  # every word but the tag; no special tokens or padding
    assert not bool(targets[~mask].any())


def test_rationales_are_cached_per_setting(tiny_dir, tmp_path, monkeypatch):
    teacher = load_model(ModelSpec(str(tiny_dir / "bert"), task="multiple_choice"))
    settings = RationaleSettings(k=2)
    cache = tmp_path / "rationales.jsonl"
    first = rationale_tasks.teacher_rationales(teacher, [EX], settings, target="predicted", cache=cache)
    assert len(first["q1"]) == 2

    def boom(*a, **k):
        raise AssertionError("recomputed a cached rationale")

    monkeypatch.setattr(rationale_tasks, "attribute", boom)
    assert rationale_tasks.teacher_rationales(teacher, [EX], settings, target="predicted", cache=cache) == first
    with pytest.raises(AssertionError):  # another target is another rationale
        rationale_tasks.teacher_rationales(teacher, [EX], settings, target="gold", cache=cache)


@pytest.mark.parametrize(
    "change,match",
    [
        ({"rationales": {"mode": "both"}}, "rationales.mode"),
        ({"rationales": {"k": 0}}, "rationales.k"),
        ({"rationales": {"method": "magic"}}, "rationales.method"),
        ({"rationales": {"colour": 1}}, "rationales.colour is not a known setting"),
        ({"rationales": {}, "train_teacher": True, "losses": [{"name": "ce"}]}, None),
    ],
)
def test_bad_rationale_settings(tiny_dir, tmp_path, change, match):
    d = {**train_config(tiny_dir, tmp_path).to_dict(), **change}
    if match is None:  # an empty mapping means "no rationales", so fine-tuning the teacher stays allowed
        assert TrainConfig.from_dict(d).rationales is None
        d["rationales"] = {"mode": "multitask"}
        match = "cannot be used while fine-tuning the teacher"
    with pytest.raises(KDLensError, match=match):
        TrainConfig.from_dict(d)


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_multitask_student_learns_the_rationale_task(tiny_dir, tmp_path, family):
    """An encoder learns token tags, a decoder generates the words; either way the rationale loss falls."""
    out = tmp_path / "run"
    out.mkdir()
    cfg = train_config(
        tiny_dir,
        tmp_path,
        teacher=ModelSpec(str(tiny_dir / family), task="multiple_choice"),
        losses=[LossTerm("ce")],
        steps=12,
        eval_every=12,
        lr=5e-3,
        rationales=RationaleSettings(mode="multitask", weight=1.0, k=2),
    )
    seen = []
    result = train(cfg, out_dir=out, on_metrics=seen.append)
    losses = [m["loss_rationale"] for m in seen if "loss_rationale" in m]
    assert result.state == "finished" and len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    assert result.evals[-1]["accuracy"] is not None
    lines = [json.loads(x) for x in (out / "rationales.jsonl").read_text().splitlines()]
    assert lines and all(row["key"][2] == "predicted" and 1 <= len(row["words"]) <= 2 for row in lines)
    n_train = 40 - 8
    assert len(lines) == n_train  # multitask needs no rationales at evaluation


def test_append_mode_uses_predicted_rationales_at_evaluation(tiny_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    cfg = train_config(
        tiny_dir,
        tmp_path,
        teacher=ModelSpec(str(tiny_dir / "bert"), task="multiple_choice"),
        student=StudentSpec(num_layers=1),
        losses=[LossTerm("ce"), LossTerm("kl")],
        steps=2,
        eval_every=2,
        rationales=RationaleSettings(mode="append", target="gold", k=3),
    )
    result = train(cfg, out_dir=out)
    assert result.state == "finished" and "loss_rationale" not in result.metrics
    keys = [tuple(json.loads(x)["key"]) for x in (out / "rationales.jsonl").read_text().splitlines()]
    assert keys.count(("saliency", 3, "gold", True)) == 32  # training examples: the gold answer, as asked
    assert keys.count(("saliency", 3, "predicted", True)) == 8  # evaluation never sees the gold answer


def test_cancel_while_computing_rationales(tiny_dir, tmp_path):
    cfg = train_config(tiny_dir, tmp_path, rationales=RationaleSettings())
    result = train(cfg, out_dir=tmp_path, should_stop=lambda: True)
    assert result.state == "cancelled" and result.steps == 0


def test_rationales_reused_from_a_job_and_mismatches_refused(tiny_dir, tmp_path, monkeypatch):
    from kd_analysis.attribution.job import ATTRIBUTIONS, rationale_config
    from kd_analysis.attribution.rationales import Attribution, select_rationale
    from kd_analysis.fileio import read_jsonl
    from kd_analysis.runs import RunStore
    from kd_analysis.training.worker import run_one
    from tests.helpers.runs import mc_file

    store = RunStore(tmp_path / "runs")
    data = str(mc_file(tmp_path / "small.jsonl", n=12))
    teacher = ModelSpec(str(tiny_dir / "bert"), task="multiple_choice")
    job = store.create(
        "rationales", rationale_config(teacher, None, data, method="saliency", target="predicted", k=2), run_id="job"
    )
    assert run_one(job, store) == 0 and job.status()["state"] == "finished"
    expected = {
        a.example_id: select_rationale(a, 2).words
        for a in (
            Attribution.from_dict({k: v for k, v in row.items() if k != "role"})
            for row in read_jsonl(job.path / ATTRIBUTIONS)
        )
    }

    def boom(*a, **k):
        raise AssertionError("attributed again instead of reusing the job")

    monkeypatch.setattr(rationale_tasks, "attribute", boom)
    cfg = train_config(
        tiny_dir,
        tmp_path,
        teacher=teacher,
        data=data,
        steps=2,
        eval_every=2,
        eval_size=2,
        losses=[LossTerm("ce")],
        rationales=RationaleSettings(mode="append", k=2, source_run="job"),
    )
    out = store.create("train", cfg.to_dict(), run_id="student").path
    assert train(cfg, out_dir=out).state == "finished"
    used = {row["id"]: row["words"] for row in read_jsonl(out / rationale_tasks.CACHE_FILE)}
    assert used == expected and len(used) == 12
    with pytest.raises(KDLensError, match="used saliency"):
        rationale_tasks.check_source_run("job", teacher.source, "ig", out)
    with pytest.raises(KDLensError, match="not this run's teacher"):
        rationale_tasks.check_source_run("job", str(tiny_dir / "llama"), "saliency", out)
    with pytest.raises(KDLensError, match="not a rationales job"):
        rationale_tasks.check_source_run("student", teacher.source, "saliency", out)
    with pytest.raises(KDLensError, match="no run 'nope'"):
        rationale_tasks.check_source_run("nope", teacher.source, "saliency", out)
    planted = tmp_path / "planted"  # a folder outside the store is only read, and a bad config is a sentence
    planted.mkdir()
    (planted / "config.json").write_text('{"kind": "rationales", ')
    with pytest.raises(KDLensError, match="planted's config.json is not valid JSON"):
        rationale_tasks.check_source_run(str(planted), teacher.source, "saliency", out)
