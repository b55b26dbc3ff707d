"""A data set as every part of kd-lens names it: a source (file, `demo:NAME`, `hf:NAME`) and, for a file in no
known format, which of its columns hold the text, the label, the choices or the answer.

One string carries both, so the mapping travels wherever a data set's name already goes (the sidebar, links,
job and run configs, records, the notes database): the source alone when there is no mapping, else the source,
a space and the mapping as JSON with sorted keys, `reviews.csv {"label": "sentiment", "text": "review"}`.
Configs may also write the mapping out, `data: {path: reviews.csv, columns: {text: review, label: sentiment}}`;
`data_key` turns either form into the string, `data_ref` the string back into its parts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from kd_analysis.data.loaders import ColumnMapping
from kd_analysis.exceptions import DataError, KDLensError

ROLES = tuple(f.name for f in fields(ColumnMapping))  # text, label, choices, answer, solution, id
_KEYED = re.compile(r"^(?P<source>.+?) (?P<columns>\{.*\})$", re.DOTALL)
MAX_COLUMN = 200  # characters in a column name


@dataclass(frozen=True)
class DataRef:
    source: str
    columns: tuple[tuple[str, str], ...] = ()  # (role, column), sorted by role

    @property
    def mapping(self) -> ColumnMapping | None:
        return ColumnMapping(**dict(self.columns)) if self.columns else None

    @property
    def key(self) -> str:
        """The one string that names this data set everywhere (see the module's docstring)."""
        if not self.columns:
            return self.source
        return f"{self.source} {json.dumps(dict(self.columns), sort_keys=True, ensure_ascii=False)}"

    def describe(self) -> str:
        """For people: `reviews.csv (text: review, label: sentiment)`. An uploaded file is named as the user
        uploaded it, not by the upload store's folder."""
        from kd_analysis.data.uploads import is_upload

        name = Path(self.source).name if is_upload(self.source) else self.source
        if not self.columns:
            return name
        return f"{name} ({', '.join(f'{r}: {c}' for r, c in self.columns)})"


def describe_data(key: str) -> str:
    """A data key for people (`DataRef.describe`); a key that does not parse is shown as it is."""
    try:
        return data_ref(key).describe()
    except KDLensError:
        return key


def _columns(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise DataError(f"{where} must be a mapping of role to column name (got {value!r:.60})")
    out = []
    for role, column in value.items():
        if role not in ROLES:
            raise DataError(f"{where} names the role {role!r:.40}; the roles are {', '.join(ROLES)}")
        if not isinstance(column, str) or not column.strip() or len(column) > MAX_COLUMN:
            raise DataError(f"{where}.{role} must be a column name (got {column!r:.60})")
        out.append((role, column))
    return tuple(sorted(out))


def data_ref(value: Any, where: str = "data") -> DataRef:
    """A data set named as a config, a link or the CLI names it: its key string, or `{path, columns}`. A string
    is read as source + mapping only when it ends in a JSON object and the whole string is not itself a file."""
    from pathlib import Path

    if isinstance(value, DataRef):
        return value
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"path", "columns"})
        if unknown:
            raise DataError(f"{where} has no setting {unknown[0]!r:.40}; it takes path and columns")
        source = value.get("path")
        if not isinstance(source, str) or not source.strip():
            raise DataError(f"{where}.path must name a data file (got {source!r:.60})")
        return DataRef(source.strip(), _columns(value.get("columns") or {}, f"{where}.columns"))
    if not isinstance(value, str):
        raise DataError(f"{where} must name a data set (got {value!r:.60})")
    found = _KEYED.match(value)
    if found and not Path(value).expanduser().exists():
        try:
            columns = json.loads(found["columns"])
        except json.JSONDecodeError:
            columns = None
        if isinstance(columns, dict):
            return DataRef(found["source"].strip(), _columns(columns, f"{where}'s columns"))
    return DataRef(value.strip())


def data_key(value: Any, where: str = "data") -> str:
    """The key string of a data set given in either form (see `data_ref`)."""
    return data_ref(value, where).key


def with_columns(source: str, mapping: ColumnMapping | None) -> str:
    """The key of `source` read with `mapping` (the source's own mapping, if any, is replaced)."""
    chosen = {k: v for k, v in vars(mapping).items() if v} if mapping is not None else {}
    return DataRef(data_ref(source).source, _columns(chosen, "columns")).key
