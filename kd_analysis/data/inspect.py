"""Inspect and preview a data source: what format it is, how many examples, what is wrong with it."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kd_analysis.data.loaders import ColumnMapping, count_rows, read_rows_checked, rows_to_examples
from kd_analysis.data.sources import DEMO_PREFIX, HUB_PREFIX, load_dataset

PREVIEW_ROWS = 20


@dataclass
class DataReport:
    source: str
    format: str
    examples: int
    rows: int
    fields: list[str]
    tasks: list[str]
    skipped: int = 0
    problems: list[str] = field(default_factory=list)
    preview: list[dict[str, Any]] = field(default_factory=list)
    partial: bool = False  # True when only the first rows were read (previews of large files)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _preview_rows(examples) -> list[dict[str, Any]]:
    out = []
    for ex in examples[:PREVIEW_ROWS]:
        d = ex.to_dict()
        d.pop("meta", None)
        if d.get("choices"):
            d["choices"] = " | ".join(d["choices"])
        out.append(d)
    return out


def inspect_data(source: str, *, mapping: ColumnMapping | None = None, encoding: str | None = None) -> DataReport:
    """Read every row and report; raises DataError with a clear sentence when the source is unusable."""
    ds = load_dataset(source, mapping=mapping, encoding=encoding)
    return DataReport(
        source=source,
        format=ds.format,
        examples=len(ds.examples),
        rows=ds.rows or len(ds.examples),
        fields=ds.fields,
        tasks=sorted({e.task for e in ds.examples}),
        skipped=ds.skipped,
        problems=ds.problems,
        preview=_preview_rows(ds.examples),
    )


def preview_data(
    source: str | os.PathLike,
    *,
    mapping: ColumnMapping | None = None,
    encoding: str | None = None,
    n: int = PREVIEW_ROWS,
) -> DataReport:
    """Like inspect_data but reads only the first `n` rows of a file, so a 100k-row file previews instantly.

    The row count comes from a streaming count; `examples` and `problems` describe the rows read.
    """
    s = str(source)
    if s.startswith((DEMO_PREFIX, HUB_PREFIX)):
        return inspect_data(s, mapping=mapping, encoding=encoding)
    read = read_rows_checked(source, limit=n, encoding=encoding)
    ds = rows_to_examples(read.rows, read.columns, name=Path(source).name, mapping=mapping, bad_lines=read.bad_lines)
    total = count_rows(source)
    return DataReport(
        source=s,
        format=ds.format,
        examples=len(ds.examples),
        rows=total,
        fields=read.columns,
        tasks=sorted({e.task for e in ds.examples}),
        skipped=ds.skipped,
        problems=ds.problems,
        preview=_preview_rows(ds.examples),
        partial=total > len(read.rows) + len(read.bad_lines),
    )
