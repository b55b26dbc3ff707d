"""Cross-entropy and distillation terms straight from final hidden states and the output layers, a block of
positions at a time.

When the teacher runs every step over the full vocabulary, the plain way makes [N, V] logits for both models
and keeps the student's (and its softmax temporaries) for the backward pass: several [N, V] tensors at once,
which is what dominates a language-model KD step's memory. Here each block of target positions goes through
both output layers, its loss and the loss's gradient with respect to the student's logits are computed
together, and that gradient is carried at once to the student's hidden states and head weights; the block's
logits are then dropped. Extra memory is a few [block, V] tensors. Values and gradients equal the plain dense
losses (tests compare them on models whose tokens differ, with a block smaller than N).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from kd_analysis.exceptions import KDLensError
from kd_analysis.losses.registry import LOSSES

# one [block, V] float32 tensor; a block holds ~6 of them at a time. In the TRL comparison (8,192 tokens, 768
# positions per step) blocks of 32 / 8 / 4 / 2 MB gave 926 / 789 / 668 / 633 MB peak and 305 / 286 / 293 / 308 ms
# per step; 1 MB was slower (370 ms): below ~64 positions per block the per-block overhead shows
BLOCK_BYTES = 4 * 2**20
MIN_BLOCK = 32  # positions, whatever the vocabulary


@dataclass
class Head:
    """A model's final hidden states at the target positions and its output layer."""

    hidden: torch.Tensor  # [N, H]
    weight: torch.Tensor  # [V, H]
    bias: torch.Tensor | None = None


@dataclass(frozen=True)
class Term:
    """One loss term: `ce` on the labels (full student vocabulary) or a registered row-wise divergence on the
    first `width` columns at temperature `tau`. `scale` is its τ² factor (or 1); `weight` the user's weight."""

    name: str
    weight: float = 1.0
    tau: float = 1.0
    scale: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)
    # [N] row weights summing to 1 that reduce the term (`reduction_weights`: a per-sequence mean); None: 1/N each
    weights: torch.Tensor | None = None


def block_rows(vocab: int, budget: int | None = None) -> int:
    """Positions per block so that one [block, V] float32 tensor stays within `budget` bytes (BLOCK_BYTES)."""
    return max(MIN_BLOCK, (budget or BLOCK_BYTES) // (4 * max(vocab, 1)))


def _check(student: Head, teacher: Head | None, labels: torch.Tensor, terms: Sequence[Term]) -> None:
    n = student.hidden.shape[0]
    if labels.shape != (n,):
        raise KDLensError(f"labels must be [N] with the student's {n} positions (got {tuple(labels.shape)})")
    for t in terms:
        if t.name == "ce":
            continue
        spec = LOSSES.get(t.name)
        if spec is None or spec.rows is None:
            raise KDLensError(f"{t.name} has no row-wise form, so it cannot be computed block by block")
        if teacher is None:
            raise KDLensError(f"the {t.name} term needs the teacher's hidden states and output layer")
    if teacher is not None and teacher.hidden.shape[0] != n:
        raise KDLensError(f"teacher and student positions differ ({teacher.hidden.shape[0]} vs {n})")


def _logits(head: Head, rows: slice, width: int | None = None) -> torch.Tensor:
    w = head.weight if width is None else head.weight[:width]
    z = head.hidden[rows] @ w.T
    if head.bias is not None:
        z = z + (head.bias if width is None else head.bias[:width])
    return z if z.dtype == torch.float64 else z.float()


class _ChunkedHeadLoss(torch.autograd.Function):
    """Forward computes the weighted total and, block by block, its gradient; backward only scales it."""

    @staticmethod
    def forward(ctx, hs, ws, bs, ht, wt, bt, labels, terms, width, block, norms):  # type: ignore[override]
        n = hs.shape[0]
        student = Head(hs, ws, bs)
        teacher = Head(ht, wt, bt) if ht is not None else None
        exact = torch.float64 if hs.dtype == torch.float64 else torch.float32  # bf16 weights: float32 sums
        grad_h = torch.zeros_like(hs, dtype=exact)
        grad_w = torch.zeros_like(ws, dtype=exact) if ctx.needs_input_grad[1] else None
        grad_b = torch.zeros_like(bs, dtype=exact) if bs is not None and ctx.needs_input_grad[2] else None
        values = torch.zeros(len(terms), dtype=torch.float64, device=hs.device)
        squares = torch.zeros(len(terms), dtype=torch.float64, device=hs.device)  # ‖∂term/∂logits‖², when asked
        total = torch.zeros((), dtype=torch.float64, device=hs.device)
        for start in range(0, n, block):
            rows = slice(start, min(start + block, n))
            z = _logits(student, rows).requires_grad_(True)
            with torch.no_grad():
                zt = _logits(teacher, rows, width) if teacher is not None else None
            with torch.enable_grad():
                parts = [_term_mean(t, z, zt, labels[rows], width, rows, n) for t in terms]
                weighted = sum(t.weight * t.scale * p for t, p in zip(terms, parts))
                if norms:
                    for i, (t, p) in enumerate(zip(terms, parts)):
                        (gi,) = torch.autograd.grad(p * t.scale, z, retain_graph=True)
                        squares[i] += gi.double().square().sum()
                (g,) = torch.autograd.grad(weighted, z)
            with torch.no_grad():
                values += torch.stack([p.detach().double() for p in parts])
                total += weighted.detach().double()
                grad_h[rows] = g @ ws.to(exact)
                if grad_w is not None:
                    grad_w += g.T @ hs[rows].to(exact)
                if grad_b is not None:
                    grad_b += g.sum(0)
        ctx.save_for_backward(
            grad_h.to(hs.dtype),
            grad_w.to(ws.dtype) if grad_w is not None else None,
            grad_b.to(bs.dtype) if grad_b is not None else None,
        )
        grad_norms = squares.sqrt()
        ctx.mark_non_differentiable(values, grad_norms)
        return total.to(exact), values, grad_norms

    @staticmethod
    def backward(ctx, grad_total, _grad_values, _grad_norms):  # type: ignore[override]
        grad_h, grad_w, grad_b = ctx.saved_tensors
        scale = grad_total.to(grad_h.dtype)
        return (
            grad_h * scale,
            grad_w * scale if grad_w is not None else None,
            grad_b * scale if grad_b is not None else None,
            *([None] * 8),
        )


def _term_mean(
    term: Term, z: torch.Tensor, zt: torch.Tensor | None, labels: torch.Tensor, width: int | None, block: slice, n: int
) -> torch.Tensor:
    """This block's share of the term's mean over all N positions (weighted by `term.weights` when set)."""
    if term.name == "ce":
        return torch.nn.functional.cross_entropy(z, labels, reduction="sum") / n
    assert zt is not None
    rows = LOSSES[term.name].rows
    assert rows is not None
    s = z if width is None else z[:, :width]
    lt = torch.log_softmax(zt / term.tau, -1)
    ls = torch.log_softmax(s / term.tau, -1)
    values = rows(lt, ls, **term.params)
    if term.weights is None:
        return values.sum() / n
    return (values * term.weights[block].to(values.dtype)).sum()


def chunked_head_loss(
    student: Head,
    teacher: Head | None,
    labels: torch.Tensor,
    terms: Sequence[Term],
    *,
    width: int | None = None,
    block: int | None = None,
    norms: dict[str, float] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Σ weight·scale·term over the N target positions (each term a mean over them), and each term's
    scale·value for the logs. `norms`, when given, receives each term's ‖∂(scale·term)/∂student logits‖ (the loss-
    balance monitor; one more local backward per term and block). Gradients reach the student's hidden states and, when they require it, its head
    weight and bias; the teacher is read without gradient. `width`: the columns both vocabularies share (the
    KD terms compare those; CE uses the student's whole vocabulary)."""
    terms = list(terms)
    _check(student, teacher, labels, terms)
    if student.hidden.shape[0] == 0 or not terms:
        if norms is not None:
            norms.update({t.name: 0.0 for t in terms})
        return student.hidden.sum() * 0.0, {t.name: 0.0 for t in terms}
    vocab = student.weight.shape[0]
    block = block or block_rows(vocab)
    t = teacher or Head(None, None, None)  # type: ignore[arg-type]
    total, values, grad_norms = _ChunkedHeadLoss.apply(
        student.hidden,
        student.weight,
        student.bias,
        t.hidden,
        t.weight,
        t.bias,
        labels,
        terms,
        width,
        int(block),
        norms is not None,
    )
    if norms is not None:
        norms.update({term.name: float(v) for term, v in zip(terms, grad_norms)})
    return total, {term.name: float(v) * term.scale for term, v in zip(terms, values)}
