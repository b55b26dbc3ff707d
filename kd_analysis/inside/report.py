"""All three inside views of a teacher/student pair in one pass over the examples, streaming: each example is
read by both models, its contribution added, and its states and attentions dropped (memory holds one CKA
minibatch of one vector per layer, never every layer's attention for every example)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from kd_analysis.data.example import Example
from kd_analysis.exceptions import KDLensError
from kd_analysis.inside.cka import MIN_BATCH, MinibatchCKA
from kd_analysis.inside.heads import HeadMatching, head_names
from kd_analysis.inside.reading import Reading, read_example
from kd_analysis.stats.paired import t_interval

CKA_BATCH = 16  # examples per CKA minibatch
LOST_BELOW = 0.5  # a teacher head no student head resembles this much is listed as lost


@dataclass
class LensSums:
    """One model's logit lens summed over examples, per layer."""

    kl_to_final: list[float] = field(default_factory=list)
    gold_prob: list[list[float]] = field(default_factory=list)
    gold_rank: list[list[int]] = field(default_factory=list)

    def add(self, reading: Reading) -> None:
        final = reading.lens[-1]
        if not self.kl_to_final:
            self.kl_to_final = [0.0] * len(reading.lens)
            self.gold_prob = [[] for _ in reading.lens]
            self.gold_rank = [[] for _ in reading.lens]
        for i, layer in enumerate(reading.lens):
            # KL(final ‖ layer): how far this layer's reading is from the answer the model gives
            self.kl_to_final[i] += float((final.exp() * (final - layer)).sum().clamp_min(0))
            if reading.gold is not None and 0 <= reading.gold < layer.shape[-1]:
                self.gold_prob[i].append(float(layer[reading.gold].exp()))
                self.gold_rank[i].append(int((layer > layer[reading.gold]).sum()) + 1)

    def rows(self, examples: int) -> list[dict[str, Any]]:
        last = max(len(self.kl_to_final) - 1, 1)
        out = []
        for i, kl in enumerate(self.kl_to_final):
            probs = self.gold_prob[i]
            interval = t_interval(probs) if len(probs) >= 2 else None
            out.append(
                {
                    "layer": i,
                    "depth": i / last,
                    "kl_to_final": kl / max(examples, 1),
                    "gold_prob": statistics.fmean(probs) if probs else None,
                    "gold_prob_interval": list(interval) if interval else None,
                    "gold_rank": statistics.median(self.gold_rank[i]) if self.gold_rank[i] else None,
                    "n": len(probs),
                }
            )
        return out


@dataclass
class InsideReport:
    examples: int
    cka: dict[str, Any]
    heads: dict[str, Any]
    lens: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"examples": self.examples, "cka": self.cka, "heads": self.heads, "lens": self.lens}


def inside_report(
    teacher: Any,
    student: Any,
    examples: Sequence[Example],
    *,
    threshold: float = LOST_BELOW,
    max_length: int = 128,
    batch: int = CKA_BATCH,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> InsideReport:
    """The logit lens of both models side by side, linear CKA between every teacher and student layer, and the
    student's heads matched to the teacher's, over `examples` (teacher and student: LoadedModels)."""
    if not examples:
        raise KDLensError("the inside views need at least one example")
    cka: MinibatchCKA | None = None
    heads: HeadMatching | None = None
    lens_t, lens_s = LensSums(), LensSums()
    cross_sum: torch.Tensor | None = None
    buffer: tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]] | None = None
    compare_heads, note = True, None
    done = 0
    for ex in examples:
        if should_stop():
            break
        rt = read_example(teacher, ex, attentions=compare_heads, max_length=max_length)
        rs = read_example(student, ex, attentions=compare_heads, max_length=max_length)
        if compare_heads and rt.tokens != rs.tokens:
            compare_heads, heads = False, None
            note = (
                "the teacher and the student tokenize the examples differently, so their attention patterns are "
                "not over the same tokens and heads cannot be compared"
            )
        if compare_heads and rt.attentions is not None and rs.attentions is not None:
            if heads is None:
                heads = HeadMatching(head_names(rs.attentions), head_names(rt.attentions))
            heads.add(rs.attentions, rt.attentions)
        if cka is None:
            cka = MinibatchCKA(len(rt.states), len(rs.states))
            buffer = ([[] for _ in rt.states], [[] for _ in rs.states])
        assert buffer is not None
        for layer, state in enumerate(rt.states):
            buffer[0][layer].append(state)
        for layer, state in enumerate(rs.states):
            buffer[1][layer].append(state)
        if len(buffer[0][0]) >= batch:
            cka.update([torch.stack(x) for x in buffer[0]], [torch.stack(x) for x in buffer[1]])
            buffer = ([[] for _ in rt.states], [[] for _ in rs.states])
        lens_t.add(rt)
        lens_s.add(rs)
        if rt.lens[0].shape == rs.lens[0].shape:  # the same outputs: each teacher layer's reading vs each student's
            t, s = torch.stack(rt.lens).double(), torch.stack(rs.lens).double()
            kl = (t.exp() * t).sum(-1, keepdim=True) - t.exp() @ s.T
            cross_sum = kl if cross_sum is None else cross_sum + kl
        done += 1
        if progress:
            progress(done, len(examples))
    if cka is not None and buffer is not None and len(buffer[0][0]) >= MIN_BATCH:
        cka.update([torch.stack(x) for x in buffer[0]], [torch.stack(x) for x in buffer[1]])
    assert cka is not None
    return InsideReport(
        examples=done,
        cka={
            "teacher_layers": list(range(len(cka.teacher_self))),
            "student_layers": list(range(len(cka.student_self))),
            "matrix": cka.matrix(),
            "examples": cka.examples,
        },
        heads={
            "pairs": heads.pairs() if heads else [],
            "lost": heads.lost(threshold) if heads else [],
            "threshold": threshold,
            "note": note,
        },
        lens={
            "teacher": lens_t.rows(done),
            "student": lens_s.rows(done),
            "cross_kl": (cross_sum / done).clamp_min(0).tolist() if cross_sum is not None else None,
        },
    )
