"""Heads across strategies: aligned difference maps and the heads that differ most.

Every student of a priming experiment shares one architecture, so head (l, h) of one strategy's student is the
same slot as head (l, h) of another's: maps subtract cell by cell. A difference counts as clear when it is
larger than the two 95% half-widths combined (sqrt(ci_a² + ci_b²)), a conservative reading of the intervals.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from kd_analysis.attention.stats import HeadStats
from kd_analysis.exceptions import KDLensError


@dataclass
class DiffMap:
    stat: str
    a: str
    b: str
    diff: np.ndarray  # [layers, heads] mean_a - mean_b
    clear: np.ndarray  # [layers, heads] bool: |diff| beyond the combined half-widths


def _check_same_shape(items: list[HeadStats]) -> None:
    shapes = {(s.layers, s.heads) for s in items}
    if len(shapes) > 1:
        raise KDLensError(
            "these models have different layer x head shapes, so their heads cannot be aligned: "
            + ", ".join(f"{s.label} {s.layers}x{s.heads}" for s in items)
        )


def diff_map(a: HeadStats, b: HeadStats, stat: str) -> DiffMap:
    _check_same_shape([a, b])
    diff = a.mean[stat] - b.mean[stat]
    half = np.sqrt(np.nan_to_num(a.ci[stat], nan=np.inf) ** 2 + np.nan_to_num(b.ci[stat], nan=np.inf) ** 2)
    with np.errstate(invalid="ignore"):
        clear = np.isfinite(diff) & (np.abs(diff) > half)
    return DiffMap(stat, a.label, b.label, diff, clear)


def rank_heads(stats: list[HeadStats], stat: str, top: int = 10) -> list[dict]:
    """Heads ordered by the variance of their mean `stat` across strategies (most strategy-dependent first)."""
    if len(stats) < 2:
        raise KDLensError("ranking heads by their variance across strategies needs at least two strategies")
    _check_same_shape(stats)
    cube = np.stack([s.mean[stat] for s in stats])  # [S, layers, heads]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        var = np.nanvar(cube, axis=0)
    order = [i for i in np.argsort(-np.nan_to_num(var, nan=-1.0), axis=None) if np.isfinite(var.flat[i])][:top]
    rows = []
    for flat in order:
        layer, head = np.unravel_index(flat, var.shape)
        rows.append(
            {
                "layer": int(layer),
                "head": int(head),
                "variance": float(var[layer, head]),
                **{s.label: float(s.mean[stat][layer, head]) for s in stats},
            }
        )
    return rows


def layer_profile(stats: HeadStats, stat: str) -> np.ndarray:
    """Mean over heads per layer (our summary of the per-head statistics)."""
    with warnings.catch_warnings():  # layer 0 has no previous layer: an all-nan row stays nan
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(stats.mean[stat], axis=1)
