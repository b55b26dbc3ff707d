"""Attention heads matched across teacher and student: how alike two heads attend, and the one-to-one pairing of
student heads with teacher heads that is most alike overall.

Two heads are compared on the same tokens (so only for pairs that tokenize the example alike): for each query
position, the Jensen-Shannon divergence between their attention rows, averaged over positions and examples.
Similarity is 1 − JS / ln 2, in [0, 1] (1: the same pattern). The pairing is the assignment that maximises the
summed similarity (Hungarian, scipy's `linear_sum_assignment`); a teacher head no student head comes within
`threshold` of is "lost"."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

LN2 = math.log(2.0)
ROWS = 32  # query positions compared per example: the last ones, nearest the answer (cost grows with their number)


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -torch.special.xlogy(p, p).sum(-1)  # 0·log 0 = 0


def js_matrix(student: list[torch.Tensor], teacher: list[torch.Tensor], rows: int = ROWS) -> torch.Tensor:
    """Mean JS divergence (nats) between every student head and every teacher head on one example: [S, T] over
    all heads of all layers (layer-major), from per-layer [heads, T, T] attentions over the same tokens."""
    # float32: a similarity is reported to 3 digits; identical rows still give JS 0 exactly (their mixture is
    # the row itself)
    s = torch.cat([a[:, -rows:, :] for a in student]).float()  # [S, R, T]
    t = torch.cat([a[:, -rows:, :] for a in teacher]).float()  # [Tt, R, T]
    hs, ht = _entropy(s), _entropy(t)  # [S, R], [Tt, R]
    out = torch.empty(s.shape[0], t.shape[0], dtype=torch.float64)
    for i in range(s.shape[0]):  # one student head at a time: memory [Tt, R, T], never [S, Tt, R, T]
        mixed = _entropy((s[i].unsqueeze(0) + t) / 2)  # [Tt, R]
        out[i] = (mixed - (hs[i].unsqueeze(0) + ht) / 2).clamp_min(0).mean(-1)
    return out


@dataclass
class HeadMatching:
    """The heads' similarity (accumulated over examples) and the one-to-one pairing."""

    student_heads: list[tuple[int, int]]  # (layer, head), layers counted from 1
    teacher_heads: list[tuple[int, int]]
    js_sum: torch.Tensor | None = None
    examples: int = 0
    skipped: list[str] = field(default_factory=list)

    def add(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> None:
        js = js_matrix(student, teacher)
        self.js_sum = js if self.js_sum is None else self.js_sum + js
        self.examples += 1

    def similarity(self) -> torch.Tensor:
        if self.js_sum is None:
            return torch.zeros(len(self.student_heads), len(self.teacher_heads), dtype=torch.float64)
        return 1.0 - (self.js_sum / self.examples) / LN2

    def pairs(self) -> list[dict]:
        """Each student head with its teacher head in the best one-to-one assignment, most alike first."""
        from scipy.optimize import linear_sum_assignment

        if not self.examples:
            return []
        sim = self.similarity()
        rows, cols = linear_sum_assignment(sim.numpy(), maximize=True)
        out = [
            {
                "student": list(self.student_heads[r]),
                "teacher": list(self.teacher_heads[c]),
                "similarity": float(sim[r, c]),
            }
            for r, c in zip(rows, cols)
        ]
        return sorted(out, key=lambda p: (p["student"][0], p["student"][1]))

    def lost(self, threshold: float) -> list[dict]:
        """Teacher heads that no student head resembles to at least `threshold`, with their best match."""
        if not self.examples:
            return []
        sim = self.similarity()
        best, at = sim.max(0)
        return [
            {"teacher": list(self.teacher_heads[j]), "best": float(best[j]), "student": list(self.student_heads[at[j]])}
            for j in range(len(self.teacher_heads))
            if best[j] < threshold
        ]


def head_names(attentions: list[torch.Tensor]) -> list[tuple[int, int]]:
    """(layer, head) of every head, layers counted from 1 (layer 0 is the embeddings, which has none)."""
    return [(layer + 1, h) for layer, a in enumerate(attentions) for h in range(a.shape[0])]
