"""A run is one config: TrainConfig round-trips through JSON and YAML, and says what is wrong in plain words."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from kd_analysis.errors import KDLensError
from kd_analysis.models.specs import ModelSpec, StudentSpec

OPTIMIZERS = ("adamw", "sgd")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class LossTerm:
    """One weighted term of the training loss: `ce` on gold labels, or any `LOSSES` entry against the teacher."""

    name: str
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"


@dataclass
class TrainConfig:
    teacher: ModelSpec
    student: StudentSpec = field(default_factory=StudentSpec)
    data: str = "demo:mcq"
    name: str = ""
    task: str | None = None  # None: the teacher's task
    losses: list[LossTerm] = field(default_factory=lambda: [LossTerm("ce", 1.0), LossTerm("kl", 1.0)])
    tau: float = 2.0
    tau_squared: bool = True  # Hinton's τ² factor on distillation terms
    optimizer: str = "adamw"
    lr: float = 5e-5
    weight_decay: float = 0.0
    steps: int = 100  # optimiser steps; `epochs` wins when set
    epochs: float | None = None
    batch_size: int = 8
    grad_accum: int = 1
    warmup_steps: int = 0
    max_length: int = 128
    eval_every: int = 25
    eval_size: int = 50  # examples held out for evaluation (taken after shuffling with `seed`)
    train_size: int | None = None
    teacher_topk: int = 64  # language models: cache this many teacher logits per token
    train_teacher: bool = False  # fine-tune the teacher itself (CE only): how reference teachers are made
    lora: LoraSettings | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    report_to: list[str] = field(default_factory=list)
    save_checkpoint: bool = True
    max_new_tokens: int = 48  # generation eval (GSM8K-style)

    # --- serialisation ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["teacher"] = self.teacher.to_dict()
        d["student"] = self.student.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        d.pop("kind", None)
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise KDLensError(f"unknown config keys: {', '.join(sorted(unknown))}")
        if "teacher" not in d:
            raise KDLensError("the config needs a teacher (e.g. teacher: {source: minilm})")
        teacher = d["teacher"]
        d["teacher"] = ModelSpec.from_dict({"source": teacher} if isinstance(teacher, str) else teacher)
        if "student" in d:
            d["student"] = StudentSpec.from_dict(d["student"] or {})
        if "losses" in d:
            d["losses"] = [LossTerm(**t) if isinstance(t, dict) else LossTerm(str(t)) for t in d["losses"]]
        if d.get("lora"):
            d["lora"] = LoraSettings(**d["lora"])
        try:
            cfg = cls(**d)
        except TypeError as exc:
            raise KDLensError(f"config: {exc}") from None
        cfg.validate()
        return cfg

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        p = Path(path)
        if not p.exists():
            raise KDLensError(f"config file not found: {p}")
        text = p.read_text(encoding="utf-8")
        try:
            if p.suffix.lower() in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as exc:  # yaml and json raise different types; the user needs the position
            raise KDLensError(f"{p.name} is not valid {'YAML' if p.suffix in ('.yaml', '.yml') else 'JSON'}: "
                              f"{str(exc).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise KDLensError(f"{p.name} must hold a mapping of settings")
        return cls.from_dict(data)

    # --- checks -------------------------------------------------------------------------------------------
    def validate(self) -> None:
        from kd_analysis.losses import LOSSES

        def positive(name: str, value: Any, integer: bool = False) -> None:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
            if not ok or (integer and int(value) != value):
                kind = "a positive whole number" if integer else "a positive number"
                raise KDLensError(f"{name} must be {kind} (got {value!r})")

        for name in ("steps", "batch_size", "grad_accum", "eval_every", "max_length", "eval_size"):
            positive(name, getattr(self, name), integer=True)
        for name in ("lr", "tau"):
            positive(name, getattr(self, name))
        if self.epochs is not None:
            positive("epochs", self.epochs)
        if self.optimizer not in OPTIMIZERS:
            raise KDLensError(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})")
        if self.precision not in PRECISIONS:
            raise KDLensError(f"precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})")
        if not self.losses:
            raise KDLensError("add at least one loss term (e.g. ce)")
        for term in self.losses:
            if term.name != "ce" and term.name not in LOSSES:
                raise KDLensError(f"unknown loss {term.name!r}; use ce or one of {', '.join(LOSSES)}")
            if not isinstance(term.weight, (int, float)) or term.weight < 0:
                raise KDLensError(f"loss weight for {term.name} must be a number ≥ 0 (got {term.weight!r})")
        if self.train_teacher and any(t.name != "ce" for t in self.losses):
            raise KDLensError("fine-tuning the teacher itself uses the ce term only")

    @property
    def kd_terms(self) -> list[LossTerm]:
        return [t for t in self.losses if t.name != "ce" and t.weight > 0]
