"""Per-example records of a classification or multiple-choice evaluation, from the model's scores over the labels
or choices. Kept beside the evaluation (it needs torch) so that the run store's record format does not."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from kd_analysis.runs.records import ExampleRecord


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
