"""The forward passes a training step needs: the teacher's (under its own prompt, without gradients) with its answer rows, and the student's outputs on the same batch."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from kd_analysis.data.example import Example
from kd_analysis.training.batches import (
    LMBatch,
    lm_outputs,
    paper_rows,
    position_outputs,
    target_lengths,
    task_outputs,
)
from kd_analysis.training.config import TrainConfig
from kd_analysis.training.run_prompts import paper_alignment, paper_prompts, teacher_prompt
from kd_analysis.training.teacher_cache import TeacherCache


def teacher_forward(
    cfg, teacher, examples, student_prompt=None, student_tok=None, hidden: bool = False, answer_ids=None
):
    """The teacher's outputs (no grad) as a run reads them: primed prompt or paper alignment when priming;
    `answer_ids` (on-policy samples, by example id) are read as the same token ids the student trains on."""
    with torch.no_grad():
        if paper_alignment(cfg):  # prompt + question only, compared position by position (Goyal et al.)
            s_raw, t_raw = paper_prompts(cfg)
            n = paper_rows(student_tok, teacher.tokenizer, examples, cfg.max_length, s_raw, t_raw)
            return position_outputs(teacher, examples, cfg.max_length, t_raw, n, hidden=hidden)
        if cfg.priming:  # the primed prompt, and exactly as many answer tokens as the student keeps
            keep = target_lengths(student_tok, examples, cfg.max_length, student_prompt)
            return lm_outputs(
                teacher, examples, cfg.max_length, teacher_prompt(cfg, teacher), keep_targets=keep, hidden=hidden
            )
        return task_outputs(teacher, examples, cfg.max_length, hidden=hidden, answer_ids=answer_ids)


def teacher_rows(
    cfg, cache: TeacherCache, teacher, examples, width, student_prompt=None, student_tok=None, answer_ids=None
):
    lm = teacher.task in ("causal_lm", "seq2seq")
    missing = list(examples) if lm and cache.topk is None else cache.missing(examples)
    cache.hits += len(examples) - len(missing)
    fresh: dict = {}
    if missing:
        cache.misses += len(missing)
        out = teacher_forward(cfg, teacher, missing, student_prompt, student_tok, answer_ids=answer_ids)
        if isinstance(out, LMBatch):
            assert out.logits is not None
            if cache.topk is None:  # full vocabulary: nothing is cached, the teacher runs every step
                return out.logits[out.labels != -100]
            fresh = cache.put_lm(missing, out.logits, out.labels, width)
        else:
            cache.put_rows(missing, out)
    device = next(teacher.model.parameters()).device
    return cache.lm(examples, device, fresh) if lm else cache.rows(examples, device)


def student_outputs(
    cfg: TrainConfig, live, teacher, examples: Sequence[Example], s_prompt, hidden: bool = False, answer_ids=None
):
    """The student's grad-enabled outputs for one batch (position-aligned with the teacher under `paper`)."""
    if paper_alignment(cfg):
        s_raw, t_raw = paper_prompts(cfg)
        n = paper_rows(live.tokenizer, teacher.tokenizer, examples, cfg.max_length, s_raw, t_raw)
        return position_outputs(live, examples, cfg.max_length, s_raw, n, hidden=hidden)
    return task_outputs(live, examples, cfg.max_length, s_prompt, hidden=hidden, answer_ids=answer_ids)
