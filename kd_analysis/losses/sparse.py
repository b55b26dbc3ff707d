"""Full-vocabulary divergences from a cached top-k teacher: the k kept tokens plus one tail bucket.

A language-model teacher is cached as its log-probabilities at τ over the *full* vocabulary, at its top-k
tokens. Comparing only those k columns, renormalised on both sides, would never charge the student for mass it
puts elsewhere (a student with 99.8% of its mass outside the teacher's top-k scores reverse KL ≈ 0). Here both
sides become k + 1 buckets: the k tokens and "everything else" (1 − Σ of the k probabilities; the student's
from its own softmax over the whole vocabulary). Any registered row divergence applies to the buckets; with
k = V they are the dense distributions and the value equals the dense loss.

Merging the tail is a coarsening, so by the data-processing inequality the bucketed KL / RKL / JS / TVD never
exceed the dense ones; they are exact when the student's tail follows the teacher's tail shape.
"""

from __future__ import annotations

import torch

from kd_analysis.errors import KDLensError
from kd_analysis.losses.checks import check_mask, check_positive, upcast
from kd_analysis.losses.divergences import finish
from kd_analysis.losses.registry import LOSSES

TAIL_FLOOR = 1e-30  # a tail lost to rounding (or k = V) stays finite: log(1e-30) ≈ −69


class _LogSumExpAt(torch.autograd.Function):
    """logsumexp(z / τ) over the last axis with one temporary: no z/τ copy and nothing but z and the result kept
    for the backward pass, which recomputes softmax(z/τ)/τ in place. On 2 CPU cores, forward + backward over
    1024×8192 logits: 41 ms against 80 ms for torch.logsumexp(z / 2) (47 against 58 at τ = 1), same values."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, tau: float) -> torch.Tensor:
        m = z.amax(-1)
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        lse = (z - m[..., None]).div_(tau).exp_().sum(-1).log_().add_(m / tau)
        ctx.save_for_backward(z, lse)
        ctx.tau = tau
        return lse

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        z, lse = ctx.saved_tensors
        return z.div(ctx.tau).sub_(lse[..., None]).exp_().mul_(grad[..., None] / ctx.tau), None


def logsumexp_at(z: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """logsumexp(z / τ) over the last axis (the student's normaliser for CE at τ = 1 and for KD at its τ)."""
    return _LogSumExpAt.apply(z, float(tau))


def teacher_topk_logprobs(
    teacher_logits: torch.Tensor, k: int, *, tau: float = 1.0, width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """What the teacher cache keeps per token: log-softmax at τ over the teacher's whole vocabulary, at its
    top-k tokens among the first `width` columns (the columns both models share). Returns (logprobs, ids)."""
    check_positive("temperature τ", tau)
    logp = torch.log_softmax(upcast(teacher_logits.detach()) / tau, -1)
    width = width or logp.shape[-1]
    values, ids = logp[..., :width].topk(min(int(k), width), dim=-1)
    return values, ids


def log_tail(logp_k: torch.Tensor) -> torch.Tensor:
    """log(1 − Σ exp(logp_k)) per row: the log-mass outside the kept tokens, floored at TAIL_FLOOR."""
    head = torch.logsumexp(logp_k, -1).clamp(max=0.0)
    return torch.log((-torch.expm1(head)).clamp_min(TAIL_FLOOR))


def bucket_logprobs(
    student_logits: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    teacher_indices: torch.Tensor,
    *,
    tau: float = 1.0,
    student_lse: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(teacher, student) log-probabilities over k + 1 buckets: the teacher's top-k tokens, then the tail.

    `student_lse` is logsumexp(student_logits / τ) over the whole vocabulary when the caller has it already
    (at τ = 1 it is the one cross-entropy needs); otherwise it is computed here."""
    z = upcast(student_logits)
    lse = logsumexp_at(z, tau) if student_lse is None else student_lse
    return buckets_from_topk(
        z.gather(-1, teacher_indices), lse, teacher_logprobs, tau=tau, full=teacher_indices.shape[-1] >= z.shape[-1]
    )


def buckets_from_topk(
    student_topk_logits: torch.Tensor,
    student_lse: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    *,
    tau: float,
    full: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same buckets from the student's raw logits at the teacher's k tokens [N, k] and its logsumexp of
    logits/τ over the whole vocabulary [N]: what the training loop has without copying [N, V] rows.
    `full`: k is the whole vocabulary, so there is no tail bucket."""
    s_k = upcast(student_topk_logits) / tau - student_lse[:, None]
    t_k = upcast(teacher_logprobs).to(s_k.dtype)
    if full:
        return t_k, s_k
    return (torch.cat([t_k, log_tail(t_k)[:, None]], -1), torch.cat([s_k, log_tail(s_k)[:, None]], -1))


def tail_mass(
    student_logits: torch.Tensor, teacher_logprobs: torch.Tensor, teacher_indices: torch.Tensor, *, tau: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mass outside the teacher's top-k, per row, for (teacher, student): how much of the distributions the
    cache leaves to the tail bucket."""
    with torch.no_grad():
        t, s = bucket_logprobs(student_logits, teacher_logprobs, teacher_indices, tau=tau)
    if t.shape[-1] == teacher_indices.shape[-1]:
        return torch.zeros(t.shape[0]), torch.zeros(s.shape[0])
    return t[:, -1].exp(), s[:, -1].exp()


def _check(student_logits, teacher_logprobs, teacher_indices):
    if student_logits.dim() != 2:
        raise KDLensError(
            f"student logits must be [rows, vocabulary] (got {tuple(student_logits.shape)}); "
            "flatten token positions into rows and pass a mask"
        )
    if teacher_logprobs.shape != teacher_indices.shape or teacher_logprobs.shape[0] != student_logits.shape[0]:
        raise KDLensError(
            f"teacher top-k log-probabilities {tuple(teacher_logprobs.shape)} and ids "
            f"{tuple(teacher_indices.shape)} must both be [rows, k] with the student's "
            f"{student_logits.shape[0]} rows"
        )
    if teacher_indices.shape[-1] > student_logits.shape[-1]:
        raise KDLensError(
            f"k = {teacher_indices.shape[-1]} exceeds the student's vocabulary ({student_logits.shape[-1]})"
        )
    if teacher_indices.numel() and int(teacher_indices.max()) >= student_logits.shape[-1]:
        raise KDLensError(
            f"teacher token id {int(teacher_indices.max())} is outside the student's vocabulary "
            f"({student_logits.shape[-1]}): the tokenizers differ"
        )
    if bool((teacher_logprobs > 1e-6).any()):
        raise KDLensError(
            "teacher values must be log-probabilities (≤ 0), not raw logits: cache "
            "log_softmax(logits / τ) over the full vocabulary (teacher_topk_logprobs)"
        )


def sparse_kd(
    name: str,
    student_logits: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    teacher_indices: torch.Tensor,
    *,
    tau: float = 1.0,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
    tau_squared: bool = False,
    student_lse: torch.Tensor | None = None,
    **params,
) -> torch.Tensor:
    """`LOSSES[name]` between the teacher and the student over the teacher's top-k tokens plus a tail bucket.

    student_logits [N, V] raw; teacher_logprobs [N, k] = log-softmax of the teacher at τ over its full
    vocabulary, at teacher_indices [N, k]. Conventions as in `LOSSES` (teacher = P, KL(P‖Q), natural log)."""
    rows = row_divergence(name)
    check_positive("temperature τ", tau)
    _check(student_logits, teacher_logprobs, teacher_indices)
    m = check_mask(mask, student_logits.shape[0])
    if m is not None:  # drop masked rows before any work over the vocabulary
        student_logits, teacher_logprobs, teacher_indices = student_logits[m], teacher_logprobs[m], teacher_indices[m]
        student_lse = student_lse[m] if student_lse is not None else None
    t, s = bucket_logprobs(student_logits, teacher_logprobs, teacher_indices, tau=tau, student_lse=student_lse)
    return finish(rows(t, s, **params), None, reduction, tau, tau_squared)


def row_divergence(name: str):
    """The registered row function of a loss, or a clear error for batch-wise losses."""
    spec = LOSSES.get(name)
    if spec is None:
        raise KDLensError(f"unknown loss {name!r}; one of {', '.join(LOSSES)}")
    if spec.rows is None:
        raise KDLensError(
            f"{spec.title} is not a row-wise divergence, so it has no top-k form; it couples the "
            "rows of a batch (use it on dense rows)"
        )
    return spec.rows
