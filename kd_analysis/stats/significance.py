"""The statistics the error analysis reports: the exact McNemar test, Benjamini–Hochberg adjustment, and a paired
interval for the accuracy gap.

The teacher's and the student's (or two students') answers are paired outcomes on the same examples, so an unpaired
test of two accuracies would be wrong: the exact McNemar test looks at the discordant pairs only. The slice finder
tests many slices at once, so its p-values are adjusted for the false discovery rate (Benjamini–Hochberg).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from kd_analysis.exceptions import KDLensError
from kd_analysis.stats.intervals import Z95, wilson_interval

MCNEMAR_TEST = "exact McNemar test (two-sided binomial test on the discordant pairs)"


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p on the discordant counts: min(1, 2·P(X ≤ min(b, c))), X ~ Binomial(b + c, ½).

    Exact integer arithmetic up to 20,000 discordant pairs (a few ms); a log-space sum above that."""
    if b < 0 or c < 0:
        raise KDLensError("discordant counts cannot be negative")
    n, k = int(b + c), int(min(b, c))
    if n == 0:
        return 1.0
    if n <= 20_000:
        term = total = 1  # C(n, 0)
        for i in range(k):
            term = term * (n - i) // (i + 1)
            total += term
        return min(1.0, total / (1 << (n - 1)))
    i = np.arange(k, dtype=float)
    log_terms = np.concatenate([[0.0], np.cumsum(np.log(n - i) - np.log(i + 1))])  # log C(n, j), j = 0..k
    top = log_terms.max()
    log_p = top + math.log(np.exp(log_terms - top).sum()) - (n - 1) * math.log(2)
    return min(1.0, math.exp(log_p))


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (false discovery rate), in the input's order: p_(i)·m/i made
    monotone from the largest down, capped at 1."""
    p = np.asarray(list(pvalues), dtype=float)
    if p.size == 0:
        return []
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise KDLensError("p-values must lie between 0 and 1")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()


def paired_difference_interval(
    both: int, first_only: int, second_only: int, neither: int, z: float = Z95
) -> tuple[float, float]:
    """95% interval of p1 − p2 for paired right/wrong outcomes (p1 = first model's accuracy, p2 = second's):
    Newcombe's (1998) method 10, the two marginal Wilson intervals combined with the pairs' correlation φ
    (continuity-corrected as he defines it: ad − bc shrunk by n/2 when positive, 0 in between). With φ = 0 it
    is the unpaired square-and-add interval; positively correlated answers (the usual case for a teacher and
    its student) narrow it."""
    counts = (both, first_only, second_only, neither)
    if any(c < 0 for c in counts):
        raise KDLensError("counts cannot be negative")
    a, b, c, d = (int(x) for x in counts)
    n = a + b + c + d
    if n == 0:
        return -1.0, 1.0
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(p1, n, z)
    l2, u2 = wilson_interval(p2, n, z)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    corrected = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0.0)
    phi = corrected / math.sqrt(margins) if margins > 0 else 0.0
    lower = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    upper = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    diff = p1 - p2
    return max(-1.0, diff - lower), min(1.0, diff + upper)
