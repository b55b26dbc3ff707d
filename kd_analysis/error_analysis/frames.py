"""Teacher and student records as one frame: loading the per-example records and joining them on `example_id`.

Aggregate accuracy hides *which* examples distillation lost. To see them, the teacher's and the student's records are
joined on `example_id`, one row per example, and each example gets its cell of the 2×2 right/wrong matrix; the
matrix, the filters and the slice finder all work on such a joined frame.

Frames here are pandas DataFrames of the records that `kd_analysis.runs.records` writes (one JSON object per
model and example in a run folder's `predictions.jsonl`). Nothing here imports streamlit or torch.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kd_analysis.data.example import class_label, class_names
from kd_analysis.exceptions import DataError, KDLensError
from kd_analysis.runs import layout

PREDICTIONS = layout.PREDICTIONS

RECORD_FIELDS = (
    "run_id",
    "role",
    "step",
    "example_id",
    "data",
    "gold",
    "prediction",
    "correct",
    "p_gold",
    "p_pred",
    "probs",
    "choices",
    "text",
    "generated",
    "parsed",
    "ce",
    "kl",
    "entropy",
    "teacher_entropy",
    "text_tokens",
)
# What each model has of its own; in a joined frame these become `<role>_<field>`. Everything else describes the
# example (text, gold, choices, the user's extra columns) and is shared.
PER_MODEL_FIELDS = (
    "run_id",
    "step",
    "prediction",
    "correct",
    "p_gold",
    "p_pred",
    "probs",
    "generated",
    "parsed",
    "ce",
    "kl",
    "entropy",
)
_NUMERIC_FIELDS = ("step", "p_gold", "p_pred", "ce", "kl", "entropy", "teacher_entropy", "text_tokens")
BOTH_RIGHT, BOTH_WRONG = "both_right", "both_wrong"

Rows = pd.DataFrame | Iterable[Mapping[str, Any]] | str | Path | Sequence[str | Path]


def _read_jsonl(path: Path) -> list[dict]:
    if path.is_dir():
        path = path / PREDICTIONS
    if not path.is_file():
        raise DataError(f"there are no per-example records at {path}")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError):
                raise DataError(f"line {number} of {path} is not valid JSON") from None
            if not isinstance(row, dict):
                raise DataError(f"line {number} of {path} is not a JSON object")
            rows.append(row)
    return rows


def records_frame(rows: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """A frame of records with every schema column present and typed (numbers as numbers, `correct` as a
    nullable boolean), so that filters and joins behave the same whatever the source left out."""
    if isinstance(rows, pd.DataFrame):
        frame = rows.copy()
    else:
        items = list(rows)
        for i, row in enumerate(items):
            if not isinstance(row, Mapping):
                raise DataError(f"record {i + 1} is not a mapping of field names to values")
        frame = pd.DataFrame.from_records(items) if items else pd.DataFrame()
    for name in RECORD_FIELDS:
        if name not in frame.columns:
            frame[name] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    missing = frame["example_id"].isna().to_numpy()
    if missing.any():
        raise DataError(f"record {int(np.argmax(missing)) + 1} has no example_id")
    frame["example_id"] = frame["example_id"].astype(str)
    for name in _NUMERIC_FIELDS:
        try:
            values = pd.to_numeric(frame[name], errors="raise").astype(float)
        except (TypeError, ValueError):
            raise DataError(f"the records' '{name}' field holds values that are not numbers") from None
        finite = values.dropna()
        if name in ("step", "text_tokens") and len(finite) and (finite == finite.round()).all():
            frame[name] = values.astype("Int64")
        else:
            frame[name] = values
    try:
        frame["correct"] = frame["correct"].astype("boolean")
    except (TypeError, ValueError):
        raise DataError("the records' 'correct' field holds values that are not true/false") from None
    return frame


def load_records(source: Rows) -> pd.DataFrame:
    """Records from a run folder, a `predictions.jsonl` file, a list of those, a list of row dicts, or a frame.

    The run-store wiring picks the folders; this only reads what it is given."""
    if isinstance(source, pd.DataFrame):
        return records_frame(source)
    if isinstance(source, (str, Path)):
        return records_frame(_read_jsonl(Path(source)))
    items = list(source)
    paths = [isinstance(i, (str, Path)) for i in items]
    if items and all(paths):
        return records_frame([row for p in items for row in _read_jsonl(Path(p))])
    if any(paths):
        raise DataError("give either record rows or paths to records, not a mix of both")
    return records_frame(items)


def answer_label(value: Any, choices: Any = None, limit: int = 200) -> str:
    """An answer as a reader wants it: "3: sour" for a choice index, the text itself otherwise, "" when missing."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(choices, (list, tuple)) and _is_index(value, len(choices)):  # np.int64 too (a frame's column)
        return f"{int(value)}: {choices[int(value)]}"[:limit]
    return str(value)[:limit]


def frame_class_names(frame: pd.DataFrame) -> dict[int, str]:
    """The class names a frame's records carry (`gold_name` beside `gold`, written for classification data that
    names its classes); {} for records without them."""
    if "gold_name" not in frame.columns or "gold" not in frame.columns:
        return {}
    return class_names(zip(frame["gold"], frame["gold_name"]))


def answer_options(row: Mapping[str, Any], role: str, names: Mapping[int, str]) -> list[str] | None:
    """What a joined row's `<role>_probs` are a distribution over: the choices' texts (multiple choice), the
    class names (classification; "" for a class the data leaves unnamed), None for generation, which has no
    options and shows its generated text instead."""
    choices = row.get("choices")
    if isinstance(choices, (list, tuple)) and choices:
        return [str(c) for c in choices]
    probs = row.get(f"{role}_probs")
    if isinstance(probs, (list, tuple)) and probs and _is_index(row.get("gold"), len(probs)):
        return [names.get(i, "") for i in range(len(probs))]
    return None


def option_index(value: Any) -> int | None:
    """A gold value as an option's index (numpy's integers too: a frame hands out np.int64), else None."""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and float(value).is_integer():
        return int(value)
    return None


def _is_index(value: Any, n: int) -> bool:
    index = option_index(value)
    return index is not None and 0 <= index < n


def row_answer(row: Mapping[str, Any], value: Any, names: Mapping[int, str] | None = None) -> str:
    """An answer in a row as a reader wants it: `3: sour` for a choice, `0: negative` (or `0`) for a class,
    the text for generation."""
    choices = row.get("choices")
    if isinstance(choices, (list, tuple)) and choices:
        return answer_label(value, choices)
    index = option_index(value)  # a class id (a float in a frame column with gaps): named, or its digits alone
    if index is not None:
        return class_label(index, (names or {}).get(index))
    return answer_label(value)


def add_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Derived columns the slice finder uses, added to the frame so that its filter expressions work on it:
    `has_number` (the input text contains a digit). Returns a copy; columns already present are kept."""
    frame = frame.copy()
    if "has_number" not in frame.columns and "text" in frame.columns:
        text = frame["text"].where(frame["text"].notna(), "").astype(str)
        frame["has_number"] = text.str.contains(r"\d", regex=True).astype(bool)
    return frame


def side_of(rows: Rows, role: str | None) -> pd.DataFrame:
    """One model's records. A run folder holds both the teacher's and the student's lines, so when the rows
    carry `role` values and some equal `role`, only those are kept."""
    frame = load_records(rows)
    if role and len(frame):
        is_role = (frame["role"] == role).to_numpy(dtype=bool, na_value=False)
        if is_role.any():
            frame = frame[is_role]
    return frame


def _one_per_example(frame: pd.DataFrame, step: int | None) -> pd.DataFrame:
    """One record per example: the one at `step`, or the latest evaluation (the student may be evaluated at
    several steps; the final answer is the one to compare)."""
    if step is not None:
        frame = frame[(frame["step"] == step).to_numpy(dtype=bool, na_value=False)]
        if frame.empty:
            raise DataError(f"there are no records at step {step}")
    frame = frame.sort_values("step", kind="stable", na_position="first")
    return frame.drop_duplicates("example_id", keep="last")


def join_roles(sides: Mapping[str, Rows], *, step: int | Mapping[str, int | None] | None = None) -> pd.DataFrame:
    """Join several models' records on `example_id` (examples all of them have), one row per example.

    Each model's own fields become `<name>_<field>` (`teacher_correct`, `student_p_pred`, ...); the example's
    fields (text, gold, choices, extra columns) are shared. `kl` is the student's KL(teacher‖student) and
    `teacher_entropy` the teacher's entropy. With exactly two models a `cell` column names each example's cell
    of the right/wrong matrix (see `cell_of`). `step` picks an evaluation step (per name with a mapping);
    by default each model's latest."""
    if not sides:
        raise KDLensError("there are no models to join")
    names = list(sides)
    for name in names:
        if not str(name).isidentifier() or str(name).startswith("_"):
            raise KDLensError(f"'{name}' cannot name a model in a joined frame; use letters, digits and '_'")
    steps = step if isinstance(step, Mapping) else dict.fromkeys(names, step)
    frames = {name: _one_per_example(side_of(rows, name), steps.get(name)) for name, rows in sides.items()}
    first = frames[names[0]]
    shared_cols = [c for c in first.columns if c not in PER_MODEL_FIELDS and c != "role"]
    joined = first[shared_cols].set_index("example_id")
    for name in names:
        own = frames[name].set_index("example_id")
        per_model = own[[c for c in PER_MODEL_FIELDS if c in own.columns]].add_prefix(f"{name}_")
        if name == "teacher" and "teacher_entropy" in joined.columns:  # the teacher's own entropy wins
            per_model["teacher_entropy"] = per_model["teacher_entropy"].fillna(joined.pop("teacher_entropy"))
        clash = set(per_model.columns) & set(joined.columns)
        if clash:
            raise KDLensError(f"the records' column '{sorted(clash)[0]}' clashes with a joined column; rename it")
        joined = joined.join(per_model, how="inner")
        if name != names[0]:  # fill the example's fields the first model's records left out
            for c in own.columns:
                if c in PER_MODEL_FIELDS or c in ("role", "example_id"):
                    continue
                other = own[c].reindex(joined.index)
                if c not in joined.columns:
                    joined[c] = other
                else:
                    joined[c] = joined[c].where(joined[c].notna(), other)
    joined = joined.reset_index()
    if "student" in names:
        joined["kl"] = joined["student_kl"]
    if len(names) == 2:
        joined["cell"] = cell_of(joined, names[0], names[1])
        a, b = f"{names[0]}_p_gold", f"{names[1]}_p_gold"
        if a in joined.columns and b in joined.columns:  # how much surer of the gold answer the first model is
            joined["confidence_gap"] = pd.to_numeric(joined[a], errors="coerce") - pd.to_numeric(
                joined[b], errors="coerce"
            )
    return add_features(joined)


def cell_of(frame: pd.DataFrame, first: str = "teacher", second: str = "student") -> pd.Series:
    """Each example's cell of the right/wrong matrix: 'both_right', '<first>_only' (first right, second wrong),
    '<second>_only', 'both_wrong'; None where either answer was not scored."""
    cols = [f"{first}_correct", f"{second}_correct"]
    for c in cols:
        if c not in frame.columns:
            raise KDLensError(f"the frame has no '{c}' column; join the records with join_roles first")
    a, b = (frame[c].astype("boolean") for c in cols)
    known = (a.notna() & b.notna()).to_numpy(dtype=bool)
    av, bv = a.to_numpy(dtype=bool, na_value=False), b.to_numpy(dtype=bool, na_value=False)
    cells = np.select([av & bv, av & ~bv, ~av & bv], [BOTH_RIGHT, f"{first}_only", f"{second}_only"], BOTH_WRONG)
    cells = cells.astype(object)
    cells[~known] = None
    return pd.Series(cells, index=frame.index, name="cell", dtype=object)
