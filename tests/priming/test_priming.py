"""Response priming: strategy registry, template checks, chat formatting, teacher outputs and their cache,
and primed KD whose teacher and student answer positions line up."""

from __future__ import annotations

import json

import pytest
import torch

from kd_analysis.data.example import Example
from kd_analysis.exceptions import KDLensError
from kd_analysis.models.loading import load_model
from kd_analysis.models.specs import ModelSpec, StudentSpec
from kd_analysis.priming import STRATEGIES, format_prompt, render_template
from kd_analysis.priming.teacher import OutputCache, summarise, teacher_outputs
from kd_analysis.prompting.prompts import check_template, student_prompt
from tests.helpers.runs import gsm8k_file, priming_store

EX = Example(
    id="a1",
    text="Tom has 3 apples and buys 4 more. How many apples does he have?",
    answer="7",
    solution="Tom has 3 + 4 = 7 apples.",
)


def test_registry_has_the_papers_strategies_and_ours():
    assert {"none", "teacher", "ai_to_ai", "confidence", "gold", "cot"} <= set(STRATEGIES)
    assert all(STRATEGIES[s].paper for s in ("none", "teacher", "ai_to_ai", "confidence"))
    assert STRATEGIES["gold"].uses_gold and not STRATEGIES["ai_to_ai"].uses_gold  # the paper's name misleads
    for s in STRATEGIES.values():
        assert "{question}" in s.template
    assert STRATEGIES["confidence"].template.startswith("{question}")  # appended, as in the paper


def test_render_and_template_errors():
    assert render_template("Q: {question}", EX) == f"Q: {EX.text}"
    assert "The correct final answer is 7" in render_template(STRATEGIES["gold"].template, EX)
    with pytest.raises(KDLensError, match="no {question} slot"):
        check_template("Solve this carefully.")
    with pytest.raises(KDLensError, match="unknown slot"):
        check_template("{question} {qestion}")
    with pytest.raises(KDLensError, match="unbalanced braces"):
        check_template("{question} {")
    with pytest.raises(KDLensError, match="no gold answer"):
        render_template("{question} = {answer}", Example(id="x", text="q"))


def test_chat_template_is_used_when_the_model_has_one(tiny_dir):
    tok = load_model(ModelSpec(str(tiny_dir / "llama"))).tokenizer
    assert format_prompt(tok, "hi") == "hi\nAnswer:"  # no chat template: a plain prompt
    tok.chat_template = "{% for m in messages %}<u>{{ m['content'] }}</u>{% endfor %}<a>"
    assert format_prompt(tok, "hi") == "<u>hi</u><a>"
    assert student_prompt(tok, EX) == f"<u>{EX.text}</u><a>"


def test_scores_match_a_manual_forward_and_are_cached(tiny_dir, tmp_path, monkeypatch):
    from kd_analysis.priming import teacher as teacher_mod
    from kd_analysis.training.batches import lm_target

    lm = load_model(ModelSpec(str(tiny_dir / "llama")))
    cache = OutputCache(tmp_path)
    templates = {"none": "{question}", "cot": STRATEGIES["cot"].template}
    out = teacher_outputs(lm, [EX], templates, generate=True, max_new_tokens=5, cache=cache)
    tok = lm.tokenizer
    p = tok(format_prompt(tok, render_template(templates["cot"], EX)))["input_ids"]
    t = tok(lm_target(EX), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(input_ids=torch.tensor([p + t])).logits[0].float(), -1)
    manual = sum(float(logp[len(p) - 1 + j, t[j]]) for j in range(len(t)))
    o = out["cot"][0]
    assert o.answer_logprob == pytest.approx(manual, rel=1e-4) and o.answer_tokens == len(t)
    assert o.generated is not None and (o.correct is False or o.predicted == "7")

    def boom(*a, **k):
        raise AssertionError("recomputed a cached output")

    monkeypatch.setattr(teacher_mod, "score_answers", boom)
    monkeypatch.setattr(teacher_mod, "generate_answers", boom)
    again = teacher_outputs(lm, [EX], templates, generate=True, max_new_tokens=5, cache=cache)
    assert again["cot"][0] == o
    rows = {r["strategy"]: r for r in summarise(again)}
    assert rows["cot"]["mean prompt tokens"] > rows["none"]["mean prompt tokens"]


def test_unparseable_generation_counts_wrong():
    from kd_analysis.priming.teacher import TeacherOutput

    outs = {
        "none": [
            TeacherOutput("a", "none", 5, 3, -1.0, -0.3, generated="no idea", predicted=None, correct=False),
            TeacherOutput("b", "none", 5, 3, -1.0, -0.3, generated="#### 4", predicted="4", correct=True),
        ]
    }
    [row] = summarise(outs)
    assert row["accuracy"] == 0.5 and row["unparseable"] == 1
    from kd_analysis.stats.intervals import wilson_interval

    lo, hi = wilson_interval(0.5, 2)  # n and the interval beside the rate (1 of 2 right: wide)
    assert row["95% CI"] == f"{lo:.0%}–{hi:.0%} (n = 2)" and lo < 0.1 and hi > 0.9


def test_primed_teacher_rows_align_with_the_student(tiny_dir, tmp_path):
    """Teacher under a long prompt, student on the bare question: the same answer tokens on both sides."""
    from kd_analysis.training.batches import lm_outputs, target_lengths
    from kd_analysis.training.config import PrimingSettings, TrainConfig
    from kd_analysis.training.run_prompts import student_prompt_fn, teacher_prompt

    lm = load_model(ModelSpec(str(tiny_dir / "llama")))
    cfg = TrainConfig(teacher=ModelSpec("x"), priming=PrimingSettings("teacher"), max_length=40)
    long_ex = Example(id="b", text=EX.text, answer="7", solution=" ".join(["step"] * 60))
    s_prompt, t_prompt = student_prompt_fn(cfg, lm), teacher_prompt(cfg, lm)
    keep = target_lengths(lm.tokenizer, [EX, long_ex], cfg.max_length, s_prompt)
    student = lm_outputs(lm, [EX, long_ex], cfg.max_length, s_prompt)
    teacher = lm_outputs(lm, [EX, long_ex], cfg.max_length, t_prompt, keep_targets=keep)
    for b in range(2):
        s_lab = student.labels[b][student.labels[b] != -100]
        t_lab = teacher.labels[b][teacher.labels[b] != -100]
        assert torch.equal(s_lab, t_lab) and len(s_lab) == keep[b]
    assert keep[1] < len(lm.tokenizer(" ".join(["step"] * 60))["input_ids"])  # the long answer was cut


def test_priming_config_checks(tiny_dir):
    from kd_analysis.training.config import TrainConfig

    base = {"teacher": {"source": str(tiny_dir / "llama")}}
    assert TrainConfig.from_dict({**base, "priming": {"strategy": "cot"}}).priming_template.endswith("step by step.")
    with pytest.raises(KDLensError, match="priming.strategy"):
        TrainConfig.from_dict({**base, "priming": {"strategy": "shouting"}})
    with pytest.raises(KDLensError, match="no {question} slot"):
        TrainConfig.from_dict({**base, "priming": {"strategy": "teacher", "template": "Be a teacher."}})


def test_primed_distillation_run_with_lora(tiny_dir, tmp_path):
    from kd_analysis.training.config import LoraSettings, LossTerm, PrimingSettings, TrainConfig
    from kd_analysis.training.loop import train

    data = gsm8k_file(tmp_path / "arith.jsonl")
    cfg = TrainConfig(
        teacher=ModelSpec(str(tiny_dir / "llama")),
        student=StudentSpec(num_layers=1),
        data=str(data),
        steps=4,
        eval_every=4,
        eval_size=4,
        batch_size=4,
        max_new_tokens=4,
        lr=1e-3,
        losses=[LossTerm("ce", 0.6), LossTerm("rkl", 0.4)],
        lora=LoraSettings(r=4, alpha=8),
        priming=PrimingSettings("teacher"),
    )
    seen = []
    result = train(cfg, out_dir=tmp_path / "run", on_metrics=seen.append)
    assert result.state == "finished" and result.steps == 4
    assert all(torch.isfinite(torch.tensor(m["loss_rkl"])) for m in seen if "loss_rkl" in m)
    assert "exact_match" in result.evals[-1] and result.teacher_eval is not None
    assert (tmp_path / "run" / "checkpoint" / "adapter_config.json").exists()


def test_answer_nll_matches_the_models_own_loss(tiny_dir):
    """Per gold-answer token, batched with padding: equal to transformers' loss on each example alone."""
    from kd_analysis.training.batches import prompt_and_target
    from kd_analysis.training.evaluate import answer_nll

    lm = load_model(ModelSpec(str(tiny_dir / "llama")))
    other = Example(
        id="a2",
        text="Sam has 10 pens and loses 3. How many pens are left?",
        answer="7",
        solution="Sam has 10 - 3 = 7 pens.",
    )
    total, count, alone = 0.0, 0, []
    for ex in (EX, other):
        p, t = prompt_and_target(lm.tokenizer, ex, lambda e: student_prompt(lm.tokenizer, e))
        with torch.no_grad():
            loss = lm.model(input_ids=torch.tensor([p + t]), labels=torch.tensor([[-100] * len(p) + t])).loss
        total, count = total + float(loss) * len(t), count + len(t)
        alone.append(float(loss))
    got = answer_nll(lm, [EX, other], 256, 2, lambda e: student_prompt(lm.tokenizer, e))
    assert got == pytest.approx(total / count, rel=1e-4)
    assert answer_nll(lm, [EX], 256, 2, lambda e: student_prompt(lm.tokenizer, e)) == pytest.approx(alone[0], rel=1e-4)


def test_teacher_outputs_job_saves_what_the_live_call_returns(tiny_dir, tmp_path, monkeypatch):
    """The background job writes the same outputs as the page's live call, reopens them, and refuses a bad
    template before it is queued."""
    from kd_analysis.priming import teacher as teacher_mod
    from kd_analysis.priming.job import KIND, load_outputs_run, outputs_config
    from kd_analysis.runs import RunStore
    from kd_analysis.training.worker import run_one

    monkeypatch.setattr(teacher_mod, "default_cache", lambda: OutputCache(None))
    data = gsm8k_file(tmp_path / "arith.jsonl", n=5)
    spec = ModelSpec(str(tiny_dir / "llama"), task="causal_lm").to_dict()
    templates = {"none": "{question}", "gold": STRATEGIES["gold"].template}
    store = RunStore(tmp_path / "runs")
    run = store.create(KIND, outputs_config(spec, str(data), templates, limit=3, max_new_tokens=4), run_id="outs")
    assert run_one(run, store) == 0 and run.status()["state"] == "finished"
    saved = load_outputs_run(store.get("outs"))
    from kd_analysis.data.sources import load_dataset

    live = teacher_outputs(
        load_model(ModelSpec.from_dict(spec)),
        load_dataset(str(data)).examples[:3],
        templates,
        generate=True,
        max_new_tokens=4,
        cache=OutputCache(None),
    )
    assert list(saved) == ["none", "gold"] and saved == live
    assert run.metrics()[-1]["step"] == run.metrics()[-1]["total_steps"] == 6
    with pytest.raises(KDLensError, match="question"):
        outputs_config(spec, str(data), {"none": "no slot here"})


def test_accuracy_table_gain_interval_and_nll(tmp_path):
    """The interval is Wilson's (checked against SciPy); runs without priming are left out; no paper column; a gain
    the intervals cannot support (4 vs 6 of 24) is not given, and the cell says so."""
    from scipy.stats import binomtest

    from kd_analysis.priming.experiment import accuracy_table

    store = priming_store(tmp_path / "runs", (("a", "none", 4), ("b", "gold", 6), ("c", None, 9)))
    table = accuracy_table(store, ["a", "b", "c"])
    rows = {r["strategy"]: r for r in table}
    assert set(rows) == {"none", "gold"}
    assert not [c for r in table for c in r if "paper" in c.lower() or "gsm8k" in c.lower()]  # ours only
    gold = rows["gold"]
    ci = binomtest(6, 24).proportion_ci(confidence_level=0.95, method="wilson")
    assert (gold["95% low"], gold["95% high"]) == pytest.approx((ci.low, ci.high), abs=1e-6)
    assert gold["95% low"] < rows["none"]["95% high"]  # the intervals overlap ...
    assert gold["gain vs none"] is None and gold["gain vs none note"] == "not distinguishable at n = 24"  # ... so
    assert rows["none"]["gain vs none"] is None and rows["none"]["gain vs none note"] == "baseline"
    assert gold["student answer NLL"] == pytest.approx(0.94) and gold["NLL before"] == 2.0
    assert gold["student before"] == 0.0 and gold["teacher exact match"] == 0.25 and gold["eval questions"] == 24


def test_gain_vs_none_is_shown_only_when_the_intervals_are_apart(tmp_path):
    from kd_analysis.priming.experiment import accuracy_table, gain_vs_none

    store = priming_store(tmp_path / "runs", (("a", "none", 2), ("b", "gold", 20), ("c", "cot", 5)))
    rows = {r["strategy"]: r for r in accuracy_table(store, ["a", "b", "c"])}
    assert rows["gold"]["95% low"] > rows["none"]["95% high"]  # 20 vs 2 of 24: clearly apart
    assert rows["gold"]["gain vs none"] == pytest.approx((20 - 2) / 2) and rows["gold"]["gain vs none note"] == "+900%"
    assert rows["cot"]["gain vs none"] is None and rows["cot"]["gain vs none note"] == "not distinguishable at n = 24"
    # the rule itself, at its edge: touching intervals are not apart; a gap is, in either direction
    base = {"student exact match": 0.4, "95% low": 0.3, "95% high": 0.5, "eval questions": 50}
    touch = {"student exact match": 0.6, "95% low": 0.5, "95% high": 0.7, "eval questions": 50}
    above = {"student exact match": 0.6, "95% low": 0.51, "95% high": 0.7, "eval questions": 50}
    below = {"student exact match": 0.2, "95% low": 0.1, "95% high": 0.29, "eval questions": 40}
    assert gain_vs_none(touch, base) == (None, "not distinguishable at n = 50")
    assert gain_vs_none(above, base) == (pytest.approx(0.5), "+50%")
    assert gain_vs_none(below, base) == (pytest.approx(-0.5), "-50%")
    assert gain_vs_none(dict(touch, **{"eval questions": 30}), base)[1] == "not distinguishable at n = 30 (none: 50)"
    assert gain_vs_none(above, None) == (None, "no finished none run")
    zero = {"student exact match": 0.0, "95% low": 0.0, "95% high": 0.1, "eval questions": 50}
    gain, note = gain_vs_none(above, zero)
    assert gain is None and note.startswith("+60 points")  # no relative gain over 0%


def test_paper_reference_table_holds_the_papers_numbers():
    """docs/methods.md §2: 12.2 / 25.0 / 30.6 / 34.0 / 42.3 / 48.1% on the 1319 GSM8K test questions; the logs' counts
    161, 404, 558, 635."""
    from scipy.stats import binomtest

    from kd_analysis.priming.experiment import paper_reference

    rows = paper_reference()
    assert [(r["strategy"], r["GSM8K accuracy"]) for r in rows] == [
        (None, 0.122),
        (None, 0.250),
        ("none", 0.306),
        ("confidence", 0.340),
        ("teacher", 0.423),
        ("ai_to_ai", 0.481),
    ]
    assert [r["paper name"].split(" (")[0] for r in rows] == [
        "no distillation",
        "LoRA fine-tune",
        "base KD",
        "Confidence",
        "Teacher",
        "Ground Truth",
    ]
    assert [r["correct (repo logs)"] for r in rows] == [161, None, 404, None, 558, 635]
    for r in rows:
        assert r["questions"] == 1319
        assert "Goyal et al. 2024" in r["source"] and "405B" in r["source"] and "8B" in r["source"]
        assert "GSM8K test, 1319 questions" in r["source"]
        if r["correct (repo logs)"] is not None:
            assert r["correct (repo logs)"] / 1319 == pytest.approx(r["GSM8K accuracy"], abs=5e-4)
            ci = binomtest(r["correct (repo logs)"], 1319).proportion_ci(confidence_level=0.95, method="wilson")
            assert (r["95% low"], r["95% high"]) == pytest.approx((ci.low, ci.high), abs=1e-6)
    assert "303 / 1319 = 23.0%" in rows[1]["note"] and "not in the repo's logs" in rows[3]["note"]
    assert all(r["source"].endswith(r["note"]) for r in rows)


def test_accuracy_bars_carry_the_interval_and_never_the_paper():
    from kd_analysis.plots.priming import accuracy_bars

    rows = [
        {"strategy": "<b>x</b>", "student exact match": None, "teacher exact match": None},
        {
            "strategy": "none",
            "student exact match": 0.25,
            "95% low": 0.1,
            "95% high": 0.45,
            "teacher exact match": 0.3,
            "eval questions": 24,
            "paper (GSM8K, 8B student)": 0.122,
        },
    ]  # an old row's paper value must not be drawn
    fig = accuracy_bars(rows)
    bars = fig.data[0]
    assert list(bars.error_y.array) == [pytest.approx(0.2), None]
    assert list(bars.error_y.arrayminus) == [pytest.approx(0.15), None]
    assert bars.x[1] == "&lt;b&gt;x&lt;/b&gt;" and bars.customdata[0] == "None (base KD)"  # escaped; titles hover
    assert [t.name for t in fig.data] == ["student (ours, 95% interval)", "teacher under this prompt"]
    assert 0.122 not in [v for t in fig.data for v in t.y]
    assert "n = 24" in fig.layout.title.text


def test_cli_prime_table_keeps_the_paper_apart(tmp_path):
    from tests.helpers.cli import cli

    priming_store(tmp_path / "runs", (("a", "none", 2), ("b", "gold", 20), ("c", "cot", 5)))
    proc = cli("prime", "table", "--root", str(tmp_path / "runs"), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["strategy"]: r for r in json.loads(proc.stdout)}  # still a list of our rows
    assert not [c for r in rows.values() for c in r if "paper" in c]
    assert rows["gold"]["gain vs none"] == pytest.approx(9.0) and rows["cot"]["gain vs none"] is None
    text = cli("prime", "table", "--root", str(tmp_path / "runs")).stdout
    assert "not distinguishable at n = 24" in text and "+900%" in text and "30.6%" not in text
    paper = json.loads(cli("prime", "table", "--paper", "--json").stdout)
    assert [r["GSM8K accuracy"] for r in paper] == [0.122, 0.250, 0.306, 0.340, 0.423, 0.481]
    assert "48.1%" in cli("prime", "table", "--paper").stdout


def test_outputs_job_refuses_data_without_gold_answers(tmp_path):
    """A data set with no gold answers fails in one sentence before any model is loaded."""
    from kd_analysis.priming.job import KIND, outputs_config
    from kd_analysis.runs import RunStore
    from kd_analysis.training.worker import run_one

    data = tmp_path / "plain.jsonl"
    data.write_text(json.dumps({"text": "Ann has 3 pens."}) + "\n")
    store = RunStore(tmp_path / "runs")
    run = store.create(KIND, outputs_config({"source": "never-loaded"}, str(data), {"none": "{question}"}))
    assert run_one(run, store) == 2
    assert run.status()["state"] == "failed" and "without a gold answer" in run.status()["reason"]


@pytest.mark.slow
def test_strategies_share_the_students_first_evaluation_only_when_it_is_the_same(tiny_dir, tmp_path, monkeypatch):
    """make-reference: the six priming students are one model at step 0; their first evaluation runs once, and
    equals the unshared one. A setting that changes the evaluation (max_new_tokens) is not shared."""
    import kd_analysis.training.loop as loop
    from kd_analysis.training.config import LoraSettings, LossTerm, PrimingSettings, TrainConfig
    from kd_analysis.training.loop import train
    from kd_analysis.training.shared_teacher import shared_teacher_outputs

    data = gsm8k_file(tmp_path / "a.jsonl")
    base = dict(
        teacher=ModelSpec(str(tiny_dir / "llama")),
        student=StudentSpec(num_layers=1),
        data=str(data),
        steps=1,
        eval_every=1,
        eval_size=4,
        batch_size=4,
        max_new_tokens=4,
        losses=[LossTerm("ce", 0.6), LossTerm("rkl", 0.4)],
        lora=LoraSettings(r=4, alpha=8),
    )
    alone = train(TrainConfig(**base, priming=PrimingSettings("teacher"))).evals[0]
    calls = []
    real = loop.evaluate
    monkeypatch.setattr(loop, "evaluate", lambda loaded, *a, **k: calls.append(loaded) or real(loaded, *a, **k))
    with shared_teacher_outputs():
        first = [
            train(TrainConfig(**{**base, **change}, priming=PrimingSettings(strategy))).evals[0]
            for strategy, change in (("teacher", {}), ("gold", {}), ("cot", {"max_new_tokens": 5}))
        ]
    # teacher (primed: not shared) + student at steps 0 and 1 per run, but "gold" reuses "teacher"'s step 0
    assert len(calls) == 3 + 2 + 3
    assert first[0] == first[1] == alone
