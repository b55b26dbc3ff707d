"""Notes and tags per example, for qualitative error analysis, kept in one SQLite file under the run store.

Notes are keyed by (data set, example id), never by run, so what a researcher wrote about an example follows it
into every later run on the same data. The file is shared by Streamlit's threads, the CLI and colleagues' processes,
so: WAL mode (readers never block the writer), a busy timeout (a second writer waits instead of failing), one
short-lived connection per operation (no connection crosses threads), and every write in one transaction.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from kd_analysis.exceptions import KDLensError

NOTES_FILE = "notes.sqlite"
SCHEMA_VERSION = 2
EXPORT_KIND = "kd-lens-notes"  # the header line of an export; skipped on import
BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another writer before giving up
MAX_TAG = 64
MAX_TEXT = 20_000
MAX_NAME = 1_000  # data set names and example ids
MAX_AUTHOR = 100

# Each entry moves the schema from version i to i + 1; append, never edit, so old files migrate in order.
_MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS notes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            data TEXT NOT NULL,
            example_id TEXT NOT NULL,
            author TEXT,
            text TEXT NOT NULL,
            created TEXT NOT NULL,
            updated TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS notes_by_example ON notes (data, example_id, created)",
        """CREATE TABLE IF NOT EXISTS tags (
            data TEXT NOT NULL,
            example_id TEXT NOT NULL,
            tag TEXT NOT NULL,
            author TEXT,
            created TEXT NOT NULL,
            PRIMARY KEY (data, example_id, tag))""",
        "CREATE INDEX IF NOT EXISTS tags_by_tag ON tags (data, tag)",
    ],
    [  # 2: named slices (a filter expression saved under a name, per data set)
        """CREATE TABLE IF NOT EXISTS slices (
            data TEXT NOT NULL,
            name TEXT NOT NULL,
            expr TEXT NOT NULL,
            author TEXT,
            created TEXT NOT NULL,
            PRIMARY KEY (data, name))""",
    ],
]
assert len(_MIGRATIONS) == SCHEMA_VERSION


@dataclass(frozen=True)
class Note:
    id: int
    data: str
    example_id: str
    author: str | None
    text: str
    created: str  # UTC, ISO 8601
    updated: str


@dataclass
class ImportResult:
    """What an import merged; bad lines are reported, not fatal, so one damaged line never costs the rest."""

    notes_added: int = 0
    notes_skipped: int = 0  # already present (same data set, example, author, text and created time)
    tags_added: int = 0
    tags_skipped: int = 0  # already on that example
    bad_lines: list[tuple[int, str]] = field(default_factory=list)  # (1-based line number, why)

    @property
    def added(self) -> int:
        return self.notes_added + self.tags_added

    @property
    def skipped(self) -> int:
        return self.notes_skipped + self.tags_skipped

    def summary(self) -> str:
        """One line for the CLI or a page."""
        bad = (
            f"; {len(self.bad_lines)} bad lines (first: line {self.bad_lines[0][0]}: {self.bad_lines[0][1]})"
            if self.bad_lines
            else ""
        )
        return (
            f"{self.notes_added} notes and {self.tags_added} tags added, {self.notes_skipped} notes and "
            f"{self.tags_skipped} tags already present{bad}"
        )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _show(value: Any, limit: int = 40) -> str:
    """A value quoted on one line (repr escapes line breaks) and cut short, for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _name(value: Any, what: str) -> str:
    """A data set name or example id: text (an int id is taken as its decimal text), not blank, not huge."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise KDLensError(f"The {what} must be text, not {type(value).__name__}.")
    if not value.strip():
        raise KDLensError(f"The {what} is empty.")
    if len(value) > MAX_NAME:
        raise KDLensError(f"The {what} {_show(value)} is longer than {MAX_NAME:,} characters.")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise KDLensError(f"The note text must be text, not {type(value).__name__}.")
    if not value.strip():
        raise KDLensError("The note text is empty.")
    if len(value) > MAX_TEXT:
        raise KDLensError(f"The note text has {len(value):,} characters; at most {MAX_TEXT:,} are allowed.")
    return value


def _has_control(value: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in value)


def _tag(value: Any, what: str = "tag") -> str:
    """A tag as stored: surrounding spaces dropped; one line, since tags are shown and exported one per line."""
    if not isinstance(value, str):
        raise KDLensError(f"A {what} must be text, not {type(value).__name__}.")
    if _has_control(value):
        raise KDLensError(f"The {what} {_show(value)} contains a line break or control character.")
    value = value.strip()
    if not value:
        raise KDLensError(f"A {what} is empty.")
    if len(value) > MAX_TAG:
        raise KDLensError(f"The {what} {_show(value)} is longer than {MAX_TAG} characters.")
    return value


def _author(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise KDLensError(f"The author must be text, not {type(value).__name__}.")
    if _has_control(value):
        raise KDLensError(f"The author {_show(value)} contains a line break or control character.")
    value = value.strip()
    if len(value) > MAX_AUTHOR:
        raise KDLensError(f"The author {_show(value)} is longer than {MAX_AUTHOR} characters.")
    return value or None


def _timestamp(value: Any, what: str) -> str:
    """An ISO time kept exactly as written (it is part of a note's identity on import), once checked."""
    if not isinstance(value, str):
        raise KDLensError(f"The {what} time is missing or not text.")
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise KDLensError(f"The {what} time {_show(value)} is not an ISO date and time.") from None
    return value


def _note_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise KDLensError(f"The note id must be a whole number, not {_show(value)}.")
    return value


def _note(row: tuple) -> Note:
    return Note(*row)


_NOTE_COLUMNS = "id, data, example_id, author, text, created, updated"


@contextmanager
def _one_transaction(con: sqlite3.Connection, write: bool) -> Iterator[None]:
    """BEGIN (IMMEDIATE for writes: take the write lock up front), COMMIT if the body finishes, else ROLLBACK."""
    con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


class NotesStore:
    """Notes and tags in one SQLite file. Safe to share one instance across threads, and the file across
    processes: each operation opens its own connection and closes it."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._ready = False
        self._init_lock = threading.Lock()

    @classmethod
    def at(cls, root: str | os.PathLike | None = None) -> NotesStore:
        """The store of a run store root (default: `kd_analysis.runs.default_root()`)."""
        if root is None:
            from kd_analysis.runs import default_root

            root = default_root()
        return cls(Path(root) / NOTES_FILE)

    def __repr__(self) -> str:
        return f"NotesStore({str(self.path)!r})"

    # --- connections and transactions -------------------------------------------------------------------------

    def _error(self, exc: sqlite3.Error) -> KDLensError:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return KDLensError(f"The notes database {self.path} cannot be used ({why}).")

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise KDLensError(
                f"The folder for the notes database {self.path} cannot be created ({exc.strerror or exc})."
            ) from None
        # isolation_level=None: no implicit transactions; every transaction below is explicit
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        return con

    def _ensure_schema(self) -> None:
        """WAL mode and the tables, once per instance; migrations run in one write transaction, so several
        processes opening a new file at once create it exactly once."""
        if self._ready:
            return
        with self._init_lock:
            if self._ready:
                return
            try:
                con = self._open()
            except sqlite3.Error as exc:
                raise self._error(exc) from None
            try:
                self._set_wal(con)
                with _one_transaction(con, write=True):
                    version = con.execute("PRAGMA user_version").fetchone()[0]
                    if version > SCHEMA_VERSION:
                        raise KDLensError(
                            f"The notes database {self.path} was written by a newer kd-lens "
                            f"(schema {version}; this one reads up to {SCHEMA_VERSION})."
                        )
                    for step in _MIGRATIONS[version:]:
                        for statement in step:
                            con.execute(statement)
                    if version < SCHEMA_VERSION:
                        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            except sqlite3.Error as exc:
                raise self._error(exc) from None
            finally:
                con.close()
            self._ready = True

    @staticmethod
    def _set_wal(con: sqlite3.Connection) -> None:
        """Switching to WAL needs a moment alone with the file and may not wait on the busy handler; retry."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                con.execute("PRAGMA journal_mode=WAL").fetchone()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        """One connection, one transaction: committed if the body finishes, rolled back otherwise. Writes take
        the write lock up front (BEGIN IMMEDIATE) so they wait at the start, never fail half-way; reads see one
        snapshot of the file throughout."""
        self._ensure_schema()
        try:
            con = self._open()
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            with _one_transaction(con, write):
                yield con
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        finally:
            con.close()

    # --- notes -----------------------------------------------------------------------------------------------

    def add_note(self, data: str, example_id: str, text: str, author: str | None = None) -> Note:
        data, example_id, text, author = (
            _name(data, "data set name"),
            _name(example_id, "example id"),
            _text(text),
            _author(author),
        )
        now = _now()
        with self._transaction(write=True) as con:
            cur = con.execute(
                "INSERT INTO notes (data, example_id, author, text, created, updated) VALUES (?, ?, ?, ?, ?, ?)",
                (data, example_id, author, text, now, now),
            )
            note_id = cur.lastrowid
        return Note(note_id, data, example_id, author, text, now, now)

    def edit_note(self, note_id: int, text: str) -> Note:
        note_id, text = _note_id(note_id), _text(text)
        with self._transaction(write=True) as con:
            cur = con.execute("UPDATE notes SET text = ?, updated = ? WHERE id = ?", (text, _now(), note_id))
            if cur.rowcount == 0:
                raise KDLensError(f"There is no note {_show(note_id)} (it may have been deleted).")
            row = con.execute(f"SELECT {_NOTE_COLUMNS} FROM notes WHERE id = ?", (note_id,)).fetchone()
        return _note(row)

    def delete_note(self, note_id: int) -> bool:
        """False when the note was already gone (a double click in the app is not an error)."""
        note_id = _note_id(note_id)
        with self._transaction(write=True) as con:
            return con.execute("DELETE FROM notes WHERE id = ?", (note_id,)).rowcount > 0

    def notes(self, data: str | None = None, example_id: str | None = None) -> list[Note]:
        """Notes oldest first, of one data set and/or one example id, or all."""
        where, args = self._filter(data, example_id)
        with self._transaction(write=False) as con:
            rows = con.execute(f"SELECT {_NOTE_COLUMNS} FROM notes{where} ORDER BY created, id", args).fetchall()
        return [_note(r) for r in rows]

    @staticmethod
    def _filter(data: str | None, example_id: str | None) -> tuple[str, list[str]]:
        clauses, args = [], []
        if data is not None:
            clauses.append("data = ?")
            args.append(_name(data, "data set name"))
        if example_id is not None:
            clauses.append("example_id = ?")
            args.append(_name(example_id, "example id"))
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args

    # --- tags ------------------------------------------------------------------------------------------------

    def add_tags(self, data: str, example_id: str, tags: str | Iterable[str], author: str | None = None) -> list[str]:
        """The tags that were new on this example (a tag already there is left as it was). All are checked
        before any is written, so a bad tag adds none."""
        data, example_id, author = _name(data, "data set name"), _name(example_id, "example id"), _author(author)
        wanted = list(dict.fromkeys(_tag(t) for t in ([tags] if isinstance(tags, str) else tags)))
        now = _now()
        added = []
        with self._transaction(write=True) as con:
            for tag in wanted:
                cur = con.execute(
                    "INSERT OR IGNORE INTO tags (data, example_id, tag, author, created) VALUES (?, ?, ?, ?, ?)",
                    (data, example_id, tag, author, now),
                )
                if cur.rowcount:
                    added.append(tag)
        return added

    def remove_tag(self, data: str, example_id: str, tag: str) -> bool:
        """False when the example did not have the tag."""
        data, example_id, tag = _name(data, "data set name"), _name(example_id, "example id"), _tag(tag)
        with self._transaction(write=True) as con:
            return (
                con.execute(
                    "DELETE FROM tags WHERE data = ? AND example_id = ? AND tag = ?", (data, example_id, tag)
                ).rowcount
                > 0
            )

    def tags(self, data: str, example_id: str | None = None) -> dict[str, list[str]]:
        """{example id: its tags, sorted} for the examples of `data` that have any (or just `example_id`)."""
        where, args = self._filter(_name(data, "data set name"), example_id)
        with self._transaction(write=False) as con:
            rows = con.execute(f"SELECT example_id, tag FROM tags{where} ORDER BY example_id, tag", args).fetchall()
        out: dict[str, list[str]] = {}
        for ex, tag in rows:
            out.setdefault(ex, []).append(tag)
        return out

    def examples_with_tag(self, data: str, tag: str) -> list[str]:
        data, tag = _name(data, "data set name"), _tag(tag)
        with self._transaction(write=False) as con:
            rows = con.execute(
                "SELECT example_id FROM tags WHERE data = ? AND tag = ? ORDER BY example_id", (data, tag)
            ).fetchall()
        return [r[0] for r in rows]

    # --- saved slices ----------------------------------------------------------------------------------------

    def save_slice(self, data: str, name: str, expr: str, author: str | None = None) -> None:
        """Save (or replace) a named filter for a data set. The expression is checked first: a slice that cannot
        be parsed is never saved."""
        from kd_analysis.error_analysis.filters import parse_filter

        data, name, author = _name(data, "data set name"), _tag(name, "slice name"), _author(author)
        expr = _text(expr)
        parse_filter(expr)
        with self._transaction(write=True) as con:
            con.execute(
                "INSERT OR REPLACE INTO slices (data, name, expr, author, created) VALUES (?, ?, ?, ?, ?)",
                (data, name, expr, author, _now()),
            )

    def slices(self, data: str) -> dict[str, str]:
        """{name: expression} of the data set's saved slices, by name."""
        with self._transaction(write=False) as con:
            rows = con.execute(
                "SELECT name, expr FROM slices WHERE data = ? ORDER BY name", (_name(data, "data set name"),)
            ).fetchall()
        return dict(rows)

    def delete_slice(self, data: str, name: str) -> bool:
        with self._transaction(write=True) as con:
            return (
                con.execute(
                    "DELETE FROM slices WHERE data = ? AND name = ?",
                    (_name(data, "data set name"), _tag(name, "slice name")),
                ).rowcount
                > 0
            )

    # --- export and import -----------------------------------------------------------------------------------

    def export_jsonl(self, path_or_file: str | os.PathLike | IO, data: str | None = None) -> int:
        """Every note and tag (of `data`, or all) as JSON lines after one header line; returns how many
        records were written. Read in one snapshot, so an export taken during writes is consistent; a path is
        written atomically, so a crash leaves the old file."""
        where, args = self._filter(data, None)
        with self._transaction(write=False) as con:
            notes = con.execute(f"SELECT {_NOTE_COLUMNS} FROM notes{where} ORDER BY created, id", args).fetchall()
            tags = con.execute(
                f"SELECT data, example_id, tag, author, created FROM tags{where} ORDER BY data, example_id, tag", args
            ).fetchall()
        lines = [json.dumps({"kind": EXPORT_KIND, "schema": SCHEMA_VERSION, "exported": _now()})]
        for n in map(_note, notes):
            lines.append(
                json.dumps(
                    {
                        "kind": "note",
                        "data": n.data,
                        "example_id": n.example_id,
                        "author": n.author,
                        "text": n.text,
                        "created": n.created,
                        "updated": n.updated,
                    },
                    ensure_ascii=False,
                )
            )
        for d, ex, tag, author, created in tags:
            lines.append(
                json.dumps(
                    {"kind": "tag", "data": d, "example_id": ex, "tag": tag, "author": author, "created": created},
                    ensure_ascii=False,
                )
            )
        text = "\n".join(lines) + "\n"
        if isinstance(path_or_file, (str, os.PathLike)):
            from kd_analysis.fileio import atomic_write_text

            try:
                atomic_write_text(path_or_file, text)
            except OSError as exc:
                raise KDLensError(
                    f"The notes export {path_or_file} cannot be written ({exc.strerror or exc})."
                ) from None
        elif isinstance(path_or_file, (io.RawIOBase, io.BufferedIOBase)):
            path_or_file.write(text.encode("utf-8"))
        else:
            path_or_file.write(text)
        return len(notes) + len(tags)

    def import_jsonl(self, path: str | os.PathLike, author_default: str | None = None) -> ImportResult:
        """Merge an export (a colleague's, or an old one of ours) in one transaction. A note already present
        with the same data set, example, author, text and created time is skipped, so importing twice adds
        nothing; tags are unioned. `author_default` is the author of records that name none. A bad line is
        counted with its number and skipped; only a file with no JSON object line at all is refused."""
        from kd_analysis.fileio import read_jsonl_checked

        author_default = _author(author_default)
        path = Path(path)
        if not path.is_file():
            raise KDLensError(f"The notes file {path} does not exist or is not a file.")
        try:
            read = read_jsonl_checked(path)
        except OSError as exc:
            raise KDLensError(f"The notes file {path} cannot be read ({exc.strerror or exc}).") from None
        if read.bad and not read.rows:
            n, why = read.bad[0]
            raise KDLensError(
                f"The notes file {path.name} is not JSON lines: no line is a JSON object (line {n}: {why})."
            )
        result = ImportResult(bad_lines=list(read.bad))
        with self._transaction(write=True) as con:
            for n, row in zip(read.line_numbers, read.rows):
                try:
                    self._import_row(con, row, author_default, result)
                except KDLensError as exc:
                    result.bad_lines.append((n, str(exc).rstrip(".")))
        result.bad_lines.sort()
        return result

    @staticmethod
    def _import_row(
        con: sqlite3.Connection, row: dict[str, Any], author_default: str | None, result: ImportResult
    ) -> None:
        kind = row.get("kind")
        if kind == EXPORT_KIND:
            return
        if kind not in ("note", "tag"):
            raise KDLensError(f"The record kind {_show(kind)} is not 'note' or 'tag'.")
        data, example_id = _name(row.get("data"), "data set name"), _name(row.get("example_id"), "example id")
        author = _author(row.get("author")) or author_default
        if kind == "tag":
            tag = _tag(row.get("tag"))
            created = _timestamp(row["created"], "created") if row.get("created") is not None else _now()
            cur = con.execute(
                "INSERT OR IGNORE INTO tags (data, example_id, tag, author, created) VALUES (?, ?, ?, ?, ?)",
                (data, example_id, tag, author, created),
            )
            if cur.rowcount:
                result.tags_added += 1
            else:
                result.tags_skipped += 1
            return
        text = _text(row.get("text"))
        created = _timestamp(row.get("created"), "created")
        updated = _timestamp(row["updated"], "updated") if row.get("updated") is not None else created
        if con.execute(
            "SELECT 1 FROM notes WHERE data = ? AND example_id = ? AND author IS ? AND text = ? "
            "AND created = ? LIMIT 1",
            (data, example_id, author, text, created),
        ).fetchone():
            result.notes_skipped += 1
            return
        con.execute(
            "INSERT INTO notes (data, example_id, author, text, created, updated) VALUES (?, ?, ?, ?, ?, ?)",
            (data, example_id, author, text, created, updated),
        )
        result.notes_added += 1
