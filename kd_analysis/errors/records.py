"""Per-example records of an evaluation: what each model answered on each example, and how sure it was.

Aggregate accuracy cannot say *where* a student fails and the teacher did not; these records can. Every
evaluation of a run appends one JSON line per model and example to the run's `predictions.jsonl` (the teacher at
step 0, the student at its final evaluation, and at every evaluation when `records_every_eval` is set). Records
of different runs on the same data join on `example_id`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

PREDICTIONS = "predictions.jsonl"


@dataclass
class ExampleRecord:
    example_id: str
    gold: int | str | None
    prediction: int | str | None
    correct: bool | None
    text: str = ""
    choices: list[str] | None = None
    probs: list[float] | None = None  # the model's distribution over the labels or choices
    p_gold: float | None = None
    p_pred: float | None = None
    ce: float | None = None  # −log p(gold); for generation, the mean NLL per token of the gold answer
    entropy: float | None = None  # of this model's distribution (nats)
    kl: float | None = None  # KL(teacher ‖ this model) over the same labels or choices (nats)
    teacher_entropy: float | None = None
    generated: str | None = None
    parsed: str | None = None
    text_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(out.pop("extra"))
        return out


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def choice_records(examples: Sequence, logits: torch.Tensor,
                   teacher_probs: dict[str, list[float]] | None = None) -> list[ExampleRecord]:
    """Records for classification / multiple choice from the model's scores over labels or choices [B, C].

    With `teacher_probs` (the teacher's `probs` by example id, same labels), each record also carries
    KL(teacher ‖ model) and the teacher's entropy."""
    logp = torch.log_softmax(logits.detach().float().cpu(), -1)
    probs = logp.exp()
    out = []
    for ex, lp, p in zip(examples, logp, probs):
        pred = int(p.argmax())
        gold = ex.label
        rec = ExampleRecord(example_id=str(ex.id), gold=gold, prediction=pred,
                            correct=(pred == gold) if gold is not None else None, text=ex.text,
                            choices=list(ex.choices) if ex.choices else None, probs=[round(float(v), 6) for v in p],
                            p_gold=float(p[gold]) if gold is not None and 0 <= gold < len(p) else None,
                            p_pred=float(p[pred]), entropy=_finite(float(-(p * lp).sum())))
        if rec.p_gold is not None:
            rec.ce = _finite(float(-lp[gold]))
        t = (teacher_probs or {}).get(str(ex.id))
        if t is not None and len(t) == len(p):
            tp = torch.tensor(t, dtype=torch.float32).clamp_min(0)
            tp = tp / tp.sum()
            mask = tp > 0
            rec.kl = _finite(float((tp[mask] * (tp[mask].log() - lp[mask])).sum()))
            rec.teacher_entropy = _finite(float(-(tp[mask] * tp[mask].log()).sum()))
        out.append(rec)
    return out


def generation_records(examples: Sequence, texts: Sequence[str], parsed: Sequence[str],
                       correct: Sequence[bool], nll: Sequence[float | None] | None = None) -> list[ExampleRecord]:
    """Records for generation (GSM8K-style): the generated text, the answer parsed from it, exact match, and
    the mean NLL per token of the gold answer when it was computed."""
    nll = list(nll) if nll is not None else [None] * len(examples)
    return [ExampleRecord(example_id=str(ex.id), gold=ex.answer, prediction=ans, correct=bool(ok), text=ex.text,
                          generated=gen, parsed=ans, ce=n)
            for ex, gen, ans, ok, n in zip(examples, texts, parsed, correct, nll)]


def write_records(path: str | Path, records: Sequence[ExampleRecord], **common: Any) -> int:
    """Append the records as JSON lines in one write (`common`: run_id, role, step, data on every line)."""
    import json

    lines = "".join(json.dumps({**common, **r.to_dict()}, allow_nan=False) + "\n" for r in records)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(lines)
    return len(records)
