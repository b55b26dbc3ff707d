"""The loss registry: name -> LossSpec. Adding a loss is one decorated function.

Every loss takes `(student_logits, teacher_logits, *, tau=1.0, mask=None, reduction="mean", **params)` and
returns a scalar that back-propagates (or per-row values with reduction="none"). Row-wise divergences also
carry `rows`, the same divergence on log-probability rows (teacher first), which is what lets `sparse_kd`
compare a cached top-k teacher with the student's full distribution.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch


class LossFn(Protocol):
    """A loss on logits: a scalar that back-propagates (per-row values with reduction="none"). Loss parameters
    (`Param`s) arrive as further keyword arguments."""

    def __call__(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        *,
        tau: float = 1.0,
        mask: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> torch.Tensor: ...


class RowFn(Protocol):
    """A divergence on log-probability rows, teacher first: [N, d] and [N, d] -> [N]."""

    def __call__(self, teacher_logp: torch.Tensor, student_logp: torch.Tensor, /) -> torch.Tensor: ...


class PairFn(Protocol):
    """A batch-wise loss between single distributions: probability rows [G, n] and [G, n] -> [G]."""

    def __call__(self, student_probs: torch.Tensor, teacher_probs: torch.Tensor, /) -> torch.Tensor: ...


@dataclass(frozen=True)
class Param:
    name: str
    default: float
    low: float
    high: float
    help: str


@dataclass(frozen=True)
class LossSpec:
    name: str
    title: str
    fn: LossFn
    description: str
    symmetric: bool
    batchwise: bool = False  # couples the rows of a batch (Sinkhorn); per-row values are shares of one total
    params: tuple[Param, ...] = field(default_factory=tuple)
    rows: RowFn | None = None  # the divergence on normalised log-probability rows (None: batch-wise losses)
    zero_at_match: bool = True  # 0 when student == teacher (false for soft cross-entropy: the teacher's entropy)
    one_pair: PairFn | None = None  # a batch-wise loss between single distributions (what the toy fits)
    cross_vocab: bool = False  # compares rows of different vocabularies (ULD): usable across tokenizers
    # how the row divergence behaves on a top-k teacher cache's k + 1 buckets (`sparse_kd`), one of BUCKETED
    bucketed: str = "coarsening"
    bucket_aware: bool = False  # the row function takes `tail_bucket=True` to treat its last column as the tail
    # (τ, τ² factor) the objective's reference trains with; a term that sets no τ of its own takes these instead of
    # the run's (None: the run's τ and τ² setting, Hinton's convention for the classic divergences)
    reference_tau: tuple[float, bool] | None = None
    # how a language-model batch's rows reduce to the term: "token" (the mean over every answer token of the
    # batch) or "sequence" (the mean over each sequence's answer tokens, then over the sequences), one of REDUCTIONS
    reduce: str = "token"
    # checks the loss's other keyword settings (a choice among names, an optional size) as a config names them,
    # raising KDLensError in one sentence; None: the loss takes no settings beyond `params`
    check_options: Callable[[Mapping[str, Any]], None] | None = None

    def __call__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, **kw: Any) -> torch.Tensor:
        return self.fn(student_logits, teacher_logits, **kw)

    def defaults(self) -> dict[str, float]:
        return {p.name: p.default for p in self.params}

    def resolve(self, values: Mapping[str, float]) -> dict[str, float]:
        """This loss's parameters: the given value where one is named like a parameter, else its default (an
        integer parameter stays an integer). Callers pass every value they hold; each loss takes its own."""
        return {p.name: type(p.default)(values.get(p.name, p.default)) for p in self.params}


LOSSES: dict[str, LossSpec] = {}

BUCKETED = {
    "coarsening": "merging the tail can only lower it (data processing for an f-divergence, or one plus the "
    "teacher's entropy; the triangle inequality for a transport cost)",
    "approximate": "not an f-divergence: on the k + 1 buckets it may be above or below its dense value",
    "none": "no form on the buckets: it needs every token of both distributions",
}
REDUCTIONS = {
    "token": "the mean over every answer token of the batch",
    "sequence": "the mean over each sequence's answer tokens, then the mean over the batch's sequences",
}


def reduction_weights(reduce: str, seq: torch.Tensor) -> torch.Tensor:
    """[N] weights, summing to 1, that reduce a term's per-row values as `reduce` says (REDUCTIONS); `seq` [N] is
    each row's sequence in the batch. "sequence" gives a row 1 / (its sequence's rows × the sequences with rows),
    so a long answer counts as much as a short one (a sequence without answer rows is not counted)."""
    n = seq.shape[0]
    if n == 0 or reduce == "token":
        return torch.full((n,), 1.0 / max(n, 1), dtype=torch.float64, device=seq.device)
    _, inverse, counts = torch.unique(seq, return_inverse=True, return_counts=True)
    return 1.0 / (counts[inverse].double() * counts.shape[0])


def reduce_rows(values: torch.Tensor, reduce: str, seq: torch.Tensor) -> torch.Tensor:
    """A term's per-row values [N] as one number, reduced as `reduce` says (`reduction_weights`); the token mean
    is `values.mean()` itself, so token-reduced terms round exactly as before."""
    if reduce == "token":
        return values.mean()
    return (values * reduction_weights(reduce, seq).to(values.dtype)).sum()


BUCKETED_SHORT = {"coarsening": "at most the full value", "approximate": "approximation", "none": "no form"}


def register_loss(
    name: str,
    *,
    title: str,
    description: str,
    symmetric: bool,
    batchwise: bool = False,
    params: tuple[Param, ...] = (),
    rows: RowFn | None = None,
    zero_at_match: bool = True,
    one_pair: PairFn | None = None,
    cross_vocab: bool = False,
    bucketed: str = "coarsening",
    bucket_aware: bool = False,
    reference_tau: tuple[float, bool] | None = None,
    reduce: str = "token",
    check_options: Callable[[Mapping[str, Any]], None] | None = None,
) -> Callable[[LossFn], LossFn]:
    if bucketed not in BUCKETED:
        raise ValueError(f"loss {name!r}: bucketed must be one of {', '.join(BUCKETED)}")
    if reduce not in REDUCTIONS:
        raise ValueError(f"loss {name!r}: reduce must be one of {', '.join(REDUCTIONS)}")

    def deco(fn: LossFn) -> LossFn:
        taken = {p.name: other.name for other in LOSSES.values() if other.name != name for p in other.params}
        clash = [p.name for p in params if p.name in taken]
        if clash:  # callers pass one mapping of values to every loss (`resolve`): a shared name would be shared
            raise ValueError(f"loss {name!r}: parameter {clash[0]!r} is already {taken[clash[0]]!r}'s; name it apart")
        LOSSES[name] = LossSpec(
            name,
            title,
            fn,
            description,
            symmetric,
            batchwise,
            params,
            rows,
            zero_at_match,
            one_pair,
            cross_vocab,
            bucketed,
            bucket_aware,
            reference_tau,
            reduce,
            check_options,
        )
        return fn

    return deco
