"""Known data set formats, recognised from their columns, and turned into Examples.

A registry: each format is one function from a row dict to an Example, plus the columns that identify it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kd_analysis.data.example import Example
from kd_analysis.exceptions import DataError

GOLD_MARK = "####"
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


@dataclass(frozen=True)
class Format:
    name: str
    required: tuple[str, ...]
    description: str
    convert: Callable[[dict[str, Any], int], Example]
    check: Callable[[list[dict[str, Any]]], bool] = field(default=lambda rows: True)


FORMATS: dict[str, Format] = {}


def register_format(
    name: str, required: tuple[str, ...], description: str, check: Callable[[list[dict[str, Any]]], bool] | None = None
):
    def deco(fn: Callable[[dict[str, Any], int], Example]):
        FORMATS[name] = Format(name, required, description, fn, check or (lambda rows: True))
        return fn

    return deco


def gold_number(answer: str) -> str | None:
    """The gold number after GSM8K's `####`, without thousands separators; None when there is none."""
    if GOLD_MARK not in answer:
        return None
    tail = answer.rsplit(GOLD_MARK, 1)[1]
    m = _NUMBER.search(tail)
    return m.group(0).replace(",", "") if m else None


def _row_id(row: dict[str, Any], index: int) -> str:
    for key in ("id", "idx", "guid"):
        if row.get(key) not in (None, ""):
            return str(row[key])
    return str(index)


@register_format(
    "gsm8k",
    ("question", "answer"),
    "Arithmetic word problems; `answer` is a worked solution ending in `#### N`.",
    check=lambda rows: any(GOLD_MARK in str(r.get("answer", "")) for r in rows),
)
def _gsm8k(row: dict[str, Any], index: int) -> Example:
    full = str(row["answer"])
    gold = gold_number(full)
    if gold is None:
        raise DataError(f"row {index + 1}: the answer has no number after '{GOLD_MARK}'")
    return Example(
        id=_row_id(row, index), text=str(row["question"]), answer=gold, solution=full.rsplit(GOLD_MARK, 1)[0].strip()
    )


def parse_choices(raw: Any, index: int) -> tuple[list[str], list[str]]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"row {index + 1}: `choices` is text but not JSON ({exc.msg})") from None
    if isinstance(raw, dict) and "text" in raw:
        texts = [str(t) for t in raw["text"]]
        labels = [str(lab) for lab in raw.get("label", [chr(65 + i) for i in range(len(texts))])]
        return labels, texts
    if isinstance(raw, list) and raw and all(isinstance(c, dict) and "text" in c for c in raw):
        texts = [str(c["text"]) for c in raw]  # the original CommonsenseQA release: [{label, text}, ...]
        return [str(c.get("label", chr(65 + i))) for i, c in enumerate(raw)], texts
    if isinstance(raw, list):
        texts = [str(t) for t in raw]
        return [chr(65 + i) for i in range(len(texts))], texts
    raise DataError(f"row {index + 1}: `choices` must be {{label, text}} or a list, got {type(raw).__name__}")


def _csqa_choices(row: dict[str, Any]) -> Any:
    """The choices at the top level (the Hugging Face copy) or inside `question` (the original release, whose
    `question` is {stem, choices: [{label, text}], question_concept})."""
    question = row.get("question")
    if "choices" not in row and isinstance(question, dict):
        return question.get("choices")
    return row.get("choices")


@register_format(
    "commonsenseqa",
    ("question", "answerKey"),
    "Multiple choice; `choices` = {label: [A..E], text: [...]} (or the original release's `question` = {stem, "
    "choices: [{label, text}]}), `answerKey` names the gold label.",
    check=lambda rows: any(_csqa_choices(r) is not None for r in rows),
)
def _csqa(row: dict[str, Any], index: int) -> Example:
    choices = _csqa_choices(row)
    if choices is None:
        raise DataError(f"row {index + 1}: no choices (neither `choices` nor `question.choices`)")
    labels, texts = parse_choices(choices, index)
    key = str(row["answerKey"]).strip()
    question = row["question"]
    if isinstance(question, dict):  # the original CommonsenseQA JSONL nests the stem
        question = question.get("stem", "")
    label = labels.index(key) if key in labels else None
    if key and label is None:
        raise DataError(f"row {index + 1}: answerKey {key!r} is not one of the choice labels {labels}")
    return Example(
        id=_row_id(row, index),
        text=str(question),
        choices=texts,
        label=label,
        answer=texts[label] if label is not None else None,
        meta={"choice_labels": labels},
    )


SST2_NAMES = ("negative", "positive")


@register_format(
    "sst2", ("sentence", "label"), "Sentence classification (GLUE SST-2): label 0 = negative, 1 = positive."
)
def _sst2(row: dict[str, Any], index: int) -> Example:
    try:
        label = int(float(row["label"]))
    except (TypeError, ValueError):
        raise DataError(f"row {index + 1}: label {row['label']!r} is not 0 or 1") from None
    if label not in (0, 1):
        raise DataError(f"row {index + 1}: label {label} is not 0 or 1")
    return Example(id=_row_id(row, index), text=str(row["sentence"]), label=label, answer=SST2_NAMES[label])


def detect_format(columns: list[str], rows: list[dict[str, Any]]) -> str:
    """The first known format whose columns are all present and whose content matches; else 'generic'."""
    cols = set(columns)
    for fmt in FORMATS.values():
        if set(fmt.required) <= cols and fmt.check(rows):
            return fmt.name
    return "generic"
