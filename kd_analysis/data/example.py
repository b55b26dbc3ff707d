"""The one record every workflow reads: a question or sentence, optional choices, the gold answer."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

_GENERIC_NAME = re.compile(r"LABEL_\d+")
CLASS_NAMES = "class_names"  # Example.meta key: the data set's class names by id, for labelling every class


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


def class_label(index: int, name: str | None = None) -> str:
    """A class as pages name it: `1: positive` when the data (or a checkpoint's id2label) names it, `1` otherwise.
    A checkpoint's generic `LABEL_1` says nothing the index does not, and beside a file's gold `1` it read as
    a different answer."""
    name = (name or "").strip()
    if not name or name == str(index) or _GENERIC_NAME.fullmatch(name):
        return str(index)
    return f"{index}: {name}"


def class_names(pairs: Iterable[tuple[Any, Any]]) -> dict[int, str]:
    """Class names from (label id, name) pairs such as examples' (label, answer) or records' (gold, gold_name):
    an id named two ways is left unnamed rather than named wrongly."""
    seen: dict[int, set[str]] = {}
    for label, name in pairs:
        if isinstance(label, bool) or name is None or name != name:  # name != name: NaN from a frame
            continue
        try:
            index = int(label)
        except (TypeError, ValueError):
            continue
        if index == label and str(name).strip():
            seen.setdefault(index, set()).add(str(name).strip())
    return {i: next(iter(names)) for i, names in seen.items() if len(names) == 1}
