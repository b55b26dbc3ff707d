"""Import a finished (or stopped) transformers Trainer / TRL output folder as a kd-lens run.

What a Trainer leaves is read without running any of its code: `trainer_state.json` (the log history, the step
reached, the checkpoints) and the checkpoints' own `config.json`. `training_args.bin` is a pickle, so it is not
read. Per-example records come only from kd-lens's evaluation of a checkpoint, on request (`evaluate`): a folder
holds no per-example outputs to trust."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kd_analysis.exceptions import KDLensError
from kd_analysis.integrations.evaluation import EvalSettings, evaluation_examples, write_evaluation
from kd_analysis.integrations.outside_run import OutsideRun

STATE = "trainer_state.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class TrainerFolder:
    """What a Trainer output folder says about its training."""

    path: Path
    state: dict[str, Any]
    checkpoints: dict[int, Path]  # step -> folder

    @property
    def steps(self) -> int:
        return int(self.state.get("global_step") or 0)

    def weights(self, checkpoint: str | None = None) -> tuple[Path, int]:
        """The folder whose weights stand for the student (the one named, the final model in the folder, else
        the newest checkpoint) and the step it was saved at."""
        if checkpoint:
            chosen = Path(checkpoint)
            if not chosen.is_dir():
                raise KDLensError(f"--checkpoint {checkpoint}: no such folder")
            step = next((s for s, p in self.checkpoints.items() if p.resolve() == chosen.resolve()), self.steps)
            return chosen, step
        if _has_weights(self.path):
            return self.path, self.steps
        if not self.checkpoints:
            raise KDLensError(f"{self.path} holds no model weights and no checkpoint-N folder to evaluate")
        step = max(self.checkpoints)
        return self.checkpoints[step], step


def _has_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(
        folder.glob(pattern) for pattern in ("*.safetensors", "pytorch_model*.bin", "adapter_model.*")
    )


def read_trainer_folder(path: str | Path) -> TrainerFolder:
    """The folder's trainer state (top level, else the newest checkpoint's) and its checkpoints."""
    folder = Path(path)
    if not folder.is_dir():
        raise KDLensError(f"{path}: no such folder")
    checkpoints = {
        int(m.group(1)): p for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name)) is not None
    }
    candidates = [folder / STATE] + [checkpoints[s] / STATE for s in sorted(checkpoints, reverse=True)]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise KDLensError(
            f"{path} has no {STATE} (at the top or in a checkpoint-N folder): is it a Trainer's output_dir?"
        )
    try:
        state = json.loads(found.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KDLensError(f"{found} cannot be read as JSON ({exc})") from None
    if not isinstance(state, dict) or not isinstance(state.get("log_history", []), list):
        raise KDLensError(f"{found} is not a trainer state (no log_history list)")
    return TrainerFolder(folder, state, checkpoints)


def _logged_steps(state: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """The log history, one row per step (a Trainer logs training, evaluation and its summary separately)."""
    by_step: dict[int, dict[str, Any]] = {}
    for entry in state.get("log_history", []):
        if isinstance(entry, dict) and isinstance(entry.get("step"), int):
            by_step.setdefault(entry["step"], {}).update({k: v for k, v in entry.items() if k != "step"})
    return sorted(by_step.items())


def import_trainer_folder(
    path: str | Path,
    *,
    name: str = "",
    root: str | Path | None = None,
    evaluate: str | None = None,
    limit: int | None = None,
    checkpoint: str | None = None,
    teacher: str | None = None,
    task: str | None = None,
    settings: EvalSettings | None = None,
) -> str:
    """A new run in the store from a Trainer folder: its metrics, and with `evaluate` (a data set) kd-lens's
    records of the chosen checkpoint (and of `teacher`, with KL). Returns the run id."""
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.specs import ModelSpec

    folder = read_trainer_folder(path)
    weights, at_step = folder.weights(checkpoint) if evaluate or checkpoint else (None, folder.steps)
    examples = evaluation_examples(evaluate, limit) if evaluate else []
    if evaluate and not examples:
        raise KDLensError(f"--evaluate {evaluate}: no examples")
    settings = settings or EvalSettings()
    config = {
        "name": name or folder.path.resolve().name,
        "origin": {
            "kind": "import",
            "folder": str(folder.path.resolve()),
            "checkpoints": [str(p) for _, p in sorted(folder.checkpoints.items())],
        },
        "teacher": {"source": teacher} if teacher else None,
        "student": {"kind": "model", "model": {"source": str(weights)}} if weights else None,
        "data": evaluate,
        "task": task,
        "eval_size": len(examples),
        "training": {
            k: folder.state[k]
            for k in ("max_steps", "num_train_epochs", "train_batch_size", "logging_steps", "eval_steps", "save_steps")
            if k in folder.state
        },
    }
    with OutsideRun(config, root=root, live=False, main_process=True) as out:
        total = folder.state.get("max_steps") or None
        for step, row in _logged_steps(folder.state):
            out.log(step, row, total_steps=total)
        out.say(f"imported {len(folder.state.get('log_history', []))} log entries from {folder.path}")
        if evaluate and weights is not None:
            student = load_model(ModelSpec(str(weights), task=task))
            teacher_model = load_model(ModelSpec(teacher, task=task)) if teacher else None
            write_evaluation(out, at_step, student, examples, settings, evaluate, teacher=teacher_model)
            out.say(f"evaluated {weights} (step {at_step}) on {len(examples)} examples of {evaluate}")
    assert out.run_id is not None
    return out.run_id
