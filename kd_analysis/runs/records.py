"""Per-example records of an evaluation: what each model answered on each example, and how sure it was.

Aggregate accuracy cannot say *where* a student fails and the teacher did not; these records can. Every
evaluation of a run appends one JSON line per model and example to the run's `predictions.jsonl` (the teacher at
step 0, the student at its final evaluation, and at every evaluation when `records_every_eval` is set). Records
of different runs on the same data join on `example_id`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from kd_analysis.runs import layout

PREDICTIONS = layout.PREDICTIONS


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


def choice_records(
    examples: Sequence, logits: torch.Tensor, teacher_probs: dict[str, list[float]] | None = None
) -> list[ExampleRecord]:
    """Records for classification / multiple choice from the model's scores over labels or choices [B, C].

    With `teacher_probs` (the teacher's `probs` by example id, same labels), each record also carries
    KL(teacher ‖ model) and the teacher's entropy. Computed for the whole batch at once: records must cost
    next to nothing beside the evaluation itself (benchmarks/bench_records.py)."""
    logp = torch.log_softmax(logits.detach().float().cpu(), -1)
    probs = logp.exp()
    n_choices = logp.shape[-1]
    pred = probs.argmax(-1)
    gold = torch.tensor([ex.label if ex.label is not None and 0 <= ex.label < n_choices else -1 for ex in examples])
    safe = gold.clamp_min(0).unsqueeze(-1)
    p_gold, ce = probs.gather(-1, safe).squeeze(-1), -logp.gather(-1, safe).squeeze(-1)
    entropy = -(probs * logp).sum(-1)
    t_rows = [(teacher_probs or {}).get(str(ex.id)) for ex in examples]
    have = [t is not None and len(t) == n_choices for t in t_rows]
    kl = t_ent = None
    if any(have):
        tp = torch.tensor([t if ok else [1.0 / n_choices] * n_choices for t, ok in zip(t_rows, have)])
        tp = tp.clamp_min(0) / tp.clamp_min(0).sum(-1, keepdim=True)
        tlog = torch.where(tp > 0, tp.log(), torch.zeros_like(tp))
        # ≥ 0 in exact arithmetic; the teacher's probabilities are saved rounded, so a student that matches its
        # teacher can come out a hair below 0 (−1e-8), which a `kl >= 0` filter would then drop
        kl = (tp * (tlog - logp)).sum(-1).clamp_min(0).tolist()
        t_ent = (-(tp * tlog).sum(-1)).tolist()
    rounded = probs.mul(1e6).round().div(1e6).tolist()
    pred_l, gold_l, pg, ce_l, ent, pp = (
        pred.tolist(),
        gold.tolist(),
        p_gold.tolist(),
        ce.tolist(),
        entropy.tolist(),
        probs.max(-1).values.tolist(),
    )
    out = []
    for i, ex in enumerate(examples):
        g = ex.label
        ok = gold_l[i] >= 0
        out.append(
            ExampleRecord(
                example_id=str(ex.id),
                gold=g,
                prediction=pred_l[i],
                correct=(pred_l[i] == g) if g is not None else None,
                text=ex.text,
                choices=list(ex.choices) if ex.choices else None,
                probs=rounded[i],
                p_gold=pg[i] if ok else None,
                p_pred=pp[i],
                ce=_finite(ce_l[i]) if ok else None,
                entropy=_finite(ent[i]),
                kl=_finite(kl[i]) if kl is not None and have[i] else None,
                teacher_entropy=_finite(t_ent[i]) if t_ent is not None and have[i] else None,
                # a class's name travels with it (`negative`), so pages show "0: negative", not a bare id
                extra={"gold_name": ex.answer} if not ex.choices and ex.answer and g is not None else {},
            )
        )
    return out


def generation_records(
    examples: Sequence,
    texts: Sequence[str],
    parsed: Sequence[str],
    correct: Sequence[bool],
    nll: Sequence[float | None] | None = None,
) -> list[ExampleRecord]:
    """Records for generation (GSM8K-style): the generated text, the answer parsed from it, exact match, and
    the mean NLL per token of the gold answer when it was computed."""
    nll = list(nll) if nll is not None else [None] * len(examples)
    return [
        ExampleRecord(
            example_id=str(ex.id),
            gold=ex.answer,
            prediction=ans,
            correct=bool(ok),
            text=ex.text,
            generated=gen,
            parsed=ans,
            ce=n,
        )
        for ex, gen, ans, ok, n in zip(examples, texts, parsed, correct, nll)
    ]


def record_lines(records: Sequence[ExampleRecord], **common: Any) -> str:
    """The JSON lines for `records`, each carrying `common` (run_id, role, step, data, ...) first."""
    import json

    return "".join(json.dumps({**common, **r.to_dict()}, allow_nan=False) + "\n" for r in records)


def write_records(path: str | Path, records: Sequence[ExampleRecord], **common: Any) -> int:
    """Append the records as JSON lines in one write (`common`: run_id, role, step, data on every line)."""
    lines = record_lines(records, **common)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(lines)
    return len(records)


def with_text_tokens(records: Sequence[ExampleRecord], lengths: dict[str, int] | None) -> Sequence[ExampleRecord]:
    """Set each record's `text_tokens` from `lengths` (example id -> tokens of the text the student read)."""
    for r in records:
        r.text_tokens = (lengths or {}).get(r.example_id)
    return records


def save_run_records(
    folder: str | Path,
    records: Sequence[ExampleRecord],
    *,
    role: str,
    step: int,
    data: str,
    lengths: dict[str, int] | None = None,
) -> int:
    """Append one evaluation's records to the run folder's predictions.jsonl, as training writes them: shared
    by `train()` and the backfill so that both produce the same lines (run_id is the folder's name)."""
    folder = Path(folder)
    with_text_tokens(records, lengths)
    folder.mkdir(parents=True, exist_ok=True)
    return write_records(folder / PREDICTIONS, records, run_id=folder.name, role=role, step=step, data=data)
