"""Log a custom training loop as a kd-lens run: its metrics, and per-example records from kd-lens's evaluation or
from the outputs the loop already computed. The run then opens on the Runs, Compare and Error analysis pages like
one kd-lens trained.

    from kd_analysis import track

    with track.start("KD τ=2", teacher="my-teacher", student="my-student", settings={"lr": 1e-4}) as run:
        for step, batch in enumerate(loader, 1):
            loss = train_step(batch)
            run.log(step, loss=loss)
            if step % 200 == 0:
                run.evaluate(step, student, tokenizer, "dev.jsonl", teacher=teacher)
            if run.cancel_requested():  # Cancel pressed on the Runs page
                break

Only the main process writes (rank 0 under `accelerate launch` or torchrun); elsewhere every call does nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from kd_analysis.data.example import Example
from kd_analysis.integrations.evaluation import EvalSettings, Evaluation, evaluation_examples, write_evaluation
from kd_analysis.integrations.outside_run import OutsideRun


class TrackedRun(OutsideRun):
    """A run a custom loop writes (`start` makes one)."""

    def __init__(self, config: dict[str, Any], *, root: str | os.PathLike | None, run_id: str | None):
        super().__init__(config, root=root, run_id=run_id)
        self.teacher_eval: dict[str, Evaluation | None] = {}  # by data name: the teacher is evaluated once per data set

    def log(self, step: int, metrics: dict[str, Any] | None = None, total_steps: int | None = None, **named: Any):
        """Metrics at `step`, as a dict or as keywords (`run.log(10, loss=0.4, kl=0.1)`)."""
        super().log(step, {**(metrics or {}), **named}, total_steps=total_steps)

    def evaluate(
        self,
        step: int,
        model: Any,
        tokenizer: Any,
        examples: Sequence[Example] | str,
        *,
        teacher: Any = None,
        teacher_tokenizer: Any = None,
        data_name: str | None = None,
        task: str | None = None,
        limit: int | None = None,
        settings: EvalSettings | None = None,
        prompt: Callable[[Example], str] | None = None,
    ) -> dict[str, float]:
        """kd-lens's evaluation of `model` at `step`: metrics `eval_*` and per-example records, with the teacher's
        records and KL(teacher ‖ student) when a teacher is given. Returns the metrics."""
        from kd_analysis.models.loading import wrap_model

        if self.run is None:
            return {}
        found = evaluation_examples(examples, limit)
        data = data_name or (examples if isinstance(examples, str) else "examples given to track")
        settings = settings or EvalSettings()
        teacher_model = wrap_model(teacher, teacher_tokenizer or tokenizer, task=task) if teacher is not None else None
        ev, self.teacher_eval[data] = write_evaluation(
            self,
            step,
            wrap_model(model, tokenizer, task=task),
            found,
            settings,
            data,
            teacher=teacher_model,
            teacher_eval=self.teacher_eval.get(data),
            prompt=prompt,
        )
        return ev.metrics

    def log_outputs(
        self,
        step: int,
        examples: Sequence[Example],
        student_logits: Any,
        *,
        teacher_logits: Any = None,
        data_name: str = "examples given to track",
    ) -> int:
        """Records from scores the loop already has: [B, C] logits over the labels or choices of `examples` (the
        student's, and the teacher's for KL). Classification and multiple choice; for generation use `evaluate`."""
        import torch

        from kd_analysis.training.choice_records import choice_records

        if self.run is None:
            return 0
        written = 0
        if teacher_logits is not None:
            teacher = choice_records(examples, torch.as_tensor(teacher_logits))
            written += self.records(teacher, role="teacher", step=0, data=data_name)
            probs = {r.example_id: r.probs for r in teacher if r.probs is not None}
        else:
            probs = None
        student = choice_records(examples, torch.as_tensor(student_logits), probs)
        return written + self.records(student, role="student", step=step, data=data_name)


def start(
    name: str,
    *,
    teacher: str | None = None,
    student: str = "",
    data: str | None = None,
    settings: dict[str, Any] | None = None,
    root: str | os.PathLike | None = None,
    run_id: str | None = None,
) -> TrackedRun:
    """A new run in the run store (default: your kd-lens runs), running until `finish` (or the end of a `with`
    block). `teacher`, `student` and `data` name what the loop trains on; `settings` are its own (lr, τ, ...)."""
    config = {
        "name": name,
        "origin": {"kind": "track"},
        "teacher": {"source": teacher} if teacher else None,
        "student": {"kind": "model", "model": {"source": student}} if student else None,
        "data": data,
        "training": dict(settings or {}),
    }
    return TrackedRun(config, root=root, run_id=run_id)
