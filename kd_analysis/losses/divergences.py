"""Row-wise divergences between teacher and student distributions at temperature τ (KL family, TVD).

Definitions (p_t = softmax(z_t/τ), p_s = softmax(z_s/τ)): KL = Σ p_t (log p_t − log p_s); RKL = KL(p_s‖p_t);
JS = ½KL(p_t‖m) + ½KL(p_s‖m), m = ½(p_t + p_s); TVD = ½Σ|p_t − p_s|; skew KL_α = KL(p_t ‖ α p_t + (1−α) p_s).
"""
from __future__ import annotations

import math

import torch

from kd_analysis.losses.checks import check_mask, check_pair_logits, upcast
from kd_analysis.losses.registry import Param, register_loss


def _kl_rows(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
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
    return (torch.log_softmax(upcast(s) / tau, -1), torch.log_softmax(upcast(t) / tau, -1),
            check_mask(mask, s.shape[0]))


def _finish(rows, mask, reduction, tau, tau_squared):
    out = reduce_rows(rows, mask, reduction)
    return out * tau**2 if tau_squared else out


@register_loss("kl", title="KL (forward)", symmetric=False,
               description="KL(teacher‖student): covers every teacher mode, spreading the student (mode-averaging).")
def kl_loss(student_logits, teacher_logits, *, tau=1.0, mask=None, reduction="mean", tau_squared=False):
    ls, lt, m = _prepare(student_logits, teacher_logits, tau, mask)
    return _finish(_kl_rows(lt, ls), m, reduction, tau, tau_squared)


@register_loss("rkl", title="Reverse KL", symmetric=False,
               description="KL(student‖teacher): the student may drop teacher modes and sit on one (mode-seeking).")
def rkl_loss(student_logits, teacher_logits, *, tau=1.0, mask=None, reduction="mean", tau_squared=False):
    ls, lt, m = _prepare(student_logits, teacher_logits, tau, mask)
    return _finish(_kl_rows(ls, lt), m, reduction, tau, tau_squared)


@register_loss("js", title="Jensen-Shannon", symmetric=True,
               description="Symmetric and bounded by log 2; small probabilities (rare events) weigh little.")
def js_loss(student_logits, teacher_logits, *, tau=1.0, mask=None, reduction="mean", tau_squared=False):
    ls, lt, m = _prepare(student_logits, teacher_logits, tau, mask)
    lm = torch.logaddexp(ls, lt) - math.log(2.0)
    return _finish(0.5 * _kl_rows(lt, lm) + 0.5 * _kl_rows(ls, lm), m, reduction, tau, tau_squared)


@register_loss("tvd", title="Total variation", symmetric=True,
               description="½Σ|p_t − p_s|: bounded in [0, 1], gradients do not blow up on tiny probabilities.")
def tvd_loss(student_logits, teacher_logits, *, tau=1.0, mask=None, reduction="mean", tau_squared=False):
    ls, lt, m = _prepare(student_logits, teacher_logits, tau, mask)
    return _finish(0.5 * (lt.exp() - ls.exp()).abs().sum(-1), m, reduction, tau, tau_squared)


@register_loss("skew_kl", title="Skew KL", symmetric=False,
               params=(Param("alpha", 0.1, 0.0, 0.99, "mix α of the teacher into the student side"),),
               description="KL(p_t ‖ α p_t + (1−α) p_s): forward KL made finite and smoother by mixing.")
def skew_kl_loss(student_logits, teacher_logits, *, tau=1.0, mask=None, reduction="mean", tau_squared=False,
                 alpha=0.1):
    from kd_analysis.errors import KDLensError

    if not 0 <= alpha < 1:
        raise KDLensError(f"skew α must be in [0, 1) (got {alpha})")
    ls, lt, m = _prepare(student_logits, teacher_logits, tau, mask)
    if alpha == 0:
        mix = ls
    else:
        mix = torch.logaddexp(lt + math.log(alpha), ls + math.log(1 - alpha))
    return _finish(_kl_rows(lt, mix), m, reduction, tau, tau_squared)
