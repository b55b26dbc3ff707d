"""Row-wise divergences between teacher and student distributions at temperature τ (KL family, TVD, soft CE).

Definitions (p_t = softmax(z_t/τ), p_s = softmax(z_s/τ)): KL = Σ p_t (log p_t − log p_s); RKL = KL(p_s‖p_t);
JS = ½KL(p_t‖m) + ½KL(p_s‖m), m = ½(p_t + p_s); TVD = ½Σ|p_t − p_s|; skew KL_α = KL(p_t ‖ α p_t + (1−α) p_s);
soft CE = −Σ p_t log p_s = KL + H(p_t) (Hinton's form, SinKD's KD term).

Each divergence is written once, on log-probability rows (teacher first); `register_divergence` turns it into a
loss on logits (softmax at τ, mask, reduction, τ²) and keeps the row function on the spec, so `sparse_kd` can
apply the very same formula to a cached top-k teacher plus a tail bucket.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from kd_analysis.exceptions import KDLensError
from kd_analysis.losses.checks import check_mask, check_pair_logits, upcast
from kd_analysis.losses.registry import LOSSES, Param, RowFn, register_loss


def kl_from_logs(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Σ p (log p − log q) per row; terms with p = 0 are 0 (also where both are -inf)."""
    p = log_p.exp()
    terms = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))
    return terms.sum(-1)


def reduce_rows(values: torch.Tensor, mask: torch.Tensor | None, reduction: str) -> torch.Tensor:
    if mask is not None:
        values = values[mask]
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum()
    return values.mean()


def _prepare(student, teacher, tau, mask):
    check_pair_logits(student, teacher, tau=tau)
    s, t = student.reshape(-1, student.shape[-1]), teacher.reshape(-1, teacher.shape[-1])
    return (
        torch.log_softmax(upcast(s) / tau, -1),
        torch.log_softmax(upcast(t) / tau, -1),
        check_mask(mask, s.shape[0]),
    )


def finish(rows: torch.Tensor, mask, reduction: str, tau: float, tau_squared: bool) -> torch.Tensor:
    out = reduce_rows(rows, mask, reduction)
    return out * tau**2 if tau_squared else out


def register_divergence(
    name: str,
    *,
    title: str,
    description: str,
    symmetric: bool,
    params: tuple[Param, ...] = (),
    zero_at_match: bool = True,
    cross_vocab: bool = False,
    bucketed: str = "coarsening",
    bucket_aware: bool = False,
    reference_tau: tuple[float, bool] | None = None,
    reduce: str = "token",
) -> Callable[[RowFn], RowFn]:
    """Register a row function `(teacher_logp, student_logp, **params) -> [N]` as a loss on logits."""

    def deco(rows: RowFn) -> RowFn:
        def loss(student_logits, teacher_logits, *, tau=1.0, mask=None, reduction="mean", tau_squared=False, **kw):
            ls, lt, m = _prepare(student_logits, teacher_logits, tau, mask)
            return finish(rows(lt, ls, **kw), m, reduction, tau, tau_squared)

        loss.__name__, loss.__qualname__, loss.__doc__ = f"{name}_loss", f"{name}_loss", rows.__doc__
        register_loss(
            name,
            title=title,
            description=description,
            symmetric=symmetric,
            params=params,
            rows=rows,
            zero_at_match=zero_at_match,
            cross_vocab=cross_vocab,
            bucketed=bucketed,
            bucket_aware=bucket_aware,
            reference_tau=reference_tau,
            reduce=reduce,
        )(loss)
        return rows

    return deco


@register_divergence(
    "kl",
    title="KL (forward)",
    symmetric=False,
    description="KL(teacher‖student): covers every teacher mode, spreading the student (mode-averaging).",
)
def kl_rows(lt: torch.Tensor, ls: torch.Tensor) -> torch.Tensor:
    """KL(p_t‖p_s) per row."""
    return kl_from_logs(lt, ls)


@register_divergence(
    "rkl",
    title="Reverse KL",
    symmetric=False,
    description="KL(student‖teacher): the student may drop teacher modes and sit on one (mode-seeking).",
)
def rkl_rows(lt: torch.Tensor, ls: torch.Tensor) -> torch.Tensor:
    """KL(p_s‖p_t) per row."""
    return kl_from_logs(ls, lt)


@register_divergence(
    "js",
    title="Jensen-Shannon",
    symmetric=True,
    description="Symmetric and bounded by log 2; small probabilities (rare events) weigh little.",
)
def js_rows(lt: torch.Tensor, ls: torch.Tensor) -> torch.Tensor:
    """½KL(p_t‖m) + ½KL(p_s‖m) with m the mixture, per row."""
    return _JSRows.apply(lt, ls)


def js_rows_reference(lt: torch.Tensor, ls: torch.Tensor) -> torch.Tensor:
    """The same divergence written plainly (autograd through every step): what `_JSRows` is tested against."""
    lm = torch.logaddexp(ls, lt) - math.log(2.0)
    return 0.5 * kl_from_logs(lt, lm) + 0.5 * kl_from_logs(ls, lm)


class _JSRows(torch.autograd.Function):
    """JS = ½Σ p_t log p_t + ½Σ p_s log p_s − Σ m log m, with its gradient written out:
    ∂JS/∂log p_s = ½ p_s log(p_s / m) (and the same for the teacher). Autograd through the plain form makes
    about three times as many passes over the [N, V] rows and keeps their intermediates for the backward; this
    keeps only the inputs. The backward is built from them with differentiable ops, so a second derivative (the
    toy's Newton steps) is exact too."""

    @staticmethod
    def forward(ctx, lt: torch.Tensor, ls: torch.Tensor) -> torch.Tensor:
        pt, ps = lt.exp(), ls.exp()
        m = 0.5 * (pt + ps)
        log_m = m.log()  # the one logarithm: p log p is p times the input, 0 where p is 0
        ctx.save_for_backward(lt, ls, log_m)
        own = torch.where(pt > 0, pt * lt, 0.0) + torch.where(ps > 0, ps * ls, 0.0)
        return (0.5 * own - torch.where(m > 0, m * log_m, 0.0)).sum(-1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        lt, ls, log_m = ctx.saved_tensors
        if torch.is_grad_enabled():  # a second derivative is wanted: rebuild log m from the inputs
            log_m = torch.logaddexp(lt, ls) - math.log(2.0)
        g = 0.5 * grad.unsqueeze(-1)

        def side(lp: torch.Tensor) -> torch.Tensor:
            p = lp.exp()
            return g * torch.where(p > 0, p * (lp - log_m), 0.0)

        return (side(lt) if ctx.needs_input_grad[0] else None), (side(ls) if ctx.needs_input_grad[1] else None)


@register_divergence(
    "tvd",
    title="Total variation",
    symmetric=True,
    description="½Σ|p_t − p_s|: bounded in [0, 1], gradients do not blow up on tiny probabilities.",
)
def tvd_rows(lt: torch.Tensor, ls: torch.Tensor) -> torch.Tensor:
    """½Σ|p_t − p_s| per row."""
    return 0.5 * (lt.exp() - ls.exp()).abs().sum(-1)


@register_divergence(
    "skew_kl",
    title="Skew KL",
    symmetric=False,
    params=(Param("alpha", 0.1, 0.0, 0.99, "mix α of the teacher into the student side"),),
    description="KL(p_t ‖ α p_t + (1−α) p_s): forward KL made finite and smoother by mixing.",
)
def skew_kl_rows(lt: torch.Tensor, ls: torch.Tensor, alpha: float = 0.1) -> torch.Tensor:
    """KL(p_t ‖ α p_t + (1−α) p_s) per row."""
    if not 0 <= alpha < 1:
        raise KDLensError(f"skew α must be in [0, 1) (got {alpha})")
    mix = ls if alpha == 0 else torch.logaddexp(lt + math.log(alpha), ls + math.log(1 - alpha))
    return kl_from_logs(lt, mix)


@register_divergence(
    "soft_ce",
    title="Soft cross-entropy (Hinton)",
    symmetric=False,
    zero_at_match=False,
    description="−Σ p_t log p_s = KL + the teacher's entropy: KL's gradient, a value offset by "
    "H(p_t). SinKD's KD term (without τ²).",
)
def soft_ce_rows(lt: torch.Tensor, ls: torch.Tensor) -> torch.Tensor:
    """H(p_t, p_s) = −Σ p_t log p_s per row (terms with p_t = 0 are 0)."""
    p = lt.exp()
    return -torch.where(p > 0, p * ls, torch.zeros_like(p)).sum(-1)


kl_loss, rkl_loss, js_loss, tvd_loss, skew_kl_loss, soft_ce_loss = (
    LOSSES[n].fn for n in ("kl", "rkl", "js", "tvd", "skew_kl", "soft_ce")
)
