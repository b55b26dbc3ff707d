"""Intervals shared by every page and table: one implementation of each, checked against SciPy in the tests."""

from __future__ import annotations

import math

Z95 = 1.959964


def wilson_interval(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion p over n trials: honest at 0% or 100%, where the normal one
    collapses. (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion_interval(hits: int, n: int) -> tuple[float | None, float | None]:
    """The Wilson interval of hits / n; (None, None) when n is 0 (nothing to say)."""
    if n <= 0:
        return None, None
    return wilson_interval(hits / n, n)
