"""How a batch-wise transport plan (SinKD's Sinkhorn plan) compares with the uniform plan and with a perfect
matching, in numbers and one sentence: what the Loss explorer and its plot say beside a plan."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kd_analysis.exceptions import KDLensError

UNIFORM_TOLERANCE = 1e-3  # a plan whose every entry is within 0.1% of 1/B² is uniform


@dataclass
class PlanSummary:
    batch: int
    uniform: bool  # every entry within `tolerance` (relative) of 1/B²
    max_deviation: float  # max |B²·P_ij − 1|
    diagonal_mass: float  # Σ_i P_ii: 1/B for the uniform plan, 1 when every example is matched to its own
    matched: int  # student examples whose largest entry is their own teacher example
    tolerance: float
    note: str


def summarise_plan(plan: Sequence[Sequence[float]], tolerance: float = UNIFORM_TOLERANCE) -> PlanSummary:
    """How a B×B transport plan (total mass 1) compares with the uniform plan 1/B² and with a perfect matching
    (all mass on the diagonal: each student example matched to its own teacher example), in one sentence."""
    rows = [[float(v) for v in r] for r in plan]
    b = len(rows)
    if b == 0 or any(len(r) != b for r in rows):
        raise KDLensError(f"a transport plan is square (got {b} rows of lengths {sorted({len(r) for r in rows})})")
    total = sum(map(sum, rows)) or 1.0
    rel = [[v / total * b * b for v in r] for r in rows]  # 1 = uniform
    dev = max(abs(v - 1.0) for r in rel for v in r)
    diag = sum(rows[i][i] for i in range(b)) / total
    matched = sum(1 for i, r in enumerate(rows) if r[i] >= max(r) and not (max(r) - min(r) <= tolerance * max(r)))
    uniform = dev <= tolerance
    if uniform:
        note = (
            f"This plan is uniform (every pair gets 1/B² = 1/{b * b}, within {tolerance:.1%}): the cost does "
            "not distinguish the examples, so the plan cannot match them."
        )
    else:
        note = (
            f"{diag:.0%} of the plan's mass is on the diagonal (uniform: {1 / b:.0%}, every example matched to "
            f"its own: 100%); {matched} of {b} student examples send most of their mass to their own teacher "
            "example."
        )
    return PlanSummary(
        batch=b, uniform=uniform, max_deviation=dev, diagonal_mass=diag, matched=matched, tolerance=tolerance, note=note
    )
