"""What distillation buys: the teacher's and the student's parameters, weight bytes on disk (safetensors, float32
as trained) and inference latency measured on this machine, in one job (kind "size_speed") whose result the
Summary page shows and a button re-measures.

Latency: the median of `repeats` timed forward passes over the same batch (after one warm-up pass), per model,
on the CPU threads torch uses here; the ratio is measured in the same process on the same examples."""

from __future__ import annotations

import json
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kd_analysis.runs.kinds import SIZE_SPEED

RESULT_FILE = "size_speed.json"
KIND = SIZE_SPEED


@dataclass
class ModelCost:
    role: str
    parameters: int
    disk_bytes: int
    latency_ms: float  # median per batch
    latency_spread_ms: tuple[float, float]  # fastest and slowest pass


@dataclass
class SizeSpeed:
    teacher: ModelCost
    student: ModelCost
    batch: int
    repeats: int
    machine: str
    threads: int
    measured: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SizeSpeed:
        return cls(**{**d, "teacher": ModelCost(**d["teacher"]), "student": ModelCost(**d["student"])})

    @property
    def speedup(self) -> float:
        return self.teacher.latency_ms / max(self.student.latency_ms, 1e-9)


def _disk_bytes(model) -> int:
    """Bytes of the model's weights saved as safetensors (what a user would ship)."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        return sum(p.stat().st_size for p in Path(tmp).glob("*.safetensors"))


def _latency(loaded, examples, repeats: int, stop: threading.Event | None) -> tuple[float, tuple[float, float]]:
    from kd_analysis.models.scoring import choice_scores, class_logits

    def once() -> None:
        if loaded.task == "multiple_choice":
            choice_scores(loaded, examples)
        else:
            class_logits(loaded, examples)

    once()  # warm-up: first-call allocations are not inference
    times = []
    for _ in range(repeats):
        if stop is not None and stop.is_set():
            raise InterruptedError
        t0 = time.perf_counter()
        once()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), (min(times), max(times))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(teacher, student, examples: Sequence, repeats: int = 20, stop: threading.Event | None = None) -> SizeSpeed:
    import torch

    costs = {}
    for role, loaded in (("teacher", teacher), ("student", student)):
        median, spread = _latency(loaded, examples, repeats, stop)
        costs[role] = ModelCost(role, loaded.info().parameters, _disk_bytes(loaded.model), median, spread)
    return SizeSpeed(
        costs["teacher"],
        costs["student"],
        len(examples),
        repeats,
        f"{_cpu_name()} ({platform.system()}, CPU)",
        torch.get_num_threads(),
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    )


def size_speed_config(
    teacher: dict[str, Any], student: dict[str, Any], data: str, *, batch: int = 16, repeats: int = 20, name: str = ""
) -> dict[str, Any]:
    return {
        "teacher": teacher,
        "student": student,
        "data": data,
        "batch": batch,
        "repeats": repeats,
        "name": name or "Size and speed: teacher vs student",
    }


def size_speed_job(run, stop: threading.Event, store=None) -> tuple[str, str | None, dict]:
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.specs import ModelSpec, StudentSpec
    from kd_analysis.models.students import derive_student

    cfg = run.config()
    teacher = load_model(ModelSpec.from_dict(cfg["teacher"]))
    student = derive_student(teacher, StudentSpec.from_dict(cfg["student"]))
    examples = load_dataset(cfg["data"]).examples[: int(cfg.get("batch", 16))]
    run.append_metrics({"step": 0, "total_steps": 2})
    try:
        result = measure(teacher, student, examples, int(cfg.get("repeats", 20)), stop)
    except InterruptedError:
        return "cancelled", "cancelled while timing", {}
    run.write_text(RESULT_FILE, json.dumps(result.to_dict(), indent=2))
    run.append_metrics({"step": 2, "total_steps": 2})
    run.log(
        f"teacher {result.teacher.latency_ms:.1f} ms, student {result.student.latency_ms:.1f} ms per batch of "
        f"{result.batch} ({result.speedup:.1f}× faster)"
    )
    return "finished", None, {}


def load_size_speed(run) -> SizeSpeed | None:
    path = Path(run.path) / RESULT_FILE
    if not path.exists():
        return None
    return SizeSpeed.from_dict(json.loads(path.read_text(encoding="utf-8")))
