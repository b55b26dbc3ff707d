"""The one record every workflow reads: a question or sentence, optional choices, the gold answer."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Example:
    """One data point, whatever format it came from.

    `label` is the index of the gold choice (multiple choice) or the class id (classification); `answer` is the
    gold answer as text (the choice's text, the class name, or GSM8K's final number); `solution` keeps a worked
    solution when the source has one (GSM8K's reasoning before `####`).
    """

    id: str
    text: str
    choices: list[str] | None = None
    label: int | None = None
    answer: str | None = None
    solution: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        if self.choices:
            return "multiple_choice"
        if self.solution is not None or (self.label is None and self.answer is not None):
            return "generation"
        return "classification"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Example:
        return cls(**{k: d[k] for k in ("id", "text", "choices", "label", "answer", "solution", "meta") if k in d})
