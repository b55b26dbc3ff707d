"""One entry point for every data source a user can name: a file, a built-in demo set, or a hub data set."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from kd_analysis.data.demo import DEMO_SETS
from kd_analysis.data.loaders import ColumnMapping, Dataset, file_kind, load_file, rows_to_examples
from kd_analysis.exceptions import DataError
from kd_analysis.hub import hub_reachable, looks_like_hub_id, offline_message

DEMO_PREFIX = "demo:"
HUB_PREFIX = "hf:"


def demo_rows(name: str) -> list[dict]:
    if name not in DEMO_SETS:
        raise DataError(f"unknown demo set {name!r}; choose one of {', '.join(DEMO_SETS)}")
    return DEMO_SETS[name].rows()


def load_demo(name: str) -> Dataset:
    rows = demo_rows(name)
    return rows_to_examples(rows, list(rows[0]), name=f"{DEMO_PREFIX}{name}")


def write_demo(name: str, path: str | os.PathLike) -> Path:
    """Write a demo set in the format the file's suffix names, so the loaders read it back as written: .csv or
    .tsv (.tab) for flat sets, JSONL otherwise. A set with nested fields (multiple choice) fits only JSONL."""
    rows = demo_rows(name)
    path = Path(path)
    kind = file_kind(path, "{")  # the suffix decides; any other suffix is sniffed as JSON, which this writes
    if kind == "json":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    elif any(isinstance(v, (dict, list)) for r in rows for v in r.values()):
        raise DataError(
            f"demo:{name} has nested fields ({', '.join(k for k, v in rows[0].items() if isinstance(v, (dict, list)))})"
            f" that a {path.suffix} file cannot hold; name a .jsonl file"
        )
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(
            buf, fieldnames=list(rows[0]), delimiter="\t" if kind == "tsv" else ",", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
        text = buf.getvalue()
    path.write_text(text, encoding="utf-8")
    return path


def load_hub_dataset(
    name: str,
    *,
    split: str = "train",
    config: str | None = None,
    mapping: ColumnMapping | None = None,
    limit: int | None = None,
) -> Dataset:
    """A Hugging Face data set by name (online only; offline it fails at once with a plain message)."""
    if not hub_reachable():
        raise DataError(offline_message("data set", name))
    try:
        import datasets
    except ImportError:
        raise DataError("loading hub data sets needs the `datasets` package (pip install datasets)") from None
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # the hub client raises many types; the user needs the message, not the type
        raise DataError(f"could not load data set {name!r} (split {split!r}): {exc}") from None
    if limit:
        ds = ds.select(range(min(limit, len(ds))))
    rows = [dict(r) for r in ds]
    return rows_to_examples(rows, list(ds.column_names), name=f"{HUB_PREFIX}{name}", mapping=mapping)


def load_dataset(
    source: Any, *, mapping: ColumnMapping | None = None, limit: int | None = None, encoding: str | None = None
) -> Dataset:
    """`demo:NAME`, `hf:NAME[:CONFIG][@SPLIT]`, or a file path; with its column mapping when the name carries one
    (a data key or `{path, columns}`, see `kd_analysis.data.refs`). An explicit `mapping` wins."""
    from kd_analysis.data.refs import data_ref

    ref = data_ref(source)
    source, mapping = ref.source, mapping or ref.mapping
    if source.startswith(DEMO_PREFIX):
        ds = load_demo(source[len(DEMO_PREFIX) :])
        if limit:
            ds.examples = ds.examples[:limit]
        return ds
    if source.startswith(HUB_PREFIX):
        spec = source[len(HUB_PREFIX) :]
        spec, _, split = spec.partition("@")
        name, _, config = spec.partition(":")
        return load_hub_dataset(name, split=split or "train", config=config or None, mapping=mapping, limit=limit)
    path = Path(source).expanduser()
    if not path.exists() and looks_like_hub_id(source) and "/" in source:
        raise DataError(f"no file {source!r} here; for a Hugging Face data set write hf:{source}")
    return load_file(path, mapping=mapping, limit=limit, encoding=encoding)
