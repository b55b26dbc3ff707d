"""On-policy distillation (GKD): batches of student-sampled answers scored by the teacher, CE skipped on them."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import torch

from kd_analysis.exceptions import KDLensError
from kd_analysis.models.specs import ModelSpec
from kd_analysis.training.config import LossTerm, OnPolicySettings, TrainConfig
from kd_analysis.training.progress import losses_label
from tests.helpers.lm_runs import arith_file, tiny_lm_config


def _cfg(tiny_dir, tmp_path, **kw) -> TrainConfig:
    settings = dict(
        steps=4,
        tau=1.0,
        losses=[LossTerm("ce", 0.5), LossTerm("gjsd", 1.0)],
        on_policy=OnPolicySettings(fraction=1.0, max_new_tokens=6),
    )
    return tiny_lm_config(tiny_dir / "llama", arith_file(tmp_path / "a.jsonl"), **{**settings, **kw})


@pytest.mark.parametrize("cache", ["topk", "none"])
def test_every_batch_on_policy_trains_on_what_the_student_sampled(tiny_dir, tmp_path, monkeypatch, cache):
    """λ = 1: each step the student samples answers, the teacher scores exactly those texts (and the top-k cache
    keeps none of them), and no CE is computed."""
    from kd_analysis.training import forward as forward_passes
    from kd_analysis.training import loop

    sampled, scored = [], []
    real_answers, real_forward = loop.student_answers, loop.teacher_forward

    def answers(s, examples):
        out = real_answers(s, examples)
        sampled.append([ex.answer for ex in out[0]])
        return out

    def forward(cfg, teacher, examples, *a, **k):
        scored.append([ex.answer for ex in examples])
        return real_forward(cfg, teacher, examples, *a, **k)

    monkeypatch.setattr(loop, "student_answers", answers)
    monkeypatch.setattr(loop, "teacher_forward", forward)
    monkeypatch.setattr(forward_passes, "teacher_forward", forward)  # teacher_rows calls it from there
    seen: list = []
    cfg = _cfg(tiny_dir, tmp_path, teacher_cache=cache)
    res = loop.train(cfg, on_metrics=seen.append)
    steps = [m for m in seen if "loss" in m]
    assert res.state == "finished" and len(steps) == 4
    assert all(m["on_policy_batch"] == 1.0 and "loss_ce" not in m and m["loss_gjsd"] > 0 for m in steps)
    assert len(sampled) == 4 and scored[-4:] == sampled  # the teacher read the student's samples, each step
    assert any(a != "" for batch in sampled for a in batch)


def test_a_fraction_of_batches_is_on_policy_as_drawn(tiny_dir, tmp_path):
    from kd_analysis.training.loop import train

    seen: list = []
    cfg = _cfg(tiny_dir, tmp_path, steps=8, eval_every=8, on_policy=OnPolicySettings(fraction=0.5, max_new_tokens=4))
    train(cfg, on_metrics=seen.append)
    flags = [m["on_policy_batch"] for m in seen if "loss" in m]
    rng = random.Random(cfg.seed * 7919 + 17)
    assert flags == [float(rng.random() < 0.5) for _ in range(8)]
    assert 0 < sum(flags) < 8  # both kinds in one run
    assert all(("loss_ce" in m) == (m["on_policy_batch"] == 0.0) for m in seen if "loss" in m)


def test_on_policy_settings_are_checked_and_named(tiny_dir, tmp_path):
    with pytest.raises(KDLensError, match="fraction"):
        TrainConfig.from_dict({"teacher": "x", "on_policy": {"fraction": 1.5}})
    with pytest.raises(KDLensError, match="cannot be combined with priming"):
        TrainConfig.from_dict({"teacher": "x", "on_policy": {"fraction": 0.5}, "priming": {"strategy": "teacher"}})
    with pytest.raises(KDLensError, match="add one"):
        TrainConfig.from_dict({"teacher": "x", "losses": ["ce"], "on_policy": {"fraction": 0.5}})
    cfg = _cfg(tiny_dir, tmp_path)
    assert TrainConfig.from_dict(cfg.to_dict()).on_policy == cfg.on_policy
    assert losses_label(cfg.to_dict()).endswith(", on-policy λ = 1")
    assert "on-policy" not in losses_label(_cfg(tiny_dir, tmp_path, on_policy=None).to_dict())


def test_a_classification_teacher_is_refused(tiny_dir, tmp_path):
    from kd_analysis.training.loop import train
    from tests.helpers.runs import mc_file

    cfg = replace(
        _cfg(tiny_dir, tmp_path),
        teacher=ModelSpec(str(tiny_dir / "gpt2"), task="multiple_choice"),
        data=str(mc_file(tmp_path / "mc.jsonl")),
    )
    with pytest.raises(KDLensError, match="needs a causal language-model teacher"):
        train(cfg)


def test_sampling_draws_from_the_whole_distribution_whatever_the_checkpoint_says(tiny_dir):
    """400 one-token samples from a random-init model over 320 tokens (a nearly flat distribution): with
    transformers' default top_k of 50 they would hold at most 50 distinct tokens. They hold far more, also when
    the checkpoint's own generation_config asks for top_k 5 and a repetition penalty."""
    from transformers import GenerationConfig

    from kd_analysis.models.generation import Sampling, generate_ids
    from kd_analysis.models.loading import load_model

    lm = load_model(ModelSpec(str(tiny_dir / "llama")))
    torch.manual_seed(0)
    ids = generate_ids(lm, ["What is 1 plus 2?"] * 400, 1, batch_size=400, sample=Sampling())
    assert len({row[0] for row in ids}) > 150
    lm.model.generation_config = GenerationConfig(
        top_k=5, repetition_penalty=3.0, bos_token_id=2, eos_token_id=1, pad_token_id=0
    )
    ids = generate_ids(lm, ["What is 1 plus 2?"] * 400, 1, batch_size=400, sample=Sampling())
    assert len({row[0] for row in ids}) > 150
    assert lm.model.generation_config.top_k == 5  # the checkpoint's settings are back after sampling
    assert len({row[0] for row in generate_ids(lm, ["x"] * 50, 1, batch_size=50, sample=Sampling(top_k=3))}) <= 3


def test_sampling_settings_reach_generate_in_full(tiny_dir):
    from kd_analysis.models.generation import Sampling, generate_texts
    from kd_analysis.models.loading import load_model

    lm = load_model(ModelSpec(str(tiny_dir / "llama")))
    seen = {}
    real = lm.model.generate

    def spy(**kw):
        seen.update(kw)
        return real(**kw)

    lm.model.generate = spy
    generate_texts(lm, ["What is 1 plus 2?"], 3, sample=Sampling(temperature=0.7, top_p=0.9))
    assert seen["do_sample"] is True and seen["temperature"] == 0.7 and seen["top_p"] == 0.9
    assert seen["top_k"] == 0 and seen["repetition_penalty"] == 1.0 and seen["num_beams"] == 1
    seen.clear()
    generate_texts(lm, ["What is 1 plus 2?"], 3)
    assert seen["do_sample"] is False and "temperature" not in seen and "top_p" not in seen


def test_the_student_trains_on_the_token_ids_it_sampled(tiny_dir, tmp_path, monkeypatch):
    """Sampled ids that decoding and re-tokenizing would change ('Ġ', 'p', 'l' decodes to ' pl', which the
    tokenizer reads back as the single token 'Ġpl'): the student's and the teacher's targets are those ids, and
    the example keeps the decoded text for records."""
    from kd_analysis.models import generation
    from kd_analysis.training import batches, loop

    cfg = _cfg(tiny_dir, tmp_path, steps=1, teacher_cache="none")
    from kd_analysis.models.loading import load_model

    tok = load_model(ModelSpec(str(tiny_dir / "llama"))).tokenizer
    sampled = tok.convert_tokens_to_ids(["Ġ", "p", "l"]) + [tok.eos_token_id]
    assert tok(tok.decode(sampled[:3]), add_special_tokens=False)["input_ids"] != sampled[:3]
    monkeypatch.setattr(generation, "generate_ids", lambda loaded, prompts, *a, **k: [list(sampled)] * len(prompts))
    targets, texts = [], []
    real_outputs, real_answers = batches.lm_outputs, loop.student_answers

    def outputs(*a, **k):
        out = real_outputs(*a, **k)
        if k.get("answer_ids"):  # the training step's batches (evaluation scores the gold answers)
            targets.extend(row[row != -100].tolist() for row in out.labels)
        return out

    def answers(s, examples):
        got = real_answers(s, examples)
        texts.extend(ex.answer for ex in got[0])
        return got

    monkeypatch.setattr(batches, "lm_outputs", outputs)
    monkeypatch.setattr(loop, "student_answers", answers)
    assert loop.train(cfg).state == "finished"
    assert len(targets) == 2 * cfg.batch_size and all(t == sampled for t in targets)  # student's, then teacher's
    assert texts and all(t == "pl" for t in texts)


def test_the_run_form_starts_an_on_policy_run(tiny_dir, tmp_path, run_root):
    """The form's λ reaches the run's config (and its label); the run is then cancelled, not waited for."""
    from kd_analysis.runs import RunStore, cancel_run
    from tests.helpers.pages import RUNS_PAGE, open_with

    at = open_with(tiny_dir / "llama", "causal_lm", RUNS_PAGE, layers=1, data=arith_file(tmp_path / "a.jsonl"))
    assert not at.exception, [e.value for e in at.exception]
    numbers = {n.label: n for n in at.number_input}
    numbers["λ: share of on-policy batches"].set_value(0.5)
    numbers["answer tokens sampled"].set_value(8)
    numbers["steps"].set_value(2)
    next(b for b in at.button if b.label == "Start run").click().run()
    assert not at.exception and any("Started" in s.value for s in at.success), [e.value for e in at.error]
    [run] = RunStore(run_root).list()
    config = RunStore(run_root).get(run.run_id).config()
    assert config["on_policy"] == {"fraction": 0.5, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8, "top_k": 0}
    assert {n.label for n in at.number_input} >= {"top-p (1: off)", "top-k (0: off)"}
    assert "on-policy λ = 0.5" in losses_label(config) and config["name"].endswith("on-policy λ 0.5")
    cancel_run(RunStore(run_root), run.run_id, wait_s=10)


def test_the_shipped_gkd_and_cross_tokenizer_pairs_are_compare_page_groups():
    from pathlib import Path

    from kd_analysis.training.progress import reference_groups

    shipped = [p.name for p in (Path(__file__).resolve().parents[2] / "cached_runs").iterdir() if p.is_dir()]
    groups = reference_groups(shipped)
    assert groups["on-policy (GKD): off- vs on-policy, SmolLM2"] == [
        "reference-smollm2-gkd-off",
        "reference-smollm2-gkd-on",
    ]
    assert groups["cross-tokenizer: Gemma-3 → SmolLM2, ULD vs CE"] == [
        "reference-gemma3-smollm2-ce",
        "reference-gemma3-smollm2-uld",
    ]
    assert not any("gkd" in r for r in groups["rationales: SmolLM2 teacher"])


def test_a_scratch_cache_returns_fresh_rows_and_keeps_none():
    from kd_analysis.data.example import Example
    from kd_analysis.training.teacher_cache import TeacherCache

    logits = torch.randn(2, 5, 30)
    labels = torch.full((2, 5), -100)
    labels[:, 2:] = 1
    exs = [Example(id="a", text="x", answer="1"), Example(id="b", text="y", answer="2")]
    scratch = TeacherCache(topk=4, keep=False)
    fresh = scratch.put_lm(exs, logits, labels, None)
    assert scratch.entries == {} and not scratch.over_budget and set(fresh) == {"a", "b"}
    assert scratch.lm(exs, "cpu", fresh).indices.shape == (6, 4)
