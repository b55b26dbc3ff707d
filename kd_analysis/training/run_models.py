"""Reload the student a finished run produced: a full checkpoint, or a LoRA adapter on the derived student."""

from __future__ import annotations

from pathlib import Path

from kd_analysis.exceptions import KDLensError
from kd_analysis.runs import Run, layout


def load_run_student(run: Run, device: str = "auto"):
    """The trained student of `run` (LoRA merged), ready for analysis."""
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.specs import ModelSpec
    from kd_analysis.models.students import derive_student
    from kd_analysis.training.config import TrainConfig

    cfg = TrainConfig.from_dict(run.config())
    folder = Path(run.path) / layout.CHECKPOINT
    if run.status().get("state") != "finished" or not folder.exists():
        raise KDLensError(
            f"run {run.run_id} has no saved student (it is {run.status().get('state')}; runs save one "
            "when they finish with save_checkpoint on)"
        )
    if not (folder / "adapter_config.json").exists():
        return load_model(ModelSpec(str(folder), task=cfg.task or cfg.teacher.task, device=device))
    from peft import PeftModel

    teacher = load_model(ModelSpec.from_dict({**cfg.teacher.to_dict(), "device": device}))
    student = derive_student(teacher, cfg.student)
    merged = PeftModel.from_pretrained(student.model.float(), str(folder)).merge_and_unload()
    merged.eval()
    from dataclasses import replace

    return replace(student, model=merged, notes=[*student.notes, f"LoRA adapter of run {run.run_id} merged"])
