"""kd-lens's own evaluation of models another program trains: the same records and metrics a kd-lens run writes.

A Trainer callback, the logging API and the importer all evaluate through here, so a run trained elsewhere has
per-example records that equal what `train` (or `errors backfill`) would write for the same weights on the same
examples: the Error analysis page cannot tell them apart."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kd_analysis.data.example import Example
from kd_analysis.exceptions import KDLensError
from kd_analysis.models.loading import LoadedModel


@dataclass(frozen=True)
class EvalSettings:
    """How the examples are read and answered: as a kd-lens run's `batch_size`, `max_length`, `max_new_tokens`."""

    batch_size: int = 8
    max_length: int = 256
    max_new_tokens: int = 48


@dataclass
class Evaluation:
    """One model's metrics on the examples and its per-example records (`kd_analysis.runs.records`)."""

    metrics: dict[str, float]
    records: list = field(default_factory=list)

    def teacher_probs(self) -> dict[str, list[float]]:
        """By example id, the distribution over labels or choices: what a student's records compare with (KL)."""
        return {r.example_id: r.probs for r in self.records if r.probs is not None}


def evaluation_examples(examples: Sequence[Example] | str | None, limit: int | None = None) -> list[Example]:
    """The examples records are written on: kd-lens `Example`s, or a data set named as kd-lens names one (a file,
    `demo:NAME`, `hf:NAME`); the first `limit` of them."""
    if examples is None:
        return []
    if isinstance(examples, str):
        from kd_analysis.data.sources import load_dataset

        found = list(load_dataset(examples).examples)
    else:
        found = list(examples)
        bad = next((type(e).__name__ for e in found if not isinstance(e, Example)), None)
        if bad:
            raise KDLensError(
                f"eval_examples holds a {bad}: give kd-lens Examples (kd_analysis.data.example.Example) or a data set "
                "name such as a JSONL file"
            )
    return found[:limit] if limit else found


def evaluate_model(
    model: LoadedModel,
    examples: Sequence[Example],
    settings: EvalSettings,
    *,
    teacher: Evaluation | None = None,
    teacher_model: LoadedModel | None = None,
    prompt: Callable[[Example], str] | None = None,
) -> Evaluation:
    """`model`'s metrics and records on `examples`, as a kd-lens run evaluates: with the teacher's evaluation (or,
    for generation, the teacher model) the records carry KL(teacher ‖ model) per example."""
    from kd_analysis.training.evaluate import evaluate

    records: list[Any] = []
    metrics = evaluate(
        model,
        list(examples),
        settings,
        prompt=prompt,
        records=records,
        teacher_probs=teacher.teacher_probs() if teacher is not None else None,
        teacher_lm=(teacher_model, prompt) if teacher_model is not None else None,
    )
    return Evaluation(dict(metrics), records)


def write_evaluation(
    out: Any,
    step: int,
    student: LoadedModel,
    examples: Sequence[Example],
    settings: EvalSettings,
    data: str,
    *,
    teacher: LoadedModel | None = None,
    teacher_eval: Evaluation | None = None,
    prompt: Callable[[Example], str] | None = None,
) -> tuple[Evaluation, Evaluation | None]:
    """One evaluation of a run trained elsewhere, written into its folder (`out`, an OutsideRun): the teacher's
    records and `teacher_*` metrics at step 0 the first time (pass back `teacher_eval` later to reuse them), the
    student's records and `eval_*` metrics at `step`. Returns both evaluations."""
    if teacher is not None and teacher_eval is None:
        teacher_eval = evaluate_model(teacher, examples, settings, prompt=prompt)
        out.records(teacher_eval.records, role="teacher", step=0, data=data)
        out.log(0, {f"teacher_{k}": v for k, v in teacher_eval.metrics.items()})
    ev = evaluate_model(
        student,
        examples,
        settings,
        teacher=teacher_eval,
        teacher_model=teacher if teacher is not None and teacher.task == "causal_lm" else None,
        prompt=prompt,
    )
    out.records(ev.records, role="student", step=step, data=data)
    out.log(step, {"held_out": len(examples), **{f"eval_{k}": v for k, v in ev.metrics.items()}})
    return ev, teacher_eval
