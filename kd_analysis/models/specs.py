"""What a user asks for: a model source and how to load it, and how to derive a student from a teacher."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from kd_analysis.schema import parse, strict_schema

TASKS = ("classification", "multiple_choice", "causal_lm", "seq2seq")
STUDENT_KINDS = ("drop_layers", "shrink", "model")


@strict_schema
@dataclass(frozen=True)
class ModelSpec:
    """A model to load: a built-in name, a local folder, or a hub id. Hashable, so caches can key on it."""

    source: str
    task: str | None = None  # None: inferred from the checkpoint's architecture
    num_labels: int | None = None
    trust_remote_code: bool = False  # only ever True when the user ticked it
    revision: str | None = None
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16
    attentions: bool = False  # load with eager attention so output_attentions returns weights
    # load even when the memory estimate exceeds what is free. Not part of equality or key(): it does not change
    # the model, so a forced load and a plain one share a cache entry; saved only when True.
    force_memory: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.force_memory:
            d.pop("force_memory")
        return d

    def key(self) -> str:
        d = self.to_dict()
        d.pop("force_memory", None)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any, what: str = "model") -> ModelSpec:
        """Strictly typed (`kd_analysis.schema`): `trust_remote_code: "false"` is refused, never read as true."""
        return parse(cls, d, what)


@strict_schema
@dataclass(frozen=True)
class StudentSpec:
    """How to get a student: drop teacher layers, shrink the teacher's config (random init), or load a model."""

    kind: str = "drop_layers"
    keep_layers: tuple[int, ...] | None = None  # drop_layers: explicit indices; None = evenly spaced
    num_layers: int | None = None  # drop_layers / shrink: how many layers (default: a third, at least 1)
    hidden_size: int | None = None  # shrink: default half the teacher's
    num_heads: int | None = None  # shrink: default keeps the teacher's head count when it divides hidden_size
    model: ModelSpec | None = None  # kind == "model"
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["keep_layers"] = list(self.keep_layers) if self.keep_layers is not None else None
        d["model"] = self.model.to_dict() if self.model is not None else None
        return d

    def key(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any, what: str = "student") -> StudentSpec:
        return parse(cls, d, what)

    def describe(self) -> str:
        if self.kind == "drop_layers":
            if self.keep_layers is not None:
                return f"teacher with layers {list(self.keep_layers)} kept"
            return f"teacher with {self.num_layers or 'a third of its'} layers kept (evenly spaced)"
        if self.kind == "shrink":
            return "smaller random-init copy of the teacher's config"
        return f"model {self.model.source if self.model else '?'}"
