"""`KDLensCallback`: a transformers `Trainer` (and so every TRL trainer built on it: DistillationTrainer,
GKDTrainer, SFTTrainer) writes a kd-lens run while it trains.

The run folder gets the trainer's settings and both models' names and sizes, every logged metric, a heartbeat
(the Runs page shows it live; a killed process reads as failed), and at the start, at each evaluation and at the
end, kd-lens's own per-example records on `eval_examples` (prediction, correctness, p(gold), and with a teacher,
KL(teacher ‖ student) per example). Between evaluations it only appends one JSON line per log: training is not
slowed (`benchmarks/bench_callback.py` measures it). Under `accelerate launch` or torchrun only rank 0 writes
and evaluates; the records need the student's full weights on that process (DDP or one device, not FSDP or
DeepSpeed ZeRO-3: evaluate those afterwards with `runs import --evaluate`).
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Sequence
from typing import Any

from transformers import TrainerCallback

from kd_analysis.data.example import Example
from kd_analysis.integrations.evaluation import EvalSettings, Evaluation, evaluation_examples, write_evaluation
from kd_analysis.integrations.outside_run import OutsideRun
from kd_analysis.models.loading import task_of

# what a distillation trainer's arguments may say about its objective (TRL: beta, lmbda, temperature, seq_kd, ...)
KD_SETTINGS = (
    "beta",
    "lmbda",
    "temperature",
    "alpha",
    "seq_kd",
    "max_new_tokens",
    "max_completion_length",
    "top_p",
    "top_k",
    "loss_type",
)
TRAINING_SETTINGS = (
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
    "max_steps",
    "warmup_steps",
    "weight_decay",
    "lr_scheduler_type",
    "seed",
    "bf16",
    "fp16",
    "eval_strategy",
    "eval_steps",
)


def _plain(value: Any) -> Any:
    """A setting as JSON holds it (an enum by its value)."""
    value = getattr(value, "value", value)
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def _settings(args: Any, names: Sequence[str]) -> dict[str, Any]:
    return {n: _plain(getattr(args, n)) for n in names if hasattr(args, n)}


def _model_facts(model: Any) -> dict[str, Any]:
    if model is None:
        return {}
    return {
        "class": type(model).__name__,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "family": getattr(getattr(model, "config", None), "model_type", None),
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("transformers", "trl", "accelerate", "peft"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            continue
    return out


class KDLensCallback(TrainerCallback):
    """Write the training this Trainer does as a kd-lens run.

    `run_store`: the run store folder (default: your kd-lens runs). `eval_examples`: kd-lens `Example`s or a data
    set name (a JSONL/CSV file, `demo:NAME`, `hf:NAME`), the first `eval_limit` of them; None writes metrics only.
    `teacher`: the teacher model (or a name kd-lens loads), for its records and KL(teacher ‖ student). `task`:
    classification, multiple_choice, causal_lm or seq2seq when the model's class does not say. `prompt`: how a
    generation example is put to the model (default kd-lens's "Question: …\\nAnswer:")."""

    def __init__(
        self,
        run_store: str | os.PathLike | None = None,
        name: str = "",
        eval_examples: Sequence[Example] | str | None = None,
        teacher: Any = None,
        *,
        teacher_tokenizer: Any = None,
        eval_limit: int | None = None,
        data_name: str | None = None,
        task: str | None = None,
        settings: EvalSettings | None = None,
        prompt: Callable[[Example], str] | None = None,
        evaluate_at_start: bool = True,
        run_id: str | None = None,
    ):
        self.root, self.name, self.run_id_wanted = run_store, name, run_id
        self.examples = evaluation_examples(eval_examples, eval_limit)
        self.data = data_name or (
            eval_examples if isinstance(eval_examples, str) else f"{name or 'run'}: eval examples"
        )
        self.teacher_given, self.teacher_tokenizer = teacher, teacher_tokenizer
        self.task, self.prompt, self.at_start = task, prompt, evaluate_at_start
        self.settings = settings or EvalSettings()
        self.out: OutsideRun | None = None
        self.teacher_eval: Evaluation | None = None
        self._teacher: Any = None
        self._evaluated: set[int] = set()
        self._checkpoint: str | None = None

    # --- the run folder --------------------------------------------------------------------------------------
    @property
    def run_id(self) -> str | None:
        return self.out.run_id if self.out else None

    def _config(self, args: Any, model: Any) -> dict[str, Any]:
        teacher = self.teacher_given
        teacher_name = teacher if isinstance(teacher, str) else getattr(teacher, "name_or_path", None)
        student_name = getattr(model, "name_or_path", "") or type(model).__name__
        return {
            "name": self.name or os.path.basename(os.path.normpath(args.output_dir)),
            "origin": {"kind": "callback", "output_dir": str(args.output_dir), "versions": _versions()},
            "teacher": (
                {"source": teacher_name, **({} if isinstance(teacher, str) else {"in_memory": True})}
                if teacher_name
                else None
            ),
            "task": self.task or task_of(model),
            "student": {"kind": "model", "model": {"source": student_name}},
            "data": self.data if self.examples else None,
            "eval_size": len(self.examples),
            "training": _settings(args, TRAINING_SETTINGS),
            "distillation": _settings(args, KD_SETTINGS),
            "models": {"student": _model_facts(model), "teacher": _model_facts(teacher if teacher_name else None)},
            "batch_size": self.settings.batch_size,
            "max_length": self.settings.max_length,
            "max_new_tokens": self.settings.max_new_tokens,
        }

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        if not state.is_world_process_zero:
            return
        self.out = OutsideRun(self._config(args, model), root=self.root, run_id=self.run_id_wanted, main_process=True)
        atexit.register(self._exited)
        self.out.say(f"started by {type(self).__name__} in {args.output_dir}")
        if self.examples and self.at_start:
            self._evaluate(model, processing_class, state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.out is not None and logs:
            # the total on training lines only: a summary or evaluation line is not a step's progress
            self.out.log(state.global_step, logs, total_steps=state.max_steps if "loss" in logs else None)

    def on_step_end(self, args, state, control, **kwargs):
        if self.out is not None and self.out.cancel_requested():
            control.should_training_stop = True  # Cancel on the Runs page: the Trainer stops after this step
            self.out.say(f"cancel requested: stopping after step {state.global_step}")
        return control

    def on_evaluate(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self.out is not None and self.examples:
            self._evaluate(model, processing_class, state.global_step)

    def on_save(self, args, state, control, **kwargs):
        if self.out is not None:
            self._checkpoint = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self.out is None:
            return
        if self.examples:
            self._evaluate(model, processing_class, state.global_step)
        cancelled = self.out.cancel_requested(now=True)
        self.out.finish(
            "cancelled" if cancelled else "finished",
            reason=f"cancelled at step {state.global_step}" if cancelled else None,
            **({"checkpoint": self._checkpoint} if self._checkpoint else {}),
        )

    def _exited(self) -> None:
        """The process ends: a run the Trainer never finished (an exception) says so at once."""
        if self.out is not None:
            self.out.finish("failed", reason="the training process ended before the Trainer finished (see its output)")

    # --- evaluation ------------------------------------------------------------------------------------------
    def _evaluate(self, model: Any, tokenizer: Any, step: int) -> None:
        from kd_analysis.models.loading import wrap_model

        if step in self._evaluated or self.out is None:
            return
        self._evaluated.add(step)
        student = wrap_model(model, tokenizer, source=str(getattr(model, "name_or_path", "")), task=self.task)
        _, self.teacher_eval = write_evaluation(
            self.out,
            step,
            student,
            self.examples,
            self.settings,
            self.data,
            teacher=self._teacher_model(tokenizer),
            teacher_eval=self.teacher_eval,
            prompt=self.prompt,
        )

    def _teacher_model(self, tokenizer: Any):
        """The teacher as kd-lens evaluates it: the given model (with its own tokenizer, else the student's) or
        loaded by name; None without one."""
        if self._teacher is not None or self.teacher_given is None:
            return self._teacher
        from kd_analysis.models.loading import load_model, wrap_model
        from kd_analysis.models.specs import ModelSpec

        given = self.teacher_given
        if isinstance(given, str):
            self._teacher = load_model(ModelSpec(given, task=self.task))
        else:
            self._teacher = wrap_model(
                given,
                self.teacher_tokenizer or tokenizer,
                source=str(getattr(given, "name_or_path", "")),
                task=self.task,
            )
        return self._teacher
