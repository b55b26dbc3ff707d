"""Teacher outputs cached per example, so epochs after the first skip the teacher's forward pass.

Classification and multiple choice keep the full (small) logit vector. Language models keep, at each target
position, the teacher's top-k logits with their token ids, and at every temperature the run uses the logsumexp
of the whole row and of the tokens outside the k: that turns the k values into log-probabilities over the *full*
vocabulary and gives the tail bucket its exact mass, so KD can charge the student for the mass it puts outside
the teacher's top-k (`kd_analysis.losses.sparse_kd`), however small the teacher's tail.

Storage per target token: k × 8 bytes (a float32 value and an int32 id) + 8 bytes per temperature, i.e. 520 B at
k = 64 with one τ, against 4·V bytes for a full row (196 KB for SmolLM2's 49,152 tokens).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from kd_analysis.data.example import Example
from kd_analysis.exceptions import KDLensError
from kd_analysis.losses.checks import upcast
from kd_analysis.losses.sparse import rest_logsumexp


def bytes_per_token(k: int, temperatures: int = 1) -> int:
    """What the cache holds per target token for top-k (float32 values, int32 ids, two floats per τ)."""
    return 8 * k + 8 * temperatures


@dataclass
class TopK:
    logits: torch.Tensor  # [T, k] the teacher's raw logits at its top-k tokens, per target position
    indices: torch.Tensor  # [T, k] their token ids
    lse: dict[float, torch.Tensor]  # τ -> [T] logsumexp(logits_full / τ) over the teacher's whole vocabulary
    rest: dict[float, torch.Tensor]  # τ -> [T] the same over the tokens outside the k (−inf when none are left)

    def logprobs(self, tau: float) -> torch.Tensor:
        """log softmax(z / τ) of the full row, at the kept tokens."""
        return self.logits / tau - self._lse(tau)[:, None]

    def rest_logprob(self, tau: float) -> torch.Tensor:
        """[T] log of the probability at τ of every token outside the k together (the tail bucket)."""
        return self.rest[tau] - self._lse(tau)

    def _lse(self, tau: float) -> torch.Tensor:
        if tau not in self.lse:
            raise KDLensError(f"the teacher cache has no normaliser for τ = {tau} (it holds {sorted(self.lse)})")
        return self.lse[tau]


BUDGET_MB = 2048  # the most a run's language-model teacher cache may hold; past it the teacher runs again


@dataclass
class TeacherCache:
    topk: int | None = 64  # None: language models keep nothing (the loop runs the teacher every step)
    temperatures: tuple[float, ...] = (1.0,)
    entries: dict[str, torch.Tensor | TopK] = field(default_factory=dict)
    hits: int = 0  # examples whose teacher outputs were read from the cache (not computed in that step)
    misses: int = 0  # examples the teacher ran on
    budget_bytes: int = BUDGET_MB * 2**20
    held_bytes: int = 0
    over_budget: bool = False  # some examples were not kept: their teacher outputs are computed again
    keep: bool = True  # False: language-model rows for texts never seen twice (on-policy samples) are not kept

    def missing(self, examples: Sequence[Example]) -> list[Example]:
        return [ex for ex in examples if ex.id not in self.entries]

    def put_rows(self, examples: Sequence[Example], logits: torch.Tensor) -> None:
        for ex, row in zip(examples, logits.detach().float().cpu()):
            self.entries[ex.id] = row

    def put_lm(
        self, examples: Sequence[Example], logits: torch.Tensor, labels: torch.Tensor, width: int | None
    ) -> dict[str, TopK]:
        """Each example's target positions: top-k among the first `width` (shared) columns, normalised over the
        teacher's full vocabulary at every run temperature. Kept while the cache is within its budget; returned
        either way. A k that covers every column keeps the rows as they are (no sort)."""
        assert self.topk is not None
        width = width or logits.shape[-1]
        k = min(self.topk, width)
        made = {}
        for b, ex in enumerate(examples):
            pos = (labels[b] != -100).nonzero().flatten()
            rows = upcast(logits[b, pos].detach())  # float32, or float64 for a float64 teacher
            if k == width:  # every column: nothing to choose, so no sort
                vals, idx = rows[:, :width], torch.arange(width, device=rows.device).expand(len(pos), width)
            else:
                vals, idx = rows[:, :width].topk(k, dim=-1)
            lse = {t: torch.logsumexp(rows / t, -1).cpu() for t in self.temperatures}
            rest = {t: rest_logsumexp(rows, idx, t).cpu() for t in self.temperatures}
            made[ex.id] = entry = TopK(vals.cpu(), idx.to(torch.int32).cpu(), lse, rest)
            size = 8 * vals.numel() + 8 * len(pos) * len(lse)
            if not self.keep:
                continue
            if self.held_bytes + size <= self.budget_bytes:
                self.entries[ex.id] = entry
                self.held_bytes += size
            else:
                self.over_budget = True
        return made

    def rows(self, examples: Sequence[Example], device) -> torch.Tensor:
        return torch.stack([self.entries[ex.id] for ex in examples]).to(device)

    def lm(self, examples: Sequence[Example], device, fresh: dict[str, TopK] | None = None) -> TopK:
        """The batch's cached rows; `fresh` supplies those just computed and not kept (over the budget)."""
        fresh = fresh or {}
        items = [fresh[ex.id] if ex.id in fresh else self.entries[ex.id] for ex in examples]
        return TopK(
            torch.cat([i.logits for i in items]).to(device),
            torch.cat([i.indices for i in items]).to(device).long(),
            {t: torch.cat([i.lse[t] for i in items]).to(device) for t in self.temperatures},
            {t: torch.cat([i.rest[t] for i in items]).to(device) for t in self.temperatures},
        )


def run_temperatures(taus: Iterable[float]) -> tuple[float, ...]:
    return tuple(sorted({float(t) for t in taus}))
