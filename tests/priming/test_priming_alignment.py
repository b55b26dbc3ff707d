"""Priming KD alignments: ours (the teacher forced on the gold answer after its prompt) and the paper's (prompt +
question vs question, position by position, cut to one length), checked against hand-built positions."""

from __future__ import annotations

import json

import pytest
import torch

from kd_analysis.data.example import Example
from kd_analysis.exceptions import KDLensError
from kd_analysis.models.loading import load_model
from kd_analysis.models.specs import ModelSpec, StudentSpec
from kd_analysis.prompting.prompts import format_prompt, render_template, student_prompt
from kd_analysis.prompting.strategies import STRATEGIES
from kd_analysis.training.batches import paper_answer_ids, paper_rows, position_outputs
from kd_analysis.training.config import LoraSettings, LossTerm, PrimingSettings, TrainConfig

pytestmark = pytest.mark.numeric  # floats compared across computation orders: rerun on other kernels

EXS = [
    Example(
        id=f"e{i}",
        text=f"Ann has {i} pens and buys 2 more. How many pens?",
        answer=str(i + 2),
        solution=f"Ann has {i} + 2 = {i + 2} pens.",
    )
    for i in range(3)
]


def _arith_file(path, n=16):
    rows = [
        {
            "question": f"Ann has {i} pens and buys 2 more. How many pens does Ann have?",
            "answer": f"Ann has {i} + 2 = {i + 2} pens.\n#### {i + 2}",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_paper_rows_are_the_shortest_of_three_lengths(tiny_dir):
    lm = load_model(ModelSpec(str(tiny_dir / "llama")))
    tok = lm.tokenizer
    s_prompt = lambda ex: student_prompt(tok, ex)  # noqa: E731
    t_prompt = lambda ex: format_prompt(tok, render_template(STRATEGIES["teacher"].template, ex))  # noqa: E731
    for max_length in (512, 12, 5):
        rows = paper_rows(tok, tok, EXS, max_length, s_prompt, t_prompt)
        for ex, n in zip(EXS, rows):
            s = len(tok(s_prompt(ex))["input_ids"][:max_length])
            t = len(tok(t_prompt(ex))["input_ids"][:max_length])
            assert n == min(s, t, len(paper_answer_ids(tok, ex)[:max_length]))


def test_position_outputs_pair_input_positions_with_answer_tokens_unshifted(tiny_dir):
    lm = load_model(ModelSpec(str(tiny_dir / "llama")))
    tok = lm.tokenizer
    prompt = lambda ex: student_prompt(tok, ex)  # noqa: E731
    rows = [3, 5, 2]
    with torch.no_grad():
        out = position_outputs(lm, EXS, 64, prompt, rows)
    for b, (ex, n) in enumerate(zip(EXS, rows)):
        ids = tok(prompt(ex))["input_ids"]
        marked = (out.labels[b] != -100).nonzero().flatten().tolist()
        assert marked == list(range(n))  # the first n input positions
        assert out.labels[b, :n].tolist() == paper_answer_ids(tok, ex)[:n]  # the answer's first n tokens, not shifted
        with torch.no_grad():
            alone = lm.model(input_ids=torch.tensor([ids])).logits[0]
        torch.testing.assert_close(out.logits[b, : len(ids)], alone, rtol=1e-4, atol=1e-4)


def test_alignment_is_validated():
    with pytest.raises(KDLensError, match="alignment"):
        TrainConfig(teacher=ModelSpec("x"), priming=PrimingSettings("teacher", alignment="middle")).validate()


@pytest.mark.parametrize("alignment,topk", [("answer", 8), ("paper", 8), ("answer", None), ("paper", None)])
def test_primed_run_in_each_alignment(tiny_dir, tmp_path, alignment, topk):
    from kd_analysis.training.loop import train

    cfg = TrainConfig(
        teacher=ModelSpec(str(tiny_dir / "llama")),
        student=StudentSpec(num_layers=1),
        data=str(_arith_file(tmp_path / "a.jsonl")),
        steps=3,
        eval_every=3,
        eval_size=3,
        batch_size=4,
        max_new_tokens=3,
        lr=1e-3,
        teacher_topk=topk,
        losses=[LossTerm("ce", 0.6), LossTerm("rkl", 0.4)],
        lora=LoraSettings(r=2, alpha=4),
        priming=PrimingSettings("ai_to_ai", alignment=alignment),
    )
    seen = []
    res = train(cfg, out_dir=tmp_path / f"{alignment}{topk}", on_metrics=seen.append)
    assert res.state == "finished" and res.steps == 3
    values = [m["loss_rkl"] for m in seen if "loss_rkl" in m]
    assert values and all(torch.isfinite(torch.tensor(v)) and v > 0 for v in values)


def test_paper_alignment_compares_the_right_rows(tiny_dir):
    """Under `paper`, the KD term pairs student position i with teacher position i: a teacher that reads the same
    raw text as the student (the `none` strategy) and is the same model gives KD = 0, and the cached teacher rows
    are the teacher's own logits at those positions."""
    from kd_analysis.training.batches import AnswerRows
    from kd_analysis.training.forward import student_outputs, teacher_rows
    from kd_analysis.training.objective import kd_loss_terms
    from kd_analysis.training.run_prompts import paper_prompts
    from kd_analysis.training.teacher_cache import TeacherCache

    lm = load_model(ModelSpec(str(tiny_dir / "llama")))
    cfg = TrainConfig(
        teacher=ModelSpec("x"),
        losses=[LossTerm("ce", 0.5), LossTerm("kl", 0.5)],
        max_length=64,
        priming=PrimingSettings("none", alignment="paper"),
        teacher_topk=None,
        tau=1.0,
    )
    with torch.no_grad():
        out = student_outputs(cfg, lm, lm, EXS, None)
        rows = teacher_rows(cfg, TeacherCache(topk=None), lm, EXS, None, None, lm.tokenizer)
        assert kd_loss_terms(cfg, out, rows, None)["kl"].item() == pytest.approx(0.0, abs=1e-6)
        s_raw, _ = paper_prompts(cfg)
        n = paper_rows(lm.tokenizer, lm.tokenizer, EXS, 64, s_raw, s_raw)
        assert AnswerRows.of(out).n == sum(n) == rows.shape[0]
        first = lm.model(input_ids=torch.tensor([lm.tokenizer(EXS[0].text)["input_ids"]])).logits[0, : n[0]]
        torch.testing.assert_close(rows[: n[0]], first, rtol=1e-4, atol=1e-4)
        primed = TrainConfig(**{**cfg.__dict__, "priming": PrimingSettings("teacher", alignment="paper")})
        rows_primed = teacher_rows(primed, TeacherCache(topk=None), lm, EXS, None, None, lm.tokenizer)
        out_primed = student_outputs(primed, lm, lm, EXS, None)
        assert kd_loss_terms(primed, out_primed, rows_primed, None)["kl"].item() > 1e-4  # a prompt moves the teacher
