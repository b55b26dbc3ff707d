"""Distillation objectives of 2024–2025 that researchers compare against, as row-wise divergences (teacher first):

- `akl`: adaptive KL (Wu et al. 2024, "Rethinking Kullback-Leibler Divergence in Knowledge Distillation for
  Large Language Models"). Per row, forward and reverse KL are weighted by the teacher–student gap on the
  teacher's head (its most probable tokens, up to cumulative mass μ; the top token always) and on the tail:
  AKL = g_head / (g_head + g_tail) · KL(p_t‖p_s) + g_tail / (g_head + g_tail) · KL(p_s‖p_t), with
  g = Σ |p_t − p_s| over each part, held constant in the gradient (as in the authors' AKL.py, wutaiqiang/LLM_KD_AKL).
- `alpha_beta`: the AB-divergence of Cichocki, Cruces and Amari (2011) that ABKD (Wang et al. 2025) distils with,
  D(α, β) = −1/(αβ) Σ (p_t^α p_s^β − α/(α+β) p_t^(α+β) − β/(α+β) p_s^(α+β)), with its continuous limits where α,
  β or α + β is 0: (1, 0) is KL(p_t‖p_s), (0, 1) is KL(p_s‖p_t), (½, ½) is 4 × the squared Hellinger distance.
- `uld`: universal logit distillation (Boizard et al. 2024): the Wasserstein-1 distance between the two
  distributions with their tokens ranked by probability, Σ_i |p_t,(i) − p_s,(i)| over the sorted probabilities
  (the shorter vocabulary padded with zeros). It needs no shared tokenizer, so it is what a cross-tokenizer pair
  can distil with; answer positions are then aligned by index (the training loop).
- `gjsd`: the generalised Jensen-Shannon divergence of GKD (Agarwal et al. 2024),
  JSD(β) = β KL(p_t‖m) + (1−β) KL(p_s‖m), m = β p_t + (1−β) p_s, for 0 < β < 1. The formula vanishes at β = 0
  and 1 (divided by β it tends to KL(p_t‖p_s) as β → 0, divided by 1 − β to KL(p_s‖p_t) as β → 1, tested), so
  the endpoints follow TRL's GKD trainer: β = 0 is forward KL(p_t‖p_s), β = 1 reverse KL(p_s‖p_t). β = ½ is JS.

All are written with differentiable operations only, so the toy's Newton fits get exact second derivatives.
"""

from __future__ import annotations

import math

import torch

from kd_analysis.exceptions import KDLensError
from kd_analysis.losses.divergences import kl_from_logs, register_divergence
from kd_analysis.losses.registry import Param

# τ 1 without Hinton's τ²: what the authors' code of AKL, ABKD and TAID, TRL's GKD and Boizard et al.'s ULD train
# with; a term of these objectives without its own τ takes it rather than the run's (docs/user-guide/loss-explorer.md lists the sources)
REFERENCE_TAU = (1.0, False)
HEAD_SEARCH = 64  # AKL looks for the head among the teacher's top tokens first; rows whose head is wider are sorted


def akl_weights(
    lt: torch.Tensor, ls: torch.Tensor, mu: float = 0.5, tail_bucket: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(head weight, tail weight) per row: the shares of the teacher–student L1 gap on the teacher's head and
    tail. The head is the teacher's tokens by decreasing probability while the cumulative mass stays ≤ μ, and
    always the top token. Both 0.5 where the rows are equal (the loss is 0 there anyway).

    The head usually lies within the teacher's top few tokens, so rows are first searched among the top
    `HEAD_SEARCH`; only rows whose top tokens hold no more than μ are sorted whole (`_head_gap_sorted`, the
    reference the tests compare this with). `tail_bucket`: the last column is a top-k cache's merged tail, not a
    token, so it is never ranked into the head; its gap counts in the tail's."""
    with torch.no_grad():
        pt, ps = lt.exp(), ls.exp()
        total = (pt - ps).abs().sum(-1)
        if tail_bucket:
            pt, ps = pt[..., :-1], ps[..., :-1]
        k = min(HEAD_SEARCH, pt.shape[-1])
        top, idx = pt.topk(k, dim=-1)
        head = top.cumsum(-1) <= mu
        head[..., 0] = True
        g_head = ((top - ps.gather(-1, idx)).abs() * head).sum(-1)
        wide = top.sum(-1) <= mu  # the head may go past the k-th token: sort these rows whole
        if k < pt.shape[-1] and bool(wide.any()):
            g_head[wide] = _head_gap_sorted(pt[wide], ps[wide], mu)
        w_head = torch.where(total > 0, g_head / total.clamp_min(1e-30), torch.full_like(total, 0.5))
    return w_head, 1 - w_head


def _head_gap_sorted(pt: torch.Tensor, ps: torch.Tensor, mu: float) -> torch.Tensor:
    """Σ |p_t − p_s| over the teacher's head, from a full sort of each row (as the public AKL code does)."""
    ranked, order = pt.sort(-1, descending=True)
    head = ranked.cumsum(-1) <= mu
    head[..., 0] = True
    return ((ranked - ps.gather(-1, order)).abs() * head).sum(-1)


@register_divergence(
    "akl",
    title="Adaptive KL (AKL)",
    symmetric=False,
    bucketed="approximate",
    bucket_aware=True,
    reference_tau=REFERENCE_TAU,
    params=(Param("mu", 0.5, 0.05, 0.95, "μ: the teacher's head is its top tokens up to this cumulative mass"),),
    description="Forward and reverse KL weighted per row by where the student misses the teacher: on its head "
    "(forward KL's strength) or on its tail (reverse KL's). Wu et al. 2024.",
)
def akl_rows(lt: torch.Tensor, ls: torch.Tensor, mu: float = 0.5, tail_bucket: bool = False) -> torch.Tensor:
    """AKL per row; the weights are constants in the gradient. `tail_bucket`: see `akl_weights`."""
    if not 0 < mu < 1:
        raise KDLensError(f"AKL's μ must be in (0, 1) (got {mu})")
    w_head, w_tail = akl_weights(lt, ls, mu, tail_bucket)
    return w_head * kl_from_logs(lt, ls) + w_tail * kl_from_logs(ls, lt)


def _power(lp: torch.Tensor, a: float) -> torch.Tensor:
    """p^a from log p (a > 0; p = 0 gives 0)."""
    return (lp * a).exp()


def _plogp_ratio(la: torch.Tensor, lb: torch.Tensor, a: float) -> torch.Tensor:
    """Σ p_a^a · log(p_a^a / p_b^a) per row, 0 where p_a = 0 (a > 0)."""
    pa = _power(la, a)
    return torch.where(pa > 0, pa * a * (la - lb), 0.0).sum(-1)


@register_divergence(
    "alpha_beta",
    title="α-β divergence (ABKD)",
    symmetric=False,
    bucketed="approximate",  # an f-divergence only on α + β = 1
    reference_tau=REFERENCE_TAU,
    params=(
        Param("ab_alpha", 0.5, 0.0, 2.0, "α: weight on the teacher's side ((1, 0) is forward KL)"),
        Param("ab_beta", 0.5, 0.0, 2.0, "β: weight on the student's side ((0, 1) is reverse KL)"),
    ),
    description="Cichocki's AB-divergence, which ABKD (Wang et al. 2025) distils with: α and β trade how much "
    "the student must cover the teacher's modes against how much it may concentrate; forward KL, reverse KL and "
    "Hellinger are points of the (α, β) plane.",
)
def alpha_beta_rows(lt: torch.Tensor, ls: torch.Tensor, ab_alpha: float = 0.5, ab_beta: float = 0.5) -> torch.Tensor:
    """D_AB(α, β)(p_t‖p_s) per row, with the limits of Cichocki et al. (2011) where α, β or α + β is 0. The
    parameters are named ab_alpha / ab_beta because loss parameters share one namespace (skew KL has `alpha`)."""
    a, b = float(ab_alpha), float(ab_beta)
    if a < 0 or b < 0:
        raise KDLensError(f"α and β must be ≥ 0 here (got α = {a}, β = {b}): negative powers of 0 are infinite")
    if a == 0 and b == 0:  # ½ Σ (log p_t − log p_s)²
        diff = torch.where((lt > -math.inf) & (ls > -math.inf), lt - ls, 0.0)
        return 0.5 * (diff * diff).sum(-1)
    if b == 0:  # 1/α² Σ (p_t^α log(p_t^α / p_s^α) − p_t^α + p_s^α)
        return (_plogp_ratio(lt, ls, a) - _power(lt, a).sum(-1) + _power(ls, a).sum(-1)) / (a * a)
    if a == 0:  # 1/β² Σ (p_s^β log(p_s^β / p_t^β) − p_s^β + p_t^β)
        return (_plogp_ratio(ls, lt, b) - _power(ls, b).sum(-1) + _power(lt, b).sum(-1)) / (b * b)
    s = a + b
    cross = (lt * a + ls * b).exp().sum(-1)
    return -(cross - a / s * _power(lt, s).sum(-1) - b / s * _power(ls, s).sum(-1)) / (a * b)


@register_divergence(
    "gjsd",
    title="Generalised JSD (GKD)",
    symmetric=False,
    reference_tau=REFERENCE_TAU,
    params=(
        Param(
            "jsd_beta",
            0.5,
            0.0,
            1.0,
            "β: the teacher's share of the mixture (½: JS); 0 is forward KL and 1 reverse KL, as in TRL's GKD",
        ),
    ),
    description="β·KL(teacher‖m) + (1−β)·KL(student‖m) with m = β·teacher + (1−β)·student: bounded, and between "
    "forward KL (small β) and reverse KL (β near 1). Agarwal et al. 2024 (GKD).",
)
def gjsd_rows(lt: torch.Tensor, ls: torch.Tensor, jsd_beta: float = 0.5) -> torch.Tensor:
    """JSD(β) per row; at β = 0 forward KL(p_t‖p_s) and at β = 1 reverse KL(p_s‖p_t), TRL's endpoints (the
    mixture formula is identically 0 there, so a run configured with them would train nothing)."""
    b = float(jsd_beta)
    if not 0 <= b <= 1:
        raise KDLensError(f"generalised JSD's β must be in [0, 1] (got {b})")
    if b == 0.0:
        return kl_from_logs(lt, ls)
    if b == 1.0:
        return kl_from_logs(ls, lt)
    lm = torch.logaddexp(lt + math.log(b), ls + math.log(1 - b))
    return b * kl_from_logs(lt, lm) + (1 - b) * kl_from_logs(ls, lm)


@register_divergence(
    "taid",
    title="TAID (interpolated target)",
    symmetric=False,
    bucketed="approximate",  # the target interpolates logits, and a merged tail's logit is not a token's
    zero_at_match=False,
    reference_tau=REFERENCE_TAU,
    params=(
        Param("taid_t_start", 0.4, 0.0, 0.99, "t at the first step: the target's share of the teacher"),
        Param("taid_t_end", 1.0, 0.01, 1.0, "t at the end (1: the target is the teacher)"),
        Param("taid_alpha", 5e-4, 0.0, 1.0, "how fast t moves past its linear schedule while the loss falls"),
        Param("taid_beta", 0.99, 0.0, 0.999, "momentum of the loss's relative change"),
    ),
    description="Cross-entropy to a target that moves from the (detached) student toward the teacher during "
    "training, t from t_start to t_end, faster while the loss falls. Shing et al. 2025 (TAID).",
)
def taid_rows(
    lt: torch.Tensor,
    ls: torch.Tensor,
    taid_t_start: float = 0.4,
    taid_t_end: float = 1.0,
    taid_alpha: float = 5e-4,
    taid_beta: float = 0.99,
    taid_t: float | None = None,
) -> torch.Tensor:
    """−Σ p_t log p_s per row, p_t = softmax((1−t)·log p_s (detached) + t·log p_t): the cross-entropy form of the
    authors' TAID code (SakanaAI/TAID). `taid_t` is the current interpolation weight (the training loop's
    schedule sets it every micro-batch, see `kd_analysis.training.taid`); without it t = t_start. The schedule's
    other settings only travel with the term. Its stationary point is the teacher whatever t: the gradient vanishes where p_s = p_t."""
    t = float(taid_t_start if taid_t is None else taid_t)
    if not 0 <= t <= 1:
        raise KDLensError(f"TAID's t must be in [0, 1] (got {t})")
    target = torch.log_softmax((1 - t) * ls.detach() + t * lt, -1)
    p = target.exp()
    return -torch.where(p > 0, p * ls, 0.0).sum(-1)


def uld_rows(lt: torch.Tensor, ls: torch.Tensor) -> torch.Tensor:
    """Σ_i |sorted p_t − sorted p_s| per row, both sorted in decreasing order; rows of different widths (two
    vocabularies) are compared after padding the narrower with zero probabilities."""
    pt = lt.exp().sort(-1, descending=True).values
    ps = ls.exp().sort(-1, descending=True).values
    width = max(pt.shape[-1], ps.shape[-1])
    pt = torch.nn.functional.pad(pt, (0, width - pt.shape[-1]))
    ps = torch.nn.functional.pad(ps, (0, width - ps.shape[-1]))
    return (pt - ps).abs().sum(-1)


register_divergence(
    "uld",
    title="ULD (sorted probabilities)",
    symmetric=True,
    cross_vocab=True,
    bucketed="none",  # it ranks every token by probability: a merged tail is not a token
    reference_tau=REFERENCE_TAU,
    reduce="sequence",  # Boizard et al.'s code and TRL's GOLD: each sequence's mean, then the batch's
    description="Wasserstein-1 between teacher and student with tokens ranked by probability: blind to which "
    "token is which, so it works across tokenizers (cross-tokenizer pairs distil with it). Boizard et al. 2024.",
)(uld_rows)
