"""Paired comparison of two methods evaluated on the same examples, over one or several seeds each.

Input: for each method a matrix of 0/1 correctness, one row per seed (a training run), one column per eval
example, the columns of both matrices being the same examples in the same order. Three numbers come out:

- the difference of mean accuracy (A − B);
- a 95% interval from a **paired bootstrap over examples and seeds**: each replicate draws the examples with
  replacement (the same draw for A and B, which keeps the pairing) and, independently for A and B, their seeds
  with replacement, so the interval carries both the example and the seed-to-seed variation;
- a p-value from an **exact paired sign-flip test over examples**: per example, the seed-averaged difference
  d_i = mean_s A[s, i] − mean_s B[s, i]; under "no difference" each d_i is as likely to have either sign, and
  the exact null distribution of Σ d_i is built by convolution (no sampling). With one seed each it is the exact
  McNemar test. Examples are the unit, as in McNemar's test: the seeds' own variation enters the interval, not
  the p-value, which is why both are shown.

Per seed pair (seed k of A with seed k of B) the exact McNemar p is reported too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from math import gcd
from typing import Any

import numpy as np

from kd_analysis.stats.significance import mcnemar_exact_p

BOOTSTRAP_REPLICATES = 10_000
INTERVAL_METHOD = "paired bootstrap over examples and seeds (10,000 resamples, percentile)"
TEST_NAME = "exact paired sign-flip test over examples (seeds averaged per example)"


@dataclass
class PairedComparison:
    a_mean: float
    b_mean: float
    difference: float  # A's mean accuracy − B's
    interval: tuple[float, float]
    p: float
    n: int  # eval examples both sides share
    seeds: tuple[int, int]  # runs per side
    per_seed_p: list[float] = field(default_factory=list)  # exact McNemar, seed k of A against seed k of B
    test: str = TEST_NAME
    interval_method: str = INTERVAL_METHOD

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["interval"] = list(self.interval)
        return d

    @property
    def distinguishable(self) -> bool:
        """The interval excludes 0 and p < 0.05: only then do the words name a winner."""
        return self.p < 0.05 and (self.interval[0] > 0 or self.interval[1] < 0)


def _as_matrix(x: Any) -> np.ndarray:
    m = np.asarray(x, dtype=float)
    if m.ndim == 1:
        m = m[None, :]
    if m.ndim != 2 or m.shape[1] == 0 or m.shape[0] == 0:
        raise ValueError("each side needs at least one run and one example")
    if not np.isin(m, (0.0, 1.0)).all():
        raise ValueError("correctness must be 0 or 1")
    return m


def sign_flip_p(differences: np.ndarray, scale: int) -> float:
    """Exact two-sided p of Σ d_i under independent random signs, where every d_i·scale is an integer.

    The null distribution of Σ s_i·|d_i| is the convolution of n two-point distributions; it is computed on the
    integer grid of |d_i|·scale, so the test has no sampling error."""
    ints = np.rint(np.abs(differences) * scale).astype(np.int64)
    ints = ints[ints > 0]  # zero differences flip to themselves
    observed = int(np.rint(np.sum(differences) * scale))
    if ints.size == 0:
        return 1.0
    total = int(ints.sum())
    dist = np.zeros(2 * total + 1)
    dist[total] = 1.0  # index = sum + total
    for v in ints:
        dist = 0.5 * (np.roll(dist, v) + np.roll(dist, -v))  # no wrap-around: |sum| never exceeds total
    sums = np.arange(-total, total + 1)
    return float(min(1.0, dist[np.abs(sums) >= abs(observed)].sum()))


def _bootstrap(
    a: np.ndarray, b: np.ndarray, reps: int, rng: np.random.Generator, teacher: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Replicated means of A, B (and the teacher) on the same example draws, seeds drawn per side.

    An example draw with replacement is its count vector (how often each example was drawn), so every seed's mean
    over the drawn examples is one matrix product; the drawn seeds are then averaged. Chunked to bound memory."""
    n = a.shape[1]
    out_a: list[np.ndarray] = []
    out_b: list[np.ndarray] = []
    out_t: list[np.ndarray] = []
    chunk = max(1, 4_000_000 // n)
    done = 0
    while done < reps:
        r = min(chunk, reps - done)
        draws = rng.integers(0, n, size=(r, n)) + (np.arange(r) * n)[:, None]
        counts = np.bincount(draws.ravel(), minlength=r * n).reshape(r, n).astype(float)  # r × n
        for m, out in ((a, out_a), (b, out_b)):
            per_seed = counts @ m.T / n  # r × seeds: each seed's accuracy on the drawn examples
            drawn = rng.integers(0, m.shape[0], size=(r, m.shape[0]))
            out.append(np.take_along_axis(per_seed, drawn, axis=1).mean(axis=1))
        if teacher is not None:
            out_t.append(counts @ teacher / n)
        done += r
    return np.concatenate(out_a), np.concatenate(out_b), (np.concatenate(out_t) if teacher is not None else None)


def compare_paired(a: Any, b: Any, *, reps: int = BOOTSTRAP_REPLICATES, seed: int = 0) -> PairedComparison:
    """A against B on the same examples (columns aligned); rows are seeds."""
    a, b = _as_matrix(a), _as_matrix(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"A has {a.shape[1]} examples and B {b.shape[1]}: compare them on the same examples")
    d = a.mean(axis=0) - b.mean(axis=0)
    scale = a.shape[0] * b.shape[0] // gcd(a.shape[0], b.shape[0])  # every d_i is a multiple of 1/lcm(S_a, S_b)
    p = sign_flip_p(d, scale)
    ra, rb, _ = _bootstrap(a, b, reps, np.random.default_rng(seed))
    lo, hi = np.percentile(ra - rb, [2.5, 97.5])
    per_seed = []
    for sa, sb in zip(a, b):
        per_seed.append(mcnemar_exact_p(int(((sa == 1) & (sb == 0)).sum()), int(((sa == 0) & (sb == 1)).sum())))
    return PairedComparison(
        float(a.mean()),
        float(b.mean()),
        float(a.mean() - b.mean()),
        (float(lo), float(hi)),
        p,
        a.shape[1],
        (a.shape[0], b.shape[0]),
        per_seed,
    )


@dataclass
class GapClosed:
    """Share of the teacher–student gap a KD student closes over its CE-only twin: (KD − CE) / (teacher − CE)."""

    value: float | None
    interval: tuple[float, float] | None
    teacher: float
    ce: float
    kd: float
    n: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["interval"] = list(self.interval) if self.interval else None
        return d


MIN_GAP = 0.02  # below a 2-point teacher−CE gap the ratio is noise over noise


def gap_closed(teacher: Any, kd: Any, ce: Any, *, reps: int = BOOTSTRAP_REPLICATES, seed: int = 0) -> GapClosed:
    """The share of the gap closed, with a bootstrap interval on the same paired draws as `compare_paired`.
    `teacher` is the teacher's correctness on the same examples (one row: the teacher is not retrained)."""
    t = _as_matrix(teacher)[0]
    kd_m, ce_m = _as_matrix(kd), _as_matrix(ce)
    if not (t.size == kd_m.shape[1] == ce_m.shape[1]):
        raise ValueError("teacher, KD and CE runs must be scored on the same examples")
    t_acc, kd_acc, ce_acc = float(t.mean()), float(kd_m.mean()), float(ce_m.mean())
    gap = t_acc - ce_acc
    if gap < MIN_GAP:
        return GapClosed(
            None,
            None,
            t_acc,
            ce_acc,
            kd_acc,
            t.size,
            f"undefined: the teacher is only {gap * 100:+.1f} points above CE-only, so there is no gap to close",
        )
    rk, rc, rt = _bootstrap(kd_m, ce_m, reps, np.random.default_rng(seed), teacher=t)
    den = rt - rc
    ok = den > 1e-9
    ratios = (rk[ok] - rc[ok]) / den[ok]
    lo, hi = np.percentile(ratios, [2.5, 97.5]) if ratios.size else (np.nan, np.nan)
    note = (
        ""
        if ok.mean() > 0.975
        else (
            f"the teacher was not above CE-only in {1 - ok.mean():.0%} of the "
            "resamples: the interval is wide for that reason"
        )
    )
    return GapClosed((kd_acc - ce_acc) / gap, (float(lo), float(hi)), t_acc, ce_acc, kd_acc, t.size, note)


def describe(c: PairedComparison, a_name: str, b_name: str) -> str:
    """The sentence beside the numbers: who wins by how much, or that they cannot be told apart."""
    runs = (
        f"{c.seeds[0]} seed{'s' * (c.seeds[0] != 1)}"
        if c.seeds[0] == c.seeds[1]
        else f"{c.seeds[0]} and {c.seeds[1]} seeds"
    )
    scope = f"{runs} × {c.n} examples"
    lo, hi = c.interval
    if not c.distinguishable:
        nums = f"95% interval {lo * 100:+.1f} to {hi * 100:+.1f}, {p_text(c.p)}, {scope}"
        return f"{a_name} and {b_name} are not distinguishable: {c.difference * 100:+.1f} points ({nums})."
    if c.difference > 0:
        first, second, diff = a_name, b_name, c.difference
    else:  # B wins: say it of B, with B − A's interval
        first, second, diff, lo, hi = b_name, a_name, -c.difference, -hi, -lo
    nums = f"95% interval {lo * 100:+.1f} to {hi * 100:+.1f}, {p_text(c.p)}, {scope}"
    return f"{first} beats {second} by {diff * 100:.1f} points ({nums})."


def p_text(p: float) -> str:
    """ "p = 0.006", or "p < 0.001" below what the number of decimals shows."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def t_interval(values: Any) -> tuple[float, float] | None:
    """95% Student t interval of a mean over seeds; None for a single value (no spread to speak of)."""
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return None
    from scipy.special import stdtrit  # Student t quantile; scipy.stats would cost a second to import on a page

    half = float(stdtrit(v.size - 1, 0.975) * v.std(ddof=1) / np.sqrt(v.size))
    return float(v.mean() - half), float(v.mean() + half)


__all__ = ["GapClosed", "PairedComparison", "compare_paired", "describe", "gap_closed", "sign_flip_p", "t_interval"]
