"""The distillation objective on one batch: each KD term on the outputs (dense, from a top-k teacher cache, or across vocabularies), with its statistics, and CE on the gold answers. The loop adds them up with their weights."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from kd_analysis.data.example import Example
from kd_analysis.exceptions import KDLensError
from kd_analysis.losses import LOSSES
from kd_analysis.losses.checks import upcast
from kd_analysis.losses.registry import reduce_rows
from kd_analysis.losses.sinkhorn import sinkhorn_blocks, sinkhorn_topk_teacher
from kd_analysis.losses.sparse import bucket_rows, buckets_from_topk
from kd_analysis.training.batches import (
    AnswerRows,
    LMBatch,
    gold_labels,
)
from kd_analysis.training.config import TrainConfig
from kd_analysis.training.teacher_cache import TopK

TAIL_WARNING = 0.2  # warn once when the teacher's top-k cache leaves more than this share of its mass to the tail


def kd_loss_terms(
    cfg: TrainConfig,
    student_out: Any,
    teacher_rows: Any,
    width: int | None,
    *,
    rows: AnswerRows | None = None,
    note: Callable[[str], None] | None = None,
    stats: dict[str, float] | None = None,
    epoch: int = 0,
    epochs: int = 1,
    overrides: dict[str, dict] | None = None,
) -> dict[str, torch.Tensor]:
    """Distillation terms (unweighted, each at its own τ with its τ² factor). `overrides` sets parameters that
    change during training, per term (TAID's current t).

    Language-model rows compare the student's full-vocabulary distribution with the teacher: a cached top-k
    teacher (`TopK`) through k + 1 buckets (`sparse_kd`), or a full-vocabulary teacher (dense [N, V] rows, when
    `teacher_topk` is None) through the dense losses. `stats`, when given, receives the tail masses."""
    note = note or (lambda m: None)
    terms: dict[str, torch.Tensor] = {}
    lm = isinstance(student_out, LMBatch)
    if isinstance(student_out, LMBatch) and rows is None:
        rows = AnswerRows.of(student_out)
    for term in cfg.kd_terms:
        spec = LOSSES[term.name]
        tau = cfg.term_tau(term, epoch, epochs)
        params = {**term.params, **(overrides or {}).get(term.name, {})}
        if lm and rows is not None and isinstance(teacher_rows, TopK):
            value = lm_topk_term(term.name, rows, teacher_rows, tau, params, note, stats)
        elif lm and rows is not None:
            value = lm_dense_term(term.name, rows, teacher_rows, tau, width, params, note)
        elif spec.batchwise and student_out.shape[0] < 2:
            note(
                f"{spec.title}: a batch of one example has no batch-wise term; it counts 0 for that step (use a "
                f"batch size that leaves no single example at the end of an epoch)"
            )
            value = student_out.sum() * 0.0
        else:
            s = student_out if student_out.dtype == torch.float64 else student_out.float()
            value = spec(s, teacher_rows.to(s.dtype), tau=tau, **params)
        terms[term.name] = value * tau**2 if cfg.term_tau_squared(term) else value
    return terms


def lm_topk_term(name: str, rows: AnswerRows, top: TopK, tau: float, params: dict, note, stats) -> torch.Tensor:
    """One KD term from the cached top-k teacher over k + 1 buckets (the tails each summed over their own tokens);
    the tail-mass statistics are read off the same buckets, detached, so they never touch the loss's graph."""
    t_lp = top.logprobs(tau)
    k = top.indices.shape[-1]
    full = k >= rows.vocab
    if LOSSES[name].batchwise:
        value = topk_sinkhorn(rows, top, tau, params, note)
        if stats is not None and "teacher_tail_mass" not in stats and not full:
            with torch.no_grad():
                tail_stats(stats, top.rest_logprob(tau), rows.rest(top.indices, tau), tau, k, note)
        return value
    at = rows.at(top.indices)
    lse, rest = (rows.lse(tau), None) if full else rows.lse_and_rest(top.indices, tau, at)
    t, s = buckets_from_topk(
        at,
        lse,
        t_lp,
        tau=tau,
        full=full,
        student_rest=rest,
        teacher_rest=None if full else top.rest_logprob(tau),
    )
    if stats is not None and "teacher_tail_mass" not in stats:
        if full:
            stats.update(teacher_tail_mass=0.0, student_tail_mass=0.0)
        else:
            tail_stats(stats, t[:, -1].detach(), s[:, -1].detach(), tau, k, note)
    if not full and LOSSES[name].bucketed == "approximate":
        note(
            f"note: {LOSSES[name].title} is not an f-divergence, so on the cache's k + 1 buckets it is an "
            "approximation of its full-vocabulary value (above or below it); teacher_cache: none computes it exactly"
        )
    return rows.reduce(name, bucket_rows(name, full)(t, s, **params))


def tail_stats(stats: dict, t_tail: torch.Tensor, s_tail: torch.Tensor, tau: float, k: int, note) -> None:
    """Mean tail mass of teacher and student (log-probabilities in), and the warning when the teacher's is large."""
    stats["teacher_tail_mass"] = float(t_tail.exp().mean())
    stats["student_tail_mass"] = float(s_tail.exp().mean())
    if stats["teacher_tail_mass"] > TAIL_WARNING:
        note(
            f"warning: at τ = {tau:g} the teacher's top-{k} tokens hold only "
            f"{1 - stats['teacher_tail_mass']:.0%} of its probability mass; the rest is one tail bucket, so "
            "KD sees little of the teacher's distribution. Raise teacher_topk, lower τ, or set teacher_topk "
            "to null (full vocabulary, the teacher runs every step)."
        )


def topk_sinkhorn(rows: AnswerRows, top: TopK, tau: float, params: dict, note) -> torch.Tensor:
    if not token_sinkhorn_applies(params, rows.n, note):
        return rows.flat.sum() * 0.0
    student = torch.exp(rows.rows() / tau - rows.lse(tau)[:, None])
    params.pop("topk", None)
    return sinkhorn_topk_teacher(student, top.logprobs(tau).exp(), top.indices, **params)


def lm_dense_term(
    name: str, rows: AnswerRows, teacher: torch.Tensor, tau: float, width: int | None, params: dict, note
) -> torch.Tensor:
    """Full-vocabulary teacher rows [N, V_t]: the dense loss over the columns both models share."""
    width = width or min(rows.vocab, teacher.shape[-1])
    student = rows.rows()[:, :width]
    if LOSSES[name].batchwise:
        if not token_sinkhorn_applies(params, rows.n, note):
            return rows.flat.sum() * 0.0
        return sinkhorn_blocks(
            torch.softmax(student / tau, -1),
            torch.softmax(teacher[:, :width].to(student.dtype) / tau, -1),
            teacher_probs=True,
            student_probs=True,
            tau=tau,
            **params,
        )
    return rows.reduce(
        name, LOSSES[name](student, teacher[:, :width].to(student.dtype), tau=tau, reduction="none", **params)
    )


def token_sinkhorn_applies(params: dict, n: int, note) -> bool:
    """Whether a batch-wise term can run on n answer tokens (False: it counts 0 this step, and the log says so)."""
    if n < 2:
        note("Sinkhorn: a batch with a single answer token has no batch-wise term; it counts 0 for that step")
        return False
    if params.get("mass") == "batch":
        raise KDLensError(
            "Sinkhorn with mass: batch (SinKD's form) is defined on a batch of examples; on "
            "language-model tokens it would scale with the block size: use mass: one"
        )
    if n > 256:
        note(
            "Sinkhorn on language-model rows couples answer tokens in blocks of 64 positions; a batch's leftover "
            "positions form one smaller block (a single leftover joins the last block), so no token is dropped"
        )
    return True


def ce_loss(
    student_out: Any, examples: Sequence[Example], rows: AnswerRows | None = None, labelled: set[str] | None = None
) -> torch.Tensor:
    """CE on the gold labels; with `labelled` (few-label regime) only those examples count, mean over them, and a
    batch without any is 0 (its distillation terms still train)."""
    if isinstance(student_out, LMBatch):
        return (rows or AnswerRows.of(student_out)).ce()
    if labelled is not None:
        keep = [i for i, ex in enumerate(examples) if ex.id in labelled]
        if not keep:
            return upcast(student_out).sum() * 0.0
        student_out, examples = student_out[keep], [examples[i] for i in keep]
    return torch.nn.functional.cross_entropy(upcast(student_out), gold_labels(examples, student_out.device))


def aligned_answer_rows(student: LMBatch, teacher: LMBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each example's answer positions of both models, paired by index and cut to the shorter answer (ULD's
    alignment of two tokenizations): ([M, V_student], [M, V_teacher]) logits and [M] each row's example."""
    assert student.logits is not None and teacher.logits is not None
    s_rows, t_rows, seq = [], [], []
    for b in range(student.labels.shape[0]):
        s_pos = (student.labels[b] != -100).nonzero().flatten()
        t_pos = (teacher.labels[b] != -100).nonzero().flatten()
        m = min(len(s_pos), len(t_pos))
        s_rows.append(student.logits[b, s_pos[:m]])
        t_rows.append(teacher.logits[b, t_pos[:m]].to(student.logits.device))
        seq.append(torch.full((m,), b, dtype=torch.long, device=student.logits.device))
    s, t = upcast(torch.cat(s_rows)), torch.cat(t_rows)
    return s, t.to(s.dtype), torch.cat(seq)


def cross_vocab_terms(
    cfg: TrainConfig, student: LMBatch, teacher: LMBatch, epoch: int, epochs: int, overrides: dict
) -> dict[str, torch.Tensor]:
    """The distillation terms of a cross-tokenizer pair (each a cross-vocabulary row divergence, ULD), at each
    term's τ with its τ² factor, reduced over the aligned answer positions as the term's entry says (ULD: each
    example's mean over its aligned positions, then the mean over the examples, as Boizard et al. and TRL's GOLD)."""
    s_rows, t_rows, seq = aligned_answer_rows(student, teacher)
    terms = {}
    for term in cfg.kd_terms:
        tau = cfg.term_tau(term, epoch, epochs)
        rows = LOSSES[term.name].rows
        assert rows is not None
        params = {**term.params, **overrides.get(term.name, {})}
        if s_rows.shape[0] == 0:
            value = student.logits.sum() * 0.0  # type: ignore[union-attr]
        else:
            per_row = rows(torch.log_softmax(t_rows / tau, -1), torch.log_softmax(s_rows / tau, -1), **params)
            value = reduce_rows(per_row, LOSSES[term.name].reduce, seq)
        terms[term.name] = value * tau**2 if cfg.term_tau_squared(term) else value
    return terms
