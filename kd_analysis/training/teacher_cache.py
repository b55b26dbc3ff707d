"""Teacher outputs cached per example, so epochs after the first skip the teacher's forward pass.

Classification and multiple choice keep the full (small) logit vector; language models keep the top-k logits
and their token ids at each target position, which is what KD needs from a 49k-token vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from kd_analysis.data.example import Example


@dataclass
class TopK:
    values: torch.Tensor  # [T, k] teacher logits at the example's target positions
    indices: torch.Tensor  # [T, k]


@dataclass
class TeacherCache:
    topk: int = 64
    entries: dict[str, torch.Tensor | TopK] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def missing(self, examples: Sequence[Example]) -> list[Example]:
        return [ex for ex in examples if ex.id not in self.entries]

    def put_rows(self, examples: Sequence[Example], logits: torch.Tensor) -> None:
        for ex, row in zip(examples, logits.detach().float().cpu()):
            self.entries[ex.id] = row

    def put_lm(self, examples: Sequence[Example], logits: torch.Tensor, labels: torch.Tensor, width: int) -> None:
        k = min(self.topk, width)
        for b, ex in enumerate(examples):
            pos = (labels[b] != -100).nonzero().flatten()
            vals, idx = logits[b, pos, :width].detach().float().topk(k, dim=-1)
            self.entries[ex.id] = TopK(vals.cpu(), idx.cpu())

    def rows(self, examples: Sequence[Example], device) -> torch.Tensor:
        self.hits += len(examples)
        return torch.stack([self.entries[ex.id] for ex in examples]).to(device)

    def lm(self, examples: Sequence[Example], device) -> TopK:
        self.hits += len(examples)
        items = [self.entries[ex.id] for ex in examples]
        return TopK(torch.cat([i.values for i in items]).to(device), torch.cat([i.indices for i in items]).to(device))
