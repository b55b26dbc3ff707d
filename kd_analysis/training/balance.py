"""The loss-balance monitor: how hard each loss term pulls on the student.

KD terms are often 100–1000× smaller (or larger) than cross-entropy, so one term can silently do nothing. Every
`balance_every` steps a run logs each term's gradient norm with respect to the student's output (the logits:
a backward pass through the loss alone, not the model) as `grad_norm_<term>`, beside its value `loss_<term>`.
Both are unweighted (a KD term's τ² factor included, as in its logged value); the advice multiplies in the
weights, because the weighted gradients are what the optimiser adds up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

PREFIX = "grad_norm_"  # a metrics record's key for a term's gradient norm: grad_norm_<term>
RATIO = 100.0  # warn when one weighted term's gradient is more than this many times another's


def term_grad_norms(terms: Mapping[str, torch.Tensor], output: torch.Tensor) -> dict[str, float]:
    """‖∂term/∂output‖ for each term that depends on `output` (the student's logits); terms that do not (e.g. a
    rationale head) are left out."""
    norms = {}
    for name, value in terms.items():
        if not value.requires_grad:
            continue
        (g,) = torch.autograd.grad(value, output, retain_graph=True, allow_unused=True)
        if g is not None:
            norms[name] = float(g.double().norm())
    return norms


@dataclass(frozen=True)
class Imbalance:
    strong: str
    weak: str
    ratio: float  # weighted gradient norm of `strong` over that of `weak`
    weak_weight: float  # the weight on `weak` that would make the two equal
    strong_weight: float  # or the weight on `strong` that would

    def message(self, weights: Mapping[str, float]) -> str:
        return (
            f"loss balance: {self.strong}'s gradient at the student's output is {self.ratio:,.0f}× {self.weak}'s "
            f"(weights {weights.get(self.strong, 1):g} and {weights.get(self.weak, 1):g} included), so {self.weak} "
            f"barely trains the student. A weight of {self.weak_weight:.3g} on {self.weak} (or {self.strong_weight:.3g} "
            f"on {self.strong}) would balance them."
        )


def imbalance(norms: Mapping[str, float], weights: Mapping[str, float], ratio: float = RATIO) -> Imbalance | None:
    """The largest gap between weighted gradient norms, when it exceeds `ratio` (None otherwise). Terms with a zero
    weight or no gradient this step are not compared."""
    pulls = {k: weights.get(k, 1.0) * n for k, n in norms.items() if weights.get(k, 1.0) > 0 and n > 0}
    if len(pulls) < 2:
        return None
    strong = max(pulls, key=lambda k: pulls[k])
    weak = min(pulls, key=lambda k: pulls[k])
    r = pulls[strong] / pulls[weak]
    if not r > ratio or not math.isfinite(r):
        return None
    return Imbalance(strong, weak, r, weights.get(weak, 1.0) * r, weights.get(strong, 1.0) / r)


def balance_series(records: Sequence[Mapping]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Per term, its logged values and gradient norms over steps: {"value": {term: [(step, v)]}, "grad": {...}}."""
    out: dict[str, dict[str, list[tuple[int, float]]]] = {"value": {}, "grad": {}}
    for r in records:
        if "step" not in r:
            continue
        for key, v in r.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            if key.startswith(PREFIX):
                out["grad"].setdefault(key[len(PREFIX) :], []).append((int(r["step"]), float(v)))
        for term in out["grad"]:
            v = r.get(f"loss_{term}")
            if isinstance(v, (int, float)) and f"{PREFIX}{term}" in r:
                out["value"].setdefault(term, []).append((int(r["step"]), float(v)))
    return out


def record_norms(record: Mapping) -> dict[str, float]:
    """The gradient norms one metrics record holds, by term (empty for an unmonitored step)."""
    return {k[len(PREFIX) :]: float(v) for k, v in record.items() if k.startswith(PREFIX)}


def last_monitored(records: Sequence[Mapping]) -> tuple[int, dict[str, float]] | None:
    """(step, norms) of the last monitored step of a run's records."""
    for r in reversed(records):
        norms = record_norms(r)
        if norms:
            return int(r.get("step", 0)), norms
    return None


def config_weights(config: Mapping) -> dict[str, float]:
    """Each loss term's weight in a saved run config (`losses: [{name, weight}, ...]`)."""
    out: dict[str, float] = {}
    for term in config.get("losses") or []:
        if isinstance(term, Mapping) and isinstance(term.get("weight"), (int, float)):
            out[str(term.get("name"))] = float(term["weight"])
    return out


def balance_report(records: Sequence[Mapping], config: Mapping) -> dict:
    """What the page and `runs balance` show for one run: the series, the weights, and the imbalance at the last
    monitored step (None when balanced or not monitored)."""
    weights = config_weights(config)
    series = balance_series(records)
    monitored = last_monitored(records)
    found = imbalance(monitored[1], weights) if monitored else None
    return {
        "monitored_steps": len({s for pts in series["grad"].values() for s, _ in pts}),
        "weights": weights,
        "last": {"step": monitored[0], "grad_norms": monitored[1]} if monitored else None,
        "imbalance": {"step": monitored[0], "message": found.message(weights)} if monitored and found else None,
        "series": series,
    }
