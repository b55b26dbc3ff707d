"""The α-β plane of the AB-divergence (ABKD's objective): where the registry's other losses sit on it, and the toy
student fitted at any point of it, so a user can move through the plane and watch the fit change."""

from __future__ import annotations

from dataclasses import dataclass, replace

from kd_analysis.loss_explorer.toy import ToyConfig, ToyResult, fit_toy

# points of the plane that are losses of their own (Cichocki et al. 2011): exact, tested in tests/losses/test_objectives.py
NAMED_POINTS: dict[str, tuple[float, float]] = {
    "forward KL": (1.0, 0.0),
    "reverse KL": (0.0, 1.0),
    "4 × squared Hellinger": (0.5, 0.5),
    "½ Σ (log p_t − log p_s)²": (0.0, 0.0),
}
LIMIT = 2.0  # the registry's range for ab_alpha and ab_beta


@dataclass(frozen=True)
class PlaneFit:
    alpha: float
    beta: float
    result: ToyResult  # the toy with the α-β fit and, for reference, forward and reverse KL


def plane_grid(step: float = 0.1, high: float = LIMIT) -> list[tuple[float, float]]:
    """The clickable points of the plane: every (α, β) on a grid over [0, high]²."""
    n = round(high / step)
    return [(round(i * step, 10), round(j * step, 10)) for i in range(n + 1) for j in range(n + 1)]


def fit_at(alpha: float, beta: float, cfg: ToyConfig | None = None) -> PlaneFit:
    """The toy student under the α-β divergence at (α, β), beside forward and reverse KL (the plane's corners)."""
    from kd_analysis.exceptions import KDLensError

    if not (0 <= alpha <= LIMIT and 0 <= beta <= LIMIT):
        raise KDLensError(f"α and β must be in [0, {LIMIT:g}] (got {alpha:g}, {beta:g})")
    cfg = cfg or ToyConfig()
    cfg = replace(cfg, losses=("alpha_beta", "kl", "rkl"), params={**cfg.params, "ab_alpha": alpha, "ab_beta": beta})
    return PlaneFit(alpha, beta, fit_toy(cfg))
