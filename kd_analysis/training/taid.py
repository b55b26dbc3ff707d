"""TAID's adaptive schedule for the interpolation weight t (Shing et al. 2025), as in the authors' code
(SakanaAI/TAID, `src/distil_losses/taid.py`, unchanged from its first commit 12c7833 to a062892 of 2025-10-07).

After every forward of a training micro-batch, with the TAID term's value L on it: the relative change
r = (L_prev − L) / L_prev feeds a momentum m ← β m + (1 − β) r; t moves to max(linear schedule, t + α σ(m) (1 − t)),
capped at t_end, where the linear schedule reads the optimiser steps taken so far (Lightning's global step). So t
never falls behind a linear ramp from t_start to t_end and runs ahead while the loss keeps falling; under gradient
accumulation it moves once per micro-batch, as there. The first call only records L. (Their validation steps call
the same loss and so move t too; kd-lens moves it on training batches only.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class TaidSchedule:
    t_start: float = 0.4
    t_end: float = 1.0
    alpha: float = 5e-4
    beta: float = 0.99
    t: float = -1.0  # set from t_start
    momentum: float = 0.0
    prev_loss: float | None = None

    def __post_init__(self) -> None:
        if self.t < 0:
            self.t = self.t_start

    @classmethod
    def from_params(cls, params: dict) -> TaidSchedule:
        return cls(
            t_start=float(params.get("taid_t_start", 0.4)),
            t_end=float(params.get("taid_t_end", 1.0)),
            alpha=float(params.get("taid_alpha", 5e-4)),
            beta=float(params.get("taid_beta", 0.99)),
        )

    def update(self, loss: float, step: int, total: int) -> float:
        """Advance t with the TAID term's value on one micro-batch of the optimiser step of 0-based index `step` of
        `total` (that code's global step when that loss was computed); the new t serves the next micro-batch.
        Returns it."""
        if self.prev_loss is None or not math.isfinite(self.prev_loss):
            self.prev_loss = loss
            return self.t
        relative = (self.prev_loss - loss) / (self.prev_loss + 1e-15)
        self.momentum = self.beta * self.momentum + (1 - self.beta) * relative
        linear = self.t_start + (self.t_end - self.t_start) * step / max(total, 1)
        self.t = min(self.t_end, max(linear, self.t + self.alpha * _sigmoid(self.momentum) * (1 - self.t)))
        self.prev_loss = loss
        return self.t


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))
