"""Read JSONL / CSV / TSV files into rows, recognise their format, and map them to Examples.

Errors are DataError with one sentence naming the file and what is wrong; rows that fail are reported, never
silently dropped.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kd_analysis.data.example import Example
from kd_analysis.data.formats import FORMATS, detect_format
from kd_analysis.exceptions import DataError

TEXT_COLUMNS = ("text", "sentence", "question", "input", "prompt", "premise", "content")
LABEL_COLUMNS = ("label", "labels", "answerKey", "answer_key", "class")
ANSWER_COLUMNS = ("answer", "output", "target", "response")
CHOICE_COLUMNS = ("choices", "options")
MAX_PROBLEMS = 20


@dataclass
class ColumnMapping:
    """Which columns of a generic file hold what. Unset fields are guessed from common column names."""

    text: str | None = None
    label: str | None = None
    choices: str | None = None
    answer: str | None = None
    solution: str | None = None
    id: str | None = None

    def is_empty(self) -> bool:
        return not any(vars(self).values())


@dataclass
class Dataset:
    name: str
    format: str
    fields: list[str]
    examples: list[Example]
    problems: list[str] = field(default_factory=list)
    skipped: int = 0
    rows: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "format": self.format,
            "examples": len(self.examples),
            "rows": self.rows,
            "fields": self.fields,
            "skipped": self.skipped,
            "problems": self.problems[:MAX_PROBLEMS],
            "tasks": sorted({e.task for e in self.examples}),
        }


def file_kind(path: Path, head: str) -> str:
    ext = path.suffix.lower()
    if ext in (".jsonl", ".ndjson", ".json"):
        return "json"
    if ext in (".tsv", ".tab"):
        return "tsv"
    if ext == ".csv":
        return "csv"
    first = head.lstrip()[:1]
    if first in ("{", "["):
        return "json"
    return "tsv" if head.split("\n", 1)[0].count("\t") > head.split("\n", 1)[0].count(",") else "csv"


def _decode(raw: bytes, path: Path, encoding: str | None) -> str:
    try:
        return raw.decode(encoding or "utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 1].hex()
        raise DataError(
            f"{path.name} is not {encoding or 'UTF-8'} text (byte 0x{bad} at position {exc.start}); "
            f"re-save it as UTF-8 (the CLI also reads other encodings: --encoding latin-1)"
        ) from None
    except LookupError:
        raise DataError(f"unknown text encoding {encoding!r}") from None


def _open_checked(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data file not found: {p}")
    if p.is_dir():
        raise DataError(f"{p} is a folder; give a .jsonl, .csv or .tsv file")
    if p.stat().st_size == 0:
        raise DataError(f"{p.name} is empty")
    return p


MAX_BAD_SHARE = 0.10  # more unreadable JSONL lines than this share: the file is refused, not patched up


def _jsonl_rows(text: str, limit: int | None) -> tuple[list[dict[str, Any]], list[str]]:
    """Good JSON object lines, and one short reason per bad line (its number and the parser's words, no content)."""
    rows: list[dict[str, Any]] = []
    bad: list[str] = []
    for n, line in enumerate(text.split("\n"), 1):  # JSON strings may hold U+2028, which splitlines() cuts at
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append(f"line {n}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except (ValueError, RecursionError) as exc:  # a 5,000-digit number, nesting 100,000 deep
            bad.append(f"line {n}: not usable JSON ({type(exc).__name__})")
            continue
        if not isinstance(obj, dict):
            bad.append(f"line {n}: a JSON {type(obj).__name__}, not an object")
            continue
        rows.append(obj)
        if limit and len(rows) >= limit:
            break
    return rows, bad


def _check_bad_lines(bad: list[str], total: int, path: Path) -> None:
    if bad and (len(bad) > MAX_BAD_SHARE * total or len(bad) == total):
        raise DataError(
            f"{path.name}: {len(bad)} of {total} lines are not JSON objects (more than "
            f"{MAX_BAD_SHARE:.0%}); first: {bad[0]}. Is this a JSONL file?"
        )


_NAME_LIKE = re.compile(r"^[\w][\w .\-/()\[\]#]{0,63}$")


def describe_columns(columns: list[str]) -> str:
    """Column names for an error message, unless the 'header' is really file content (a password file, say):
    a reason may name the file and what was wrong, never echo what the file holds."""
    if columns and all(isinstance(c, str) and _NAME_LIKE.match(c) for c in columns):
        return f"its columns are {columns}"
    return f"its first line does not look like a header of column names ({len(columns)} field(s))"


def _rows_from_text(
    text: str, kind: str, path: Path, limit: int | None
) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    """(columns, rows, one reason per unreadable line)."""
    bad: list[str] = []
    if not text.strip():
        raise DataError(f"{path.name} is empty (only whitespace)")
    if kind == "json":
        stripped = text.lstrip()
        if stripped.startswith("["):
            try:
                data = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path.name} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
            except (ValueError, RecursionError) as exc:
                raise DataError(f"{path.name} is not usable JSON ({type(exc).__name__})") from None
            rows = [r for r in data if isinstance(r, dict)]
            if len(rows) != len(data):
                raise DataError(f"{path.name}: every item of the JSON list must be an object")
            rows = rows[:limit] if limit else rows
        else:
            rows, bad = _jsonl_rows(text, limit)  # good rows are kept; bad lines become problems
            if not limit or not rows:  # judge the share on the whole file, not on a preview's first lines
                _check_bad_lines(bad, len(rows) + len(bad), path)
        columns: list[str] = []
        for r in rows[:200]:
            columns.extend(k for k in r if k not in columns)
        return columns, rows, bad
    delimiter = "\t" if kind == "tsv" else ","
    if csv.field_size_limit() < PREVIEW_MAX_BYTES:  # the default 128 KB refuses a long document in one cell
        csv.field_size_limit(PREVIEW_MAX_BYTES)
    # GLUE TSVs are unquoted and contain stray quote characters: read them as plain tab-separated fields.
    reader = csv.DictReader(
        io.StringIO(text), delimiter=delimiter, quoting=csv.QUOTE_NONE if kind == "tsv" else csv.QUOTE_MINIMAL
    )
    try:
        fieldnames = reader.fieldnames
    except csv.Error as exc:
        raise DataError(f"{path.name}: the header row cannot be read as {kind.upper()} ({exc})") from None
    if not fieldnames:
        raise DataError(f"{path.name} has no header row")
    columns = [c.strip() for c in fieldnames]
    if len(set(columns)) != len(columns):
        raise DataError(f"{path.name} has repeated column names ({describe_columns(columns)})")
    rows = []
    try:
        for row in reader:
            rows.append({k.strip() if isinstance(k, str) else "_extra": v for k, v in row.items()})
            if limit and len(rows) >= limit:
                break
    except csv.Error as exc:  # e.g. a cell over the size limit, a NUL byte
        raise DataError(f"{path.name}: line {reader.line_num} cannot be read as {kind.upper()} ({exc})") from None
    return columns, rows, bad


@dataclass
class RowsRead:
    kind: str
    columns: list[str]
    rows: list[dict[str, Any]]
    bad_lines: list[str] = field(default_factory=list)  # "line N: why" for each line that was skipped


PREVIEW_BYTES = 1 << 20  # a preview reads this much, more only when its first rows are longer
PREVIEW_MAX_BYTES = 64 << 20


def _preview_bytes(fh, p: Path) -> bytes:
    """The start of the file in whole lines, at least the header and one row: 1 MiB, or more while the first two
    lines are longer (a first row over 1 MB once previewed as "a header but no data rows"), up to 64 MiB."""
    raw = fh.read(PREVIEW_BYTES)
    while raw.count(b"\n") < 2 and len(raw) < PREVIEW_MAX_BYTES:
        more = fh.read(PREVIEW_BYTES)
        if not more:
            return raw  # the whole file
        raw += more
    if raw.count(b"\n") < 2 and fh.read(1):
        raise DataError(f"{p.name}'s first rows are over {PREVIEW_MAX_BYTES >> 20} MB long: too long to preview")
    rest = fh.read(1)
    return raw if not rest else raw[: raw.rfind(b"\n") + 1]  # whole lines only


def read_rows_checked(path: str | os.PathLike, *, limit: int | None = None, encoding: str | None = None) -> RowsRead:
    """With `limit`, reads only the start of the file, so previews of huge files are quick."""
    p = _open_checked(path)
    with open(p, "rb") as fh:
        raw = fh.read() if not limit else _preview_bytes(fh, p)
    text = _decode(raw, p, encoding)
    kind = file_kind(p, text[:4096])
    columns, rows, bad = _rows_from_text(text, kind, p, limit)
    if not rows:
        raise DataError(f"{p.name} has a header but no data rows" if columns else f"{p.name} has no rows")
    return RowsRead(kind, columns, rows, bad)


def read_rows(
    path: str | os.PathLike, *, limit: int | None = None, encoding: str | None = None
) -> tuple[str, list[str], list[dict[str, Any]]]:
    """(kind, columns, rows): the good rows only (see read_rows_checked for the skipped lines)."""
    read = read_rows_checked(path, limit=limit, encoding=encoding)
    return read.kind, read.columns, read.rows


def count_rows(path: str | os.PathLike) -> int:
    """Data rows in the file without building them (streams; quick even for 100k-row files)."""
    p = _open_checked(path)
    kind = file_kind(p, p.open("rb").read(4096).decode("utf-8", "replace"))
    with open(p, encoding="utf-8-sig", errors="replace", newline="") as fh:
        if kind == "json":
            first = fh.read(1)
            if first == "[":
                fh.seek(0)
                return len(json.load(fh))
            fh.seek(0)
            return sum(1 for line in fh if line.strip())
        reader = csv.reader(
            fh, delimiter="\t" if kind == "tsv" else ",", quoting=csv.QUOTE_NONE if kind == "tsv" else csv.QUOTE_MINIMAL
        )
        return max(sum(1 for _ in reader) - 1, 0)


def _pick(columns: Iterable[str], candidates: tuple[str, ...]) -> str | None:
    lower = {c.lower(): c for c in columns}
    for cand in candidates:
        if cand.lower() in lower:
            return lower[cand.lower()]
    return None


def resolve_mapping(columns: list[str], mapping: ColumnMapping | None) -> ColumnMapping:
    """Fill unset fields from common names; check every named column exists."""
    m = ColumnMapping(**vars(mapping)) if mapping else ColumnMapping()
    for name, value in vars(m).items():
        if value and value not in columns:
            raise DataError(f"column {value!r} (mapped to {name}) is not in the file; {describe_columns(columns)}")
    m.text = m.text or _pick(columns, TEXT_COLUMNS)
    if not m.text:
        raise DataError(
            f"no text column found (looked for {', '.join(TEXT_COLUMNS)}); {describe_columns(columns)}: "
            "map one as the text column"
        )
    m.choices = m.choices or _pick(columns, CHOICE_COLUMNS)
    m.label = m.label or _pick([c for c in columns if c != m.text], LABEL_COLUMNS)
    m.answer = m.answer or _pick([c for c in columns if c not in (m.text, m.label)], ANSWER_COLUMNS)
    m.id = m.id or _pick(columns, ("id", "idx", "guid"))
    return m


def _generic(row: dict[str, Any], index: int, m: ColumnMapping) -> Example:
    from kd_analysis.data.formats import gold_number, parse_choices

    text = row.get(m.text)
    if text in (None, ""):
        raise DataError(f"row {index + 1}: empty {m.text!r}")
    choices = labels = None
    if m.choices and row.get(m.choices) not in (None, ""):
        labels, choices = parse_choices(row[m.choices], index)
    label: int | None = None
    answer: str | None = None
    solution: str | None = None
    raw_label = row.get(m.label) if m.label else None
    if raw_label not in (None, ""):
        raw = str(raw_label).strip()
        if choices and labels and raw in labels:
            label = labels.index(raw)
        elif choices and raw in choices:
            label = choices.index(raw)
        else:
            try:
                label = int(float(raw))
            except ValueError:
                raise DataError(f"row {index + 1}: label {raw!r} is not a number or a choice label") from None
            if choices and not 0 <= label < len(choices):
                raise DataError(f"row {index + 1}: label {label} is outside the {len(choices)} choices")
        if choices:
            answer = choices[label]
    if m.answer and row.get(m.answer) not in (None, ""):
        full = str(row[m.answer])
        gold = gold_number(full)
        if gold is not None:
            answer, solution = gold, full.rsplit("####", 1)[0].strip()
        else:
            answer = answer or full
    if m.solution and row.get(m.solution):
        solution = str(row[m.solution])
    rid = str(row[m.id]) if m.id and row.get(m.id) not in (None, "") else str(index)
    return Example(id=rid, text=str(text), choices=choices, label=label, answer=answer, solution=solution)


def rows_to_examples(
    rows: list[dict[str, Any]],
    columns: list[str],
    *,
    name: str,
    mapping: ColumnMapping | None = None,
    bad_lines: list[str] | None = None,
) -> Dataset:
    """Examples from rows; a row that is not an example is skipped and counted (with `bad_lines`, the lines
    that were not even rows), as long as some rows are examples."""
    fmt = "generic" if mapping and not mapping.is_empty() else detect_format(columns, rows)
    resolved = resolve_mapping(columns, mapping) if fmt == "generic" else None
    examples: list[Example] = []
    problems: list[str] = list(bad_lines or [])
    for i, row in enumerate(rows):
        try:
            ex = FORMATS[fmt].convert(row, i) if fmt != "generic" else _generic(row, i, resolved)
        except DataError as exc:
            problems.append(str(exc))
            continue
        examples.append(ex)
    if not examples:
        first = problems[0] if problems else "no rows"
        raise DataError(f"{name}: no row could be read as an example ({len(problems)} problems; first: {first})")
    return Dataset(
        name=name,
        format=fmt,
        fields=columns,
        examples=examples,
        problems=problems[:MAX_PROBLEMS],
        skipped=len(problems),
        rows=len(rows) + len(bad_lines or []),
    )


def load_file(
    path: str | os.PathLike,
    *,
    mapping: ColumnMapping | None = None,
    limit: int | None = None,
    encoding: str | None = None,
) -> Dataset:
    read = read_rows_checked(path, limit=limit, encoding=encoding)
    return rows_to_examples(read.rows, read.columns, name=Path(path).name, mapping=mapping, bad_lines=read.bad_lines)
