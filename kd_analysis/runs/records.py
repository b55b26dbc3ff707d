"""Per-example records of an evaluation: what each model answered on each example, and how sure it was.

Aggregate accuracy cannot say *where* a student fails and the teacher did not; these records can. Every
evaluation of a run appends one JSON line per model and example to the run's `predictions.jsonl` (the teacher at
step 0, the student at its final evaluation, and at every evaluation when `records_every_eval` is set). Records
of different runs on the same data join on `example_id`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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
